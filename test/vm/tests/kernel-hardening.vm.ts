// SPDX-License-Identifier: GPL-2.0-only
// Defects found by review of kernel/ (hardening issue), each reproduced:
// - the mount hooks call their originals back through a pointer: every
//   hooked function must start with ENDBR64 on a kernel built with IBT
//   (a sealed one is a "Missing ENDBR" BUG on IBT CPUs, which TCG does not
//   emulate, so the entry bytes are read from /proc/kcore);
// - an unprivileged umount / remount-ro / fsconfig reconfigure fails with
//   EPERM and must leave every device as it was;
// - a direct read of /dev/dattoN must not be overtaken by a later write
//   to the same block (dm-delay: slow reads, fast writes);
// - an unmount saves the COW data still queued in memory before the COW
//   file is closed clean, so a reload after a module reload reads it;
// - transition-to-snapshot reports a previous COW file it could not close
//   (dm-flakey fails the writes to that file) and leaves it unclean.
import assert from 'node:assert/strict';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { IoctlInfo, VmContext } from '../guest/api.js';
import { BLOCK, blockRuns, describedBlock, describedFile, errCode, fileBlockMap, partition, readCowHeader, umountExplained } from '../../kernel/vm/helpers.js';

const ENDBR64 = 'f30f1efa';

/** Kernel symbol addresses from /proc/kallsyms (text symbols only). */
function kallsyms(names: readonly string[]): Map<string, bigint> {
  const want = new Set(names);
  const out = new Map<string, bigint>();
  for (const line of readFileSync('/proc/kallsyms', 'latin1').split('\n')) {
    const [addr, type, name] = line.split(/\s+/);
    if (name && want.has(name) && /^[tT]$/.test(type ?? '') && !out.has(name)) out.set(name, BigInt(`0x${addr}`));
  }
  return out;
}

/** n bytes of kernel memory at vaddr, read through /proc/kcore's ELF segments. */
function kcoreRead(vaddr: bigint, n: number): Buffer {
  const fd = openSync('/proc/kcore', 'r');
  try {
    const eh = Buffer.alloc(64);
    readSync(fd, eh, 0, 64, 0);
    const phoff = eh.readBigUInt64LE(0x20);
    const phentsize = eh.readUInt16LE(0x36);
    const phnum = eh.readUInt16LE(0x38);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      if (ph.readUInt32LE(o) !== 1) continue; // PT_LOAD
      const off = ph.readBigUInt64LE(o + 8);
      const va = ph.readBigUInt64LE(o + 16);
      const size = ph.readBigUInt64LE(o + 32);
      if (vaddr < va || vaddr + BigInt(n) > va + size) continue;
      const out = Buffer.alloc(n);
      readSync(fd, out, 0, n, off + (vaddr - va));
      return out;
    }
  } finally {
    closeSync(fd);
  }
  throw new Error(`0x${vaddr.toString(16)} is in no /proc/kcore segment`);
}

/** The functions kernel/hooks.c hooks (and calls back), from its table. */
function hookedFunctions(t: VmContext): string[] {
  const src = readFileSync(join(t.repo, 'kernel/hooks.c'), 'utf8');
  const names = [...src.matchAll(/\.name = "([A-Za-z0-9_]+)"/g)].map((m) => m[1]!);
  assert.ok(names.length >= 6, `hooks.c table not found (${names.join(',')})`);
  return names;
}

export async function hookedFunctionsCanBeCalledBack(t: VmContext): Promise<void> {
  const hooked = hookedFunctions(t);
  const syms = kallsyms([...hooked, 'submit_bio_noacct']);
  const entry = new Map<string, string>();
  for (const [name, addr] of syms) entry.set(name, kcoreRead(addr, 5).toString('hex'));
  t.log([...entry].map(([k, v]) => `${k}: ${v}`).join('\n'));
  const ref = entry.get('submit_bio_noacct');
  assert.ok(ref, 'submit_bio_noacct not in /proc/kallsyms');
  // an exported, address-taken function starts with ENDBR64 iff the kernel has IBT
  const ibt = ref.startsWith(ENDBR64);
  for (const name of hooked) {
    const bytes = entry.get(name);
    assert.ok(bytes, `${name} (hooked by kernel/hooks.c) is not in /proc/kallsyms`);
    if (ibt) {
      assert.ok(
        bytes.startsWith(ENDBR64),
        `${name} starts with ${bytes.slice(0, 8)}, not ENDBR64: sealed, and the module's indirect call back to it would be a "Missing ENDBR" BUG on IBT CPUs`,
      );
    } else {
      // no IBT: the ftrace site is the entry (a 5-byte NOP, or a call while traced)
      assert.ok(/^(0f1f440000|e8)/.test(bytes), `${name} starts with ${bytes}: not an ftrace site`);
    }
  }
  // and the hooks do redirect on this kernel: umount -> dormant, mount -> active
  const part = partition(t, t.disks[0]!, 64);
  t.mkfs('ext4', part);
  const mnt = t.mount(part);
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 8);
  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 1, 'umount must make the snapshot dormant');
  t.mount(part, { dir: mnt });
  assert.equal(t.ioctl.info(0).state, 3, 'mount must re-activate the snapshot');
  const refused = t.kmsg().filter((l) => /is not hooked/.test(l));
  assert.deepEqual(refused, [], 'a hook refused to redirect');
  t.ioctl.destroy(0);
}

