// SPDX-License-Identifier: GPL-2.0-only
// One guest boot under QEMU/TCG (never KVM): the host's root filesystem is
// shared read-only over 9p, the run directory read-write, plus sparse raw
// disks. The payload is <runDir>/guest.sh, run by the initramfs /init. A
// host-side timeout always bounds the boot.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, ftruncateSync, createWriteStream, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelInfo } from './kernels.js';
import { REPO, vmDir } from './paths.js';

export interface DiskSpec {
  /** size in bytes of the sparse raw file */
  size: number;
  /**
   * QEMU host cache mode (default none = O_DIRECT on the host). The test
   * suite uses writeback: with cache=none, QEMU 7.2 on this host kind fails
   * guest writes that are not 4 KiB aligned (ext4 with 1 KiB blocks) with
   * I/O errors, module or not (test/vm/README.md).
   */
  cache?: 'none' | 'writeback';
}

export interface BootOptions {
  kernel: KernelInfo;
  initramfs: string;
  runDir: string;
  disks: readonly DiskSpec[];
  timeoutMs: number;
  smp: number;
  memMiB: number;
  /** serial on the terminal, stdin attached (debug shell) */
  interactive?: boolean;
  /** stream the serial console to this callback as it arrives */
  onSerial?: (chunk: string) => void;
  extraCmdline?: string;
  /** boot this image instead of kernel.vmlinuz (e.g. the PVH vmlinux) */
  kernelImage?: string;
  /** console log level (default 8: everything to the serial console) */
  loglevel?: number;
  /** kernel.hung_task_timeout_secs in the guest (default 30) */
  hungTaskSecs?: number;
  /**
   * Kill the guest when no serial line matching `progress` arrived for this
   * long (a case stuck in the kernel cannot be interrupted from inside).
   */
  idle?: { ms: number; progress: RegExp };
  /** told when the guest is booted a second time (see bootGuest) */
  onRetry?: (message: string) => void;
  /**
   * A host directory shared read-write with every guest of one kernel
   * (9p tag "queue", mounted at /run/dbd-queue): the guests claim cases there.
   */
  queueDir?: string;
}

export interface BootResult {
  /** payload exit status as reported by /init, null if it never finished */
  exitCode: number | null;
  timedOut: boolean;
  /** why the host killed the guest, when it did */
  timeoutReason: string | null;
  qemuExit: number | null;
  seconds: number;
  /** seconds from QEMU start to: the first console byte, init ready, the payload's end */
  marks: { firstOutput: number | null; initReady: number | null; payloadDone: number | null };
  serial: string;
  /** full guest dmesg (from the run dir), or '' if the guest died first */
  dmesg: string;
  /** the first boot's kernel died before /init was ready and this result is the second boot's */
  retried: boolean;
}

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size '${s}' (use e.g. 512M, 2G)`);
  const mul = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[(m[2] ?? '').toUpperCase()] ?? 1;
  return Math.round(Number(m[1]) * mul);
}

export function qemuArgs(o: BootOptions): string[] {
  const append = [
    'console=ttyS0',
    'panic=-1',
    // TCG on a loaded host can miss the early IO-APIC timer check and panic
    'no_timer_check',
    'oops=panic',
    // every kernel message also goes to the serial console, so the log is complete
    // even when the guest panics or hangs before /init can save dmesg
    `loglevel=${o.loglevel ?? 8}`,
    'log_buf_len=8M',
    'printk.devkmsg=on',
    'nokaslr',
    `dbd.rundir=${o.runDir}`,
    `dbd.vmdir=${vmDir()}`,
    // the repository stays visible even when it lives under /tmp (tmpfs in the guest)
    `dbd.repo=${REPO}`,
    `dbd.hung=${o.hungTaskSecs ?? 30}`,
    o.queueDir ? 'dbd.queue=1' : '',
    o.extraCmdline ?? '',
  ].filter(Boolean).join(' ');
  const args = [
    '-accel', 'tcg',
    '-cpu', 'max',
    '-smp', String(o.smp),
    '-m', String(o.memMiB),
    '-nodefaults', '-no-user-config',
    '-display', 'none',
    '-serial', o.interactive ? 'mon:stdio' : 'stdio',
    '-no-reboot',
    '-kernel', o.kernelImage ?? o.kernel.vmlinuz,
    '-initrd', o.initramfs,
    '-append', append,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${o.runDir},mount_tag=results,security_model=none,multidevs=remap`,
  ];
  if (o.queueDir) args.push('-virtfs', `local,path=${o.queueDir},mount_tag=queue,security_model=none,multidevs=remap`);
  o.disks.forEach((d, i) => {
    args.push(
      '-drive', `file=${join(o.runDir, `disk${i}.img`)},if=none,id=d${i},format=raw,cache=${d.cache ?? 'none'},aio=threads`,
      '-device', `virtio-blk-pci,drive=d${i},serial=dbd-disk${i}`,
    );
  });
  return args;
}

const liveGuests = new Set<ChildProcess>();
let handlersInstalled = false;

/** On SIGINT/SIGTERM/SIGHUP kill every running guest, then exit with the usual status. */
function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const c of liveGuests) killGuest(c);
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

