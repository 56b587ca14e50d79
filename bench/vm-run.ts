// SPDX-License-Identifier: GPL-2.0-only
// One benchmark boot per kernel, through the VM harness's library
// (test/vm/lib): build dattobd.ko, bundle bench/vm/*.vm.ts with the guest
// runner, boot under QEMU/TCG with one dedicated virtio disk, collect the
// samples (<runDir>/bench.jsonl), case results and the kernel log.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestConfig } from '../test/vm/guest/api.js';
import type { CaseResult } from '../test/vm/guest/runner.js';
import { buildModule, type BuildResult } from '../test/vm/lib/build.js';
import { bundleGuest } from '../test/vm/lib/bundle.js';
import { buildInitramfs } from '../test/vm/lib/initramfs.js';
import type { KernelInfo } from '../test/vm/lib/kernels.js';
import { formatProblems, scanKernelLog } from '../test/vm/lib/logscan.js';
import { REPO, vmDir } from '../test/vm/lib/paths.js';
import { bootGuest } from '../test/vm/lib/qemu.js';
import type { TestFile } from '../test/vm/lib/suite.js';
import type { BenchParams } from './guest/params.js';
import type { Sample } from './lib/types.js';

/** vdc: the volume update-img's benchmark snapshots, a whole virtio disk as a user's /dev/sdX */
export const UIMG_DISK_BYTES = 64 * 1024 * 1024;

export interface VmBenchOptions {
  /** directory holding the module's sources (a Kbuild file) */
  kernelSrc: string;
  smp: number;
  memMiB: number;
  diskBytes: number;
  /** whole boot (QEMU is killed after it) */
  timeoutS: number;
  /** one guest case */
  caseTimeoutS: number;
  params: BenchParams;
  keep: boolean;
  verbose: boolean;
  /** the built node binding (DATTOBD_NATIVE in the guest), or null */
  nativeAddon: string | null;
}

export interface VmBenchRun {
  kernel: KernelInfo;
  build: BuildResult;
  samples: Sample[];
  cases: CaseResult[];
  problems: string[];
  bootSeconds: number;
}

function runnerScript(configPath: string, bundle: string, nativeAddon: string | null): string {
  return [
    '#!/bin/sh',
    `cd ${JSON.stringify(REPO)} || exit 250`,
    ...(nativeAddon ? [`export DATTOBD_NATIVE=${JSON.stringify(nativeAddon)}`] : []),
    `exec node --enable-source-maps ${JSON.stringify(bundle)} ${JSON.stringify(configPath)}`,
    '',
  ].join('\n');
}

export async function runKernelBench(k: KernelInfo, tests: TestFile[], tool: string | null, o: VmBenchOptions, log: (s: string) => void): Promise<VmBenchRun> {
  const build = buildModule(k, o.kernelSrc, 'bench-dattobd', 'dattobd.ko');
  const problems: string[] = [];
  const res: VmBenchRun = { kernel: k, build, samples: [], cases: [], problems, bootSeconds: 0 };
  if (!build.ok) {
    problems.push(`dattobd.ko did not build for ${k.name}:\n${build.output.split('\n').slice(0, 20).join('\n')}`);
    return res;
  }
  const initramfs = buildInitramfs(k);
  const runDir = join(vmDir(), 'runs', `${k.name}-bench-${process.pid}`);
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const cfg: GuestConfig & { bench: BenchParams } = {
    kernel: { name: k.name, kver: k.kver },
    repo: REPO,
    vmDir: vmDir(),
    runDir,
    moduleKo: build.ko,
    moduleError: null,
    fixtures: {},
    ioctlTool: tool,
    disks: [
      { dev: '/dev/vda', size: o.diskBytes },
      { dev: '/dev/vdb', size: o.diskBytes },
      { dev: '/dev/vdc', size: UIMG_DISK_BYTES },
    ],
    tests,
    commandTimeoutMs: 240_000,
    caseTimeoutMs: o.caseTimeoutS * 1000,
    bench: o.params,
  };
  const cfgPath = join(runDir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  const bundle = await bundleGuest(tests, `bench-${k.name}`);
  writeFileSync(join(runDir, 'guest.sh'), runnerScript(cfgPath, bundle, o.nativeAddon), { mode: 0o755 });
  log(`boot [${k.name}] ${k.kver}: benchmark (${tests.reduce((a, t) => a + t.cases.length, 0)} cases)`);
  const boot = await bootGuest({
    kernel: k,
    initramfs,
    runDir,
    disks: [{ size: o.diskBytes }, { size: o.diskBytes }, { size: UIMG_DISK_BYTES }],
    timeoutMs: o.timeoutS * 1000,
    smp: o.smp,
    memMiB: o.memMiB,
    onSerial: o.verbose ? (s) => process.stdout.write(s) : undefined,
    onRetry: (m) => log(`boot [${k.name}]: ${m}`),
  });
  res.bootSeconds = boot.seconds;
  rmSync(bundle, { force: true });
  const read = <T>(f: string): T[] =>
    existsSync(join(runDir, f))
      ? readFileSync(join(runDir, f), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as T)
      : [];
  res.samples = read<Sample>('bench.jsonl');
  res.cases = read<CaseResult>('results.jsonl');
  for (const c of res.cases) {
    const line = `${c.file}:${c.name} ${c.status} after ${(c.ms / 1000).toFixed(1)} s`;
    log(`  [${k.name}] ${line}`);
    if (c.status !== 'passed') {
      const err = (c.error ?? '').split('\n').slice(0, 12).join('\n');
      problems.push(`${line}: ${err}`);
      if (o.verbose && c.log) log(c.log.slice(-30).join('\n'));
    }
  }
  const kp = scanKernelLog(boot.dmesg || boot.serial);
  if (kp.length) problems.push(`kernel log problems:\n${formatProblems(kp)}`);
  if (boot.timedOut) problems.push(`guest timed out after ${o.timeoutS} s`);
  else if (boot.exitCode === null) problems.push(`guest ended without an exit status (QEMU exit ${boot.qemuExit})`);
  for (const f of ['disk0.img', 'disk1.img', 'disk2.img']) rmSync(join(runDir, f), { force: true });
  if (!o.keep && !problems.length) rmSync(runDir, { recursive: true, force: true });
  else log(`  run directory kept: ${runDir}`);
  log(`boot [${k.name}]: ${boot.seconds.toFixed(1)} s, ${res.samples.length} samples`);
  return res;
}