const PY_UMOUNT = 'import ctypes,sys; l=ctypes.CDLL(None, use_errno=True); r=l.umount2(sys.argv[1].encode(), 0); print(r, ctypes.get_errno())';
const PY_REMOUNT_RO =
  'import ctypes,sys; l=ctypes.CDLL(None, use_errno=True); r=l.mount(None, sys.argv[1].encode(), None, 0x21, None); print(r, ctypes.get_errno())';

export async function unprivilegedCallersChangeNothing(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 96);
  t.mkfs('ext4', part);
  const mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(256, 1));
  t.sh('sync');
  const bin = '/tmp/dbd-unpriv';
  mkdirSync(bin, { recursive: true });
  chmodSync(bin, 0o755);
  t.run(['gcc', '-O1', '-o', join(bin, 'newmount'), join(t.repo, 'test/kernel/vm/newmount.c')]);
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
  const unchanged = (what: string): void => {
    const info = t.ioctl.info(0);
    assert.equal(info.error, 0, `${what}: device error ${info.error}`);
    assert.equal(info.state, 3, `${what}: state ${info.state}, must stay an active snapshot`);
  };

  const um = t.run([...nobody, 'python3', '-c', PY_UMOUNT, mnt]).stdout.trim();
  assert.equal(um, '-1 1', `unprivileged umount2 must fail with EPERM (got "${um}")`);
  unchanged('unprivileged umount2');
  const rm = t.run([...nobody, 'python3', '-c', PY_REMOUNT_RO, mnt]).stdout.trim();
  assert.equal(rm, '-1 1', `unprivileged remount-ro must fail with EPERM (got "${rm}")`);
  unchanged('unprivileged remount-ro');
  // fspick, then fsconfig(ro) + CMD_RECONFIGURE without privileges (as in
  // a user namespace of one's own, which the harness's chroot cannot make)
  const ns = t.run([join(bin, 'newmount'), 'remount-as-nobody', 'ro', mnt], { allowFail: true });
  t.log('newmount remount-as-nobody ro:', ns.code, ns.stderr.trim());
  assert.match(ns.stderr, /fsconfig: Operation not permitted/, 'the reconfigure must reach fsconfig and be refused');
  unchanged('unprivileged fsconfig reconfigure');

  // tracking goes on, and root's umount / mount still work
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=16 conv=notrunc status=none && sync`);
  unchanged('writes after the attempts');
  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 1, 'root umount must make the snapshot dormant');
  t.mount(part, { dir: mnt });
  unchanged('root mount again');
  t.ioctl.destroy(0);
}

/** File blocks (every step-th) that /dev/datto0 does not read as generation 1 of a described file mapped by map. */
function snapshotBadBlocks(map: readonly number[], step: number): number[] {
  const fd = openSync('/dev/datto0', 'r');
  const b = Buffer.alloc(BLOCK);
  const bad: number[] = [];
  try {
    for (let i = 0; i < map.length; i += step) {
      readSync(fd, b, 0, BLOCK, map[i]! * BLOCK);
      if (!b.equals(describedBlock(i, 1))) bad.push(i);
    }
  } finally {
    closeSync(fd);
  }
  return bad;
}

/** dm-delay over dev: reads and writes delayed by the given milliseconds. */
function delayTable(t: VmContext, dev: string, readMs: number, writeMs: number): string {
  const sectors = t.run(['blockdev', '--getsz', dev]).stdout.trim();
  return `0 ${sectors} delay ${dev} 0 ${readMs} ${dev} 0 ${writeMs}`;
}

function setDelay(t: VmContext, name: string, table: string): void {
  // no lockfs: the module's snapshot must not see a dm freeze here
  t.run(['dmsetup', 'suspend', '--noudevsync', '--nolockfs', name]);
  t.run(['dmsetup', 'reload', '--noudevsync', name, '--table', table]);
  t.run(['dmsetup', 'resume', '--noudevsync', name]);
}

function withDelayDevice(t: VmContext, name: string, under: string, body: (dev: string) => void): void {
  t.modprobe('dm-delay');
  // no udev in the guest: dmsetup makes the /dev/mapper node itself
  t.run(['dmsetup', 'create', '--noudevsync', name, '--table', delayTable(t, under, 0, 0)]);
  t.run(['dmsetup', 'mknodes', name]);
  const dev = `/dev/mapper/${name}`;
  try {
    body(dev);
  } finally {
    t.sh(`umount /dev/datto0 2>/dev/null; umount ${dev} 2>/dev/null; true`, { allowFail: true });
    try {
      t.ioctl.destroy(0);
    } catch (e) {
      if (errCode(e) !== 'ENOENT' && errCode(e) !== 'ENOTTY') t.log('destroy in cleanup:', (e as Error).message);
    }
    t.run(['dmsetup', 'remove', '--noudevsync', '--retry', name], { allowFail: true });
  }
}

export async function directReadNotOvertakenByLaterWrite(t: VmContext): Promise<void> {
  const under = partition(t, t.disks[0]!, 128);
  const tool = join(t.tmp, 'race-io');
  t.run(['gcc', '-O1', '-pthread', '-o', tool, join(t.repo, 'test/kernel/vm/race-io.c')]);
  withDelayDevice(t, 'dbdslow', under, (dev) => {
    t.mkfs('ext4', dev, ['-b', '4096']);
    const mnt = t.mount(dev);
    writeFileSync(join(mnt, 'described'), describedFile(64, 1));
    t.sh('sync');
    const map = fileBlockMap(t, `${mnt}/described`);
    t.loadModule();
    t.ioctl.setup(0, dev, `${mnt}/.datto`, 16);
    const x = map[0]!;
    // reads take 5 s, writes none: write 1 is held while the original of x
    // is read (0-5 s); the snapshot read of x (from 1.5 s) goes straight to
    // the origin and completes at 6.5 s; write 2 comes at 5.8 s, when x is
    // saved but that read is still in flight: it must wait for the read
    setDelay(t, 'dbdslow', delayTable(t, under, 5000, 0));
    const out = join(t.tmp, 'read.bin');
    const r = t.run([tool, dev, '/dev/datto0', String(x), '1500', '5800', out], { timeoutMs: 60_000 });
    setDelay(t, 'dbdslow', delayTable(t, under, 0, 0));
    t.log(r.stdout.trim());
    const got = readFileSync(out);
    const tag = got.subarray(0, 8).toString('latin1');
    assert.ok(
      got.equals(describedBlock(0, 1)),
      `the snapshot read of block ${x} returned ${tag === 'AAAAAAAA' ? 'write 1' : tag === 'BBBBBBBB' ? 'write 2' : `"${tag}"`}, not the data of the snapshot instant`,
    );
    // and the snapshot still reads the original there, the origin write 2
    const snap = Buffer.alloc(BLOCK);
    const fd = openSync('/dev/datto0', 'r');
    readSync(fd, snap, 0, BLOCK, x * BLOCK);
    closeSync(fd);
    assert.ok(snap.equals(describedBlock(0, 1)), 'the snapshot lost the original of the raced block');
    assert.equal(t.ioctl.info(0).error, 0);
  });
}

export async function umountSavesQueuedCowData(t: VmContext): Promise<void> {
  const under = partition(t, t.disks[0]!, 256);
  withDelayDevice(t, 'dbdslowc', under, (dev) => {
    t.mkfs('ext4', dev, ['-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0']);
    const mnt = t.mount(dev);
    const blocks = 8192; // 32 MiB
    writeFileSync(join(mnt, 'described'), describedFile(blocks, 1));
    t.sh('sync');
    const map = fileBlockMap(t, `${mnt}/described`);
    assert.equal(map.length, blocks);
    t.loadModule();
    t.ioctl.setup(0, dev, `${mnt}/.datto`, 100);
    // slow writes: the COW thread's appends fall behind the overwrites,
    // so data is still queued in memory when the unmount comes
    setDelay(t, 'dbdslowc', delayTable(t, under, 0, 20));
    t.sh(`dd if=/dev/urandom of=${mnt}/described bs=1M count=32 conv=notrunc oflag=direct status=none && umount ${mnt}`, {
      timeoutMs: 120_000,
    });
    assert.equal(t.ioctl.info(0).state, 1, 'umount must make the snapshot dormant');
    setDelay(t, 'dbdslowc', delayTable(t, under, 0, 0));
    // a reboot, as far as the module knows: unload, load, reload, mount
    t.unloadModule();
    t.loadModule();
    t.ioctl.reloadSnap(0, dev, '/.datto');
    t.mount(dev, { dir: mnt });
    const info = t.ioctl.info(0);
    assert.equal(info.error, 0, `activation failed: ${info.error}`);
    assert.equal(info.state, 3);
    const bad = snapshotBadBlocks(map, 1);
    assert.deepEqual(bad.slice(0, 20), [], `${bad.length} of ${blocks} file blocks read new data from the reloaded snapshot`);
    t.ioctl.destroy(0);
  });
}

export async function replacedCowFileIsNotMarkedInUse(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 96);
  t.mkfs('ext4', part, ['-b', '4096']);
  const mnt = t.mount(part);
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  const uuid = t.ioctl.info(0).uuid;
  const header = fileBlockMap(t, `${mnt}/.datto`)[0]!;
  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 1);
  // while unmounted, the file becomes another clean COW file (other uuid)
  const fd = openSync(part, 'r+');
  const b = Buffer.alloc(BLOCK);
  readSync(fd, b, 0, BLOCK, header * BLOCK);
  assert.equal(b.readUInt32LE(4) & 1, 1, 'the dormant COW file must be CLEAN');
  b.fill(0x5a, 32, 48);
  writeSync(fd, b, 0, BLOCK, header * BLOCK);
  fsyncSync(fd);
  closeSync(fd);
  t.mount(part, { dir: mnt });
  const info = t.ioctl.info(0);
  assert.equal(info.error, -22, `a replaced COW file must fail the device with EINVAL (error ${info.error}, state ${info.state})`);
  assert.equal(info.uuid, uuid);
  const after = readCowHeader(`${mnt}/.datto`);
  assert.equal(after.uuid, '5a'.repeat(16), 'the other file must be left as it was');
  assert.equal(after.flags & 1, 1, 'the other COW file must stay CLEAN (it was marked in use before the uuid check)');
  t.ioctl.destroy(0);
}

export async function writesWhileDormantAreNotThrottledForever(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 400);
  t.mkfs('ext4', part, ['-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0']);
  const mnt = t.mount(part);
  const blocks = 24576; // 96 MiB: more than the 64 MiB a snapshot keeps in memory before it throttles
  writeFileSync(join(mnt, 'described'), describedFile(blocks, 1));
  t.sh('sync');
  const map = fileBlockMap(t, `${mnt}/described`);
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 160);
  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 1);
  // a user task overwrites the unmounted origin: every original waits in
  // memory (the COW file is closed), and no amount of waiting drains it
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < blocks; i++) {
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === map[i]) last[1]++;
    else runs.push([map[i]!, 1]);
  }
  // 256 KiB direct writes: 4 KiB ones took 90 s on the debug (KASAN) kernel
  const script = runs
    .map(([first, n]) => `dd if=/dev/zero of=${part} bs=256k seek=${first * 4096} count=${n * 4096} iflag=count_bytes oflag=direct,seek_bytes conv=notrunc status=none`)
    .join(' && ');
  const w = t.sh(`timeout -s KILL 90 sh -c '${script}'`, { allowFail: true, timeoutMs: 120_000 });
  assert.equal(w.code, 0, `writes to a dormant device's origin must not block (exit ${w.code}, ${w.ms} ms)`);
  // the originals come out of memory into the COW file once it is back
  t.mount(part, { dir: mnt });
  const info = t.ioctl.info(0);
  assert.equal(info.error, 0, `activation failed: ${info.error}`);
  assert.equal(info.state, 3);
  const bad = snapshotBadBlocks(map, 7);
  assert.deepEqual(bad.slice(0, 20), [], `${bad.length} sampled file blocks lost their snapshot data`);
  t.ioctl.destroy(0);
}