/** Kill `timeout` and the QEMU under it (same process group), or forward SIGTERM. */
function killGuest(c: ChildProcess): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, 'SIGKILL');
  } catch {
    c.kill('SIGTERM'); // --foreground: no own group; timeout forwards the signal to QEMU
  }
}

/**
 * Boot the guest and run its payload. A kernel that ends before /init is
 * ready has run nothing (no test, module never loaded): seen once on
 * 6.12-rt under TCG, an int3 oops in sched_clock_cpu while the boot
 * patched its static keys. Such a guest is booted once more (not an
 * interactive one); the first console log is kept as serial.first-boot.log.
 * A second early death is returned as it is.
 */
export async function bootGuest(o: BootOptions): Promise<BootResult> {
  const first = await bootOnce(o);
  if (o.interactive || first.marks.initReady !== null || first.exitCode !== null || first.timedOut) return first;
  const kept = join(o.runDir, 'serial.first-boot.log');
  renameSync(join(o.runDir, 'serial.log'), kept);
  o.onRetry?.(`the kernel ended before init was ready (QEMU exit ${first.qemuExit}; console log ${kept}), booting once more`);
  return { ...(await bootOnce(o)), retried: true };
}

async function bootOnce(o: BootOptions): Promise<BootResult> {
  installSignalHandlers();
  o.disks.forEach((d, i) => {
    const fd = openSync(join(o.runDir, `disk${i}.img`), 'w');
    ftruncateSync(fd, d.size);
    closeSync(fd);
  });
  const args = qemuArgs(o);
  writeFileSync(join(o.runDir, 'qemu-cmdline.txt'), ['qemu-system-x86_64', ...args].map((a) => JSON.stringify(a)).join(' ') + '\n');
  const t0 = Date.now();
  const serialLog = createWriteStream(join(o.runDir, 'serial.log'));
  let serial = '';
  let timedOut = false;
  let timeoutReason: string | null = null;
  let lastProgress = Date.now();
  let lastProgressLine = '(none)';
  let pending = '';
  // coreutils timeout as a second line of defence: if this process dies
  // (killed by an outer timeout), an orphaned guest still ends
  const hardLimit = String(Math.ceil(o.timeoutMs / 1000) + 30);
  // (timeout makes itself a process-group leader, so killGuest takes QEMU along;
  // --foreground keeps the terminal usable for the interactive shell)
  const child = spawn(
    'timeout',
    [...(o.interactive ? ['--foreground'] : []), '-s', 'KILL', hardLimit, 'qemu-system-x86_64', ...args],
    { stdio: o.interactive ? 'inherit' : ['ignore', 'pipe', 'pipe'] },
  );
  liveGuests.add(child);
  const marks: BootResult['marks'] = { firstOutput: null, initReady: null, payloadDone: null };
  const onData = (b: Buffer): void => {
    const s = b.toString('utf8');
    const now = (Date.now() - t0) / 1000;
    if (marks.firstOutput === null) marks.firstOutput = now;
    // markers may straddle chunks: look at the new text plus a little before it
    const recent = serial.slice(-64) + s;
    if (marks.initReady === null && recent.includes('dbd-vm: init: ready')) marks.initReady = now;
    if (marks.payloadDone === null && recent.includes('dbd-vm: init: payload exited')) marks.payloadDone = now;
    serial += s;
    serialLog.write(b);
    o.onSerial?.(s);
    if (o.idle) {
      pending += s;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) {
        if (o.idle.progress.test(l)) {
          lastProgress = Date.now();
          lastProgressLine = l.trim();
        }
      }
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const timer = setTimeout(() => {
    timedOut = true;
    timeoutReason = `the whole boot exceeded ${o.timeoutMs / 1000} s`;
    killGuest(child);
  }, o.timeoutMs);
  const idleTimer = o.idle
    ? setInterval(() => {
        if (o.idle && Date.now() - lastProgress > o.idle.ms && !timedOut) {
          timedOut = true;
          timeoutReason = `no progress for ${o.idle.ms / 1000} s; last progress line: ${lastProgressLine}`;
          killGuest(child);
        }
      }, 1000)
    : undefined;
  const qemuExit = await new Promise<number | null>((resolve) => {
    child.on('error', (e) => {
      serial += `\nharness: cannot start qemu-system-x86_64: ${e.message}\n`;
      resolve(null);
    });
    child.on('exit', (code) => resolve(code));
  });
  clearTimeout(timer);
  clearInterval(idleTimer);
  liveGuests.delete(child);
  await new Promise<void>((r) => serialLog.end(() => r()));
  const seconds = (Date.now() - t0) / 1000;
  const statusFile = join(o.runDir, 'exit-status');
  let exitCode: number | null = null;
  if (existsSync(statusFile)) {
    const n = Number(readFileSync(statusFile, 'utf8').trim());
    if (Number.isInteger(n)) exitCode = n;
  } else {
    const m = /DBD-VM-EXIT (\d+)/.exec(serial);
    if (m) exitCode = Number(m[1]);
  }
  const dmesgFile = join(o.runDir, 'dmesg.txt');
  const dmesg = existsSync(dmesgFile) ? readFileSync(dmesgFile, 'utf8') : '';
  return { exitCode, timedOut, timeoutReason, qemuExit, seconds, marks, serial, dmesg, retried: false };
}