/** Reload of clean COW files whose header does not fit: refused, the file untouched, the volume intact. */
/** Put bytes in mnt/.datto, unmount, reload-snapshot it, mount again: the device's info after that mount. */
function reloadCowFileAs(t: VmContext, part: string, mnt: string, bytes: Buffer): IoctlInfo {
  writeFileSync(`${mnt}/.datto`, bytes);
  t.sh('sync');
  umountExplained(t, mnt);
  t.ioctl.reloadSnap(0, part, '/.datto');
  t.mount(part, { dir: mnt });
  return t.ioctl.info(0);
}

export async function reloadRefusesHeadersThatDoNotFit(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 96);
  t.mkfs('ext4', part, ['-b', '4096']);
  let mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(1024, 1));
  t.sh('sync');
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=64 conv=notrunc status=none && sync`);
  umountExplained(t, mnt);
  t.ioctl.destroy(0);
  mnt = t.mount(part, { dir: mnt });
  const good = readFileSync(`${mnt}/.datto`);
  assert.equal(readCowHeader(`${mnt}/.datto`).flags & 1, 1, 'the COW file must be CLEAN');
  const fileSize = good.length;
  // field offset, value, what it breaks
  const crafted: Array<[number, bigint, string]> = [
    [8, 1n, 'fpos inside the index: appends would overwrite it'],
    [8, 0n, 'fpos 0: appends would overwrite the header'],
    [8, 1n << 52n, 'fpos * 4096 wraps 2^64: appends at a small offset'],
    [16, 4096n, 'fsize below fpos'],
  ];
  for (const [off, value, what] of crafted) {
    const b = Buffer.from(good);
    b.writeBigUInt64LE(value, off);
    const info = reloadCowFileAs(t, part, mnt, b);
    assert.equal(info.state, 5, `${what}: the device must stay unverified (state ${info.state})`);
    assert.equal(info.error, -22, `${what}: error ${info.error}, want EINVAL`);
    const after = readFileSync(`${mnt}/.datto`);
    assert.ok(after.equals(b), `${what}: a refused COW file must be left as it was`);
    assert.equal(after.length, fileSize);
    t.ioctl.destroy(0);
  }
  // the volume itself was never written through the refused files
  const intact = t.run(['sh', '-c', `umount ${mnt} && e2fsck -fn ${part}`], { allowFail: true });
  assert.equal(intact.code, 0, `e2fsck after the refused reloads: ${intact.stdout.slice(-400)}`);
}

/*
 * A clean snapshot file whose index points outside its saved data (the
 * header, the index, or past fpos where later appends land): the old module
 * reloaded it and /dev/datto0 then read those bytes as the block, zeros
 * past the end, or EIO. Now the reload is refused at the rw mount (EINVAL,
 * unverified), the file is left as it was (clean), and once repaired it
 * reloads and reads the snapshot.
 */
export async function reloadRefusesIndexEntriesOutsideTheData(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 96);
  t.mkfs('ext4', part, ['-b', '4096']);
  let mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(1024, 1));
  t.sh('sync');
  const [[start]] = blockRuns(fileBlockMap(t, `${mnt}/described`)) as [[number, number]];
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  const snapHash = t.sh(`dd if=/dev/datto0 bs=4096 skip=${start} count=64 iflag=direct status=none | sha256sum`).stdout;
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=64 conv=notrunc status=none && sync`);
  umountExplained(t, mnt);
  t.ioctl.destroy(0);
  mnt = t.mount(part, { dir: mnt });
  const good = readFileSync(`${mnt}/.datto`);
  const h = readCowHeader(`${mnt}/.datto`);
  assert.equal(h.flags & 1, 1, 'the COW file must be CLEAN');
  const entryOff = 4096 + 8 * start;
  assert.ok(good.readBigUInt64LE(entryOff) > 1n, `block ${start} has no saved data in the COW file`);
  for (const [bad, what] of [
    [h.fpos, 'the next append (fpos)'],
    [h.fpos + 100n, 'past fpos'],
    [1n, 'the index'],
  ] as Array<[bigint, string]>) {
    const b = Buffer.from(good);
    b.writeBigUInt64LE(bad, entryOff);
    const info = reloadCowFileAs(t, part, mnt, b);
    if (info.state !== 5) t.log(`entry -> ${what}: /dev/datto0 reads ${t.sh(`dd if=/dev/datto0 bs=4096 skip=${start} count=64 iflag=direct status=none | sha256sum`, { allowFail: true }).stdout.trim()}`);
    assert.deepEqual([info.state, info.error], [5, -22], `entry -> ${what}: the reload must be refused (unverified, EINVAL)`);
    assert.ok(readFileSync(`${mnt}/.datto`).equals(b), `entry -> ${what}: a refused COW file must be left as it was`);
    t.ioctl.destroy(0);
  }
  // repaired: the same file reloads and /dev/datto0 shows the snapshot
  const repaired = reloadCowFileAs(t, part, mnt, good);
  assert.deepEqual([repaired.state, repaired.error], [3, 0], 'the repaired file must reload');
  const now = t.sh(`dd if=/dev/datto0 bs=4096 skip=${start} count=64 iflag=direct status=none | sha256sum`).stdout;
  assert.equal(now, snapHash, 'the reloaded snapshot must read the data of the snapshot instant');
  t.ioctl.destroy(0);
}

/** /dev/datto0 must not exist (nor be read and cached) before the snapshot instant: only after the freeze. */
export async function snapshotDeviceAppearsAfterTheInstant(t: VmContext): Promise<void> {
  const under = partition(t, t.disks[0]!, 128);
  withDelayDevice(t, 'dbdslowf', under, (dev) => {
    t.mkfs('ext4', dev, ['-b', '4096']);
    const mnt = t.mount(dev);
    t.loadModule();
    // dirty data and slow writes: the setup's freeze takes seconds
    t.sh(`dd if=/dev/urandom of=${mnt}/dirty bs=1M count=8 status=none`);
    setDelay(t, 'dbdslowf', delayTable(t, under, 0, 3000));
    const d = t.tmp;
    const r = t.sh(
      // files appear whole (mv): the loop must never read a half-written one
      `s=$(date +%s.%N); ( ${t.config.ioctlTool} setup 0 ${dev} ${mnt}/.datto 16; echo $? > ${d}/rc; date +%s.%N > ${d}/done.t; mv ${d}/done.t ${d}/done ) &
while [ ! -e ${d}/done ]; do if [ -b /dev/datto0 ] && [ ! -e ${d}/seen ]; then date +%s.%N > ${d}/seen.t; mv ${d}/seen.t ${d}/seen; fi; sleep 0.1; done
# not seen while setup ran (it appears as setup returns): seen now, after it
if [ -b /dev/datto0 ] && [ ! -e ${d}/seen ]; then date +%s.%N > ${d}/seen; fi
echo "$s $(cat ${d}/seen 2>/dev/null || echo 0) $(cat ${d}/done) $(cat ${d}/rc)"`,
      { timeoutMs: 180_000 },
    );
    setDelay(t, 'dbdslowf', delayTable(t, under, 0, 0));
    const [start, seen, done, rc] = r.stdout.trim().split(/\s+/).map(Number) as [number, number, number, number];
    t.log(`setup began ${start}, /dev/datto0 seen ${seen}, setup returned ${done}`);
    assert.equal(rc, 0, 'setup failed');
    assert.ok(done - start > 6, `the freeze was not slow (${(done - start).toFixed(1)} s): the test proves nothing`);
    assert.ok(seen > 0, '/dev/datto0 does not exist after setup returned');
    assert.ok(
      done - seen < (done - start) / 2,
      `/dev/datto0 existed ${(done - seen).toFixed(1)} s before setup returned (setup took ${(done - start).toFixed(1)} s): readable before the snapshot instant`,
    );
    assert.equal(t.ioctl.info(0).state, 3);
  });
}


/** dm table over dev: linear, but writes to the given runs of 4 KiB blocks fail (dm-flakey error_writes). */
function failWritesTable(t: VmContext, dev: string, runs: ReadonlyArray<readonly [number, number]>): string {
  const sectors = Number(t.run(['blockdev', '--getsz', dev]).stdout.trim());
  const rows: string[] = [];
  let at = 0;
  for (const [first, count] of [...runs].sort((a, b) => a[0] - b[0])) {
    const start = first * 8;
    if (start > at) rows.push(`${at} ${start - at} linear ${dev} ${at}`);
    rows.push(`${start} ${count * 8} flakey ${dev} ${start} 0 3600 1 error_writes`);
    at = start + count * 8;
  }
  if (at < sectors) rows.push(`${at} ${sectors - at} linear ${dev} ${at}`);
  return rows.join('\n');
}

/*
 * transition-to-snapshot when the previous (incremental) COW file cannot be
 * synced and closed: the new snapshot is valid, but the old file's
 * changed-block list is not. The old module logged a warning, returned 0
 * and left the old file's header CLEAN in the page cache (update-img would
 * have trusted it). Now: EIO, state 3 without error, the old file unclean.
 */
export async function transitionReportsAnUnclosableOldCowFile(t: VmContext): Promise<void> {
  const under = partition(t, t.disks[0]!, 128);
  t.modprobe('dm-flakey');
  withDelayDevice(t, 'dbdfaulty', under, (dev) => {
    // inode tables zeroed now: ext4lazyinit writing 8 MiB of them after the
    // transition would fill the new 8 MiB COW file (EFBIG, seen once on 6.1)
    t.mkfs('ext4', dev, ['-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0']);
    // no flushes: dm-flakey fails empty flushes as writes, which would fail
    // the transition's freeze before the old file is even closed
    const mnt = t.mount(dev, { options: 'nobarrier' });
    t.loadModule();
    t.ioctl.setup(0, dev, `${mnt}/.datto1`, 8);
    t.ioctl.transitionInc(0);
    t.sh(`dd if=/dev/urandom of=${mnt}/changed bs=1M count=4 status=none && sync`);
    const runs = blockRuns(fileBlockMap(t, `${mnt}/.datto1`));
    const dm = `dm-${t.run(['dmsetup', 'info', '-c', '--noheadings', '-o', 'minor', 'dbdfaulty']).stdout.trim()}`;
    t.allowKernelLog('I/O error', new RegExp(`\\b${dm}\\b`), 'writes to the old COW file fail on purpose');
    setDelay(t, 'dbdfaulty', failWritesTable(t, under, runs));
    let code = 'OK';
    try {
      t.ioctl.transitionSnap(0, `${mnt}/.datto2`, 8);
    } catch (e) {
      code = errCode(e) ?? String(e);
    } finally {
      setDelay(t, 'dbdfaulty', delayTable(t, under, 0, 0));
    }
    assert.equal(code, 'EIO', 'transition-to-snapshot must report that the previous COW file was not closed');
    const info = t.ioctl.info(0);
    assert.deepEqual([info.state, info.error, info.seqid], [3, 0, 2], 'the new snapshot is active all the same');
    t.run(['dd', 'if=/dev/datto0', 'of=/dev/null', 'bs=1M', 'count=4', 'iflag=direct']);
    assert.equal(readCowHeader(`${mnt}/.datto1`).flags & 1, 0, 'the old COW file must not be CLEAN: its index is not on disk');
  });
}

/*
 * Originals read but not yet saved are bounded, even for writers that are
 * never throttled (kernel threads) or throttled only after their bio is held
 * (one write-zeroes bio covers up to 2 GiB on virtio). Here the COW thread
 * cannot save at all: an external fsfreeze blocks its writes, while a
 * 760 MiB BLKZEROOUT below the filesystem goes on. The old module read a
 * page per block of the whole bio and kept them (760 MiB of a 2 GiB guest;
 * a 4 GiB zeroout pins 4 GiB). Now the snapshot fails with ENOMEM at a
 * quarter of RAM and the memory is bounded; the origin gets its zeroes.
 */
export async function originalsPinAtMostAQuarterOfMemory(t: VmContext): Promise<void> {
  // the filesystem takes the first 200 MiB; the zeroed range lies past its
  // end, written through the partition before the snapshot
  const part = partition(t, t.disks[0]!, 1000);
  t.run(['mkfs.ext4', '-F', '-q', '-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0', part, '200M']);
  const mnt = t.mount(part);
  const offMiB = 220;
  const lenMiB = 760;
  t.sh(`dd if=/dev/urandom of=${part} bs=1M seek=${offMiB} count=${lenMiB} oflag=direct conv=fsync status=none`, { timeoutMs: 600_000 });
  const zmax = Number(t.sh(`cat /sys/block/${t.disks[0]!.replace('/dev/', '')}/queue/write_zeroes_max_bytes`).stdout.trim());
  assert.ok(zmax >= lenMiB << 20, `write-zeroes bios of at most ${zmax} bytes: the test needs one bio`);
  const ramMiB = Number(t.sh(`awk '/^MemTotal/ {print $2}' /proc/meminfo`).stdout.trim()) / 1024;
  assert.ok(ramMiB / 4 < lenMiB - 100, `guest RAM ${ramMiB.toFixed(0)} MiB: a quarter is not well below the ${lenMiB} MiB zeroed`);
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 50);
  t.sh('sync && echo 3 > /proc/sys/vm/drop_caches');
  // MemFree sampled every 10 ms while blkdiscard runs with the filesystem
  // frozen (one process: a shell loop under TCG samples too rarely)
  const py = `
import subprocess, sys, threading, time
def free():
    with open('/proc/meminfo') as f:
        for l in f:
            if l.startswith('MemFree:'):
                return int(l.split()[1])
free0 = free(); low = free0; n = 0; done = False
def sample():
    global low, n
    while not done:
        low = min(low, free()); n += 1; time.sleep(0.01)
th = threading.Thread(target=sample); th.start(); time.sleep(0.1)
subprocess.check_call(['fsfreeze', '-f', sys.argv[4]])
t0 = time.time()
rc = subprocess.call(['blkdiscard', '-f', '-z', '-o', sys.argv[1], '-l', sys.argv[2], sys.argv[3]])
secs = time.time() - t0
time.sleep(1)
done = True; th.join()
subprocess.check_call(['fsfreeze', '-u', sys.argv[4]])
print(rc, free0, low, n, round(secs, 2))
`;
  const r = t.run(['python3', '-c', py, String(offMiB << 20), String(lenMiB << 20), part, mnt], { timeoutMs: 600_000 });
  const [rc, free0, minFree, samples, secs] = r.stdout.trim().split(/\s+/).map(Number) as [number, number, number, number, number];
  const dropMiB = (free0 - minFree) / 1024;
  t.log(`zeroed ${lenMiB} MiB in ${secs} s with the filesystem frozen; MemFree fell by ${dropMiB.toFixed(0)} MiB at most (${samples} samples, RAM ${ramMiB.toFixed(0)} MiB)`);
  assert.equal(rc, 0, 'blkdiscard -z failed');
  assert.ok(samples >= 20, `too few samples (${samples})`);
  assert.ok(
    dropMiB < ramMiB / 4 + 60,
    `MemFree fell by ${dropMiB.toFixed(0)} MiB while zeroing ${lenMiB} MiB (a quarter of RAM is ${(ramMiB / 4).toFixed(0)} MiB): originals are not bounded`,
  );
  assert.equal(t.ioctl.info(0).error, -12, 'the snapshot must fail with ENOMEM');
  const zeros = t.sh(`cmp -n ${lenMiB << 20} /dev/zero ${part} --ignore-initial=0:${offMiB << 20} && echo same`, { allowFail: true, timeoutMs: 300_000 });
  assert.match(zeros.stdout, /same/, 'the origin must hold the zeroes');
  t.ioctl.destroy(0);
  t.umount(mnt);
  t.unloadModule();
}

/*
 * Stress: for 30 s, on one minor, transitions (and destroy + setup after a
 * failure or every few rounds) race opens and direct reads of /dev/datto0,
 * info and expand ioctls from other processes, and writes to the volume.
 * Ends in a documented state: no oops, no hang (case timeout), a clean kernel
 * log, the untouched file intact, the filesystem clean, the device destroyable.
 * The debug lane runs it under KASAN and lockdep.
 */
export async function ioctlsOpensAndWritesRaceOnOneMinor(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 256);
  t.mkfs('ext4', part, ['-b', '4096']);
  const mnt = t.mount(part);
  const keep = describedFile(2048, 7);
  writeFileSync(join(mnt, 'keep'), keep);
  t.sh(`dd if=/dev/urandom of=${mnt}/churn bs=1M count=4 status=none && sync`);
  t.loadModule();
  const T = t.config.ioctlTool!;
  const d = t.tmp;
  t.ioctl.setup(0, part, `${mnt}/.s0`, 32);
  const r = t.sh(
    `end=$(( $(date +%s) + 30 ))
( i=0; while [ $(date +%s) -lt $end ]; do i=$((i+1)); dd if=/dev/urandom of=${mnt}/churn bs=64k count=16 seek=$(( (i * 7) % 48 )) conv=notrunc status=none; done ) &
( n=0; i=0; while [ $(date +%s) -lt $end ]; do i=$((i+1)); dd if=/dev/datto0 of=/dev/null bs=64k count=32 skip=$(( (i * 13) % 64 )) iflag=direct status=none 2>/dev/null && n=$((n+1)); done; echo $n > ${d}/reads ) &
( while [ $(date +%s) -lt $end ]; do exec 3</dev/datto0 && exec 3<&-; done 2>/dev/null ) &
( while [ $(date +%s) -lt $end ]; do ${T} info 0; ${T} expand 0 1; done >/dev/null 2>&1 ) &
n=0; ok=0; fresh=0
while [ $(date +%s) -lt $end ]; do
  n=$((n+1))
  if ${T} transition-inc 0 >/dev/null 2>&1 && ${T} transition-snap 0 ${mnt}/.s$n 32 >/dev/null 2>&1; then
    ok=$((ok+1)); rm -f ${mnt}/.s$((n-1))
  fi
  if [ $((n % 5)) = 0 ] || ! ${T} info 0 2>/dev/null | grep -q '"error":0,'; then
    ${T} destroy 0 >/dev/null 2>&1; rm -f ${mnt}/.s*
    ${T} setup 0 ${part} ${mnt}/.s$n 32 >/dev/null 2>&1 && fresh=$((fresh+1))
  fi
done
wait
echo "$n $ok $fresh $(cat ${d}/reads)"`,
    { timeoutMs: 240_000 },
  );
  const [rounds, ok, fresh, reads] = r.stdout.trim().split(/\s+/).map(Number) as [number, number, number, number];
  t.log(`${rounds} rounds: ${ok} transition pairs, ${fresh} fresh setups, ${reads} direct reads of /dev/datto0`);
  // the debug (KASAN) kernel manages 3 pairs and 5 reads in the 30 s
  assert.ok(ok >= 2 && reads >= 3, `too little raced (${ok} transition pairs, ${reads} reads): the test proves nothing`);
  t.sh(`${T} destroy 0 >/dev/null 2>&1; true`);
  assert.ok(readFileSync(join(mnt, 'keep')).equals(keep), 'a file nobody wrote changed');
  t.umount(mnt);
  const fsck = t.run(['e2fsck', '-fn', part], { allowFail: true });
  assert.equal(fsck.code, 0, `e2fsck after the race: ${fsck.stdout.slice(-400)}`);
  t.unloadModule();
}
