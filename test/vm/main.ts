// SPDX-License-Identifier: GPL-2.0-only
// VM suite (npm run test:vm): prepares the Debian kernels, builds kernel/
// against each (warnings are errors), boots each kernel under QEMU/TCG with
// the host's root shared read-only, runs test/vm/tests/*.vm.ts in the guest,
// checks the guest's kernel log, runs the harness self-test (a module with
// WARN_ON must be reported), prints per-test results and writes --json.
// See test/vm/README.md for the environment variables.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { GuestConfig } from './guest/api.js';
import type { CaseResult } from './guest/runner.js';
import { buildDattobdAsync, buildFixtureAsync, buildIoctlTool, ensureNativeBinding, type BuildResult } from './lib/build.js';
import { bundleGuest, remapStack } from './lib/bundle.js';
import { buildInitramfs } from './lib/initramfs.js';
import { pvhKernel } from './lib/pvh.js';
import { HarnessError, prepareKernels, selectedKernelNames, type KernelInfo } from './lib/kernels.js';
import { formatProblems, scanKernelLog } from './lib/logscan.js';
import { REPO, vmDir } from './lib/paths.js';
import { bootGuest, parseSize, type BootResult } from './lib/qemu.js';
import { CaseQueue, expectedSeconds, loadCaseTimes, queueOrder, saveCaseTimes } from './lib/schedule.js';
import { discoverTests, filterTests, type TestFile } from './lib/suite.js';

interface Result {
  kernel: string;
  name: string;
  status: 'passed' | 'failed' | 'skipped';
  ms: number;
  error?: string;
  /** 'xfail' | 'xpass' for declared known failures (see lib/suite.ts) */
  known?: 'xfail' | 'xpass';
}

const env = process.env;
const num = (v: string | undefined, d: number): number => (v && Number.isFinite(Number(v)) ? Number(v) : d);
const opts = {
  json: argValue('--json'),
  jobs: Math.max(1, num(env.DBD_VM_JOBS, 2)),
  smp: Math.max(1, num(env.DBD_VM_SMP, 2)),
  memMiB: num(env.DBD_VM_MEM, 1024),
  disks: (env.DBD_VM_DISKS ?? '1G,1G').split(',').map(parseSize),
  diskCache: env.DBD_VM_CACHE === 'none' ? ('none' as const) : ('writeback' as const),
  timeoutS: env.DBD_VM_TIMEOUT ? Number(env.DBD_VM_TIMEOUT) : null,
  caseTimeoutS: num(env.DBD_VM_CASE_TIMEOUT, 180),
  commandTimeoutS: num(env.DBD_VM_CMD_TIMEOUT, 60),
  selftest: env.DBD_VM_SELFTEST !== '0',
  keep: env.DBD_VM_KEEP === '1',
  verbose: env.DBD_VM_VERBOSE === '1',
  shell: env.DBD_VM_SHELL && env.DBD_VM_SHELL !== '0' ? env.DBD_VM_SHELL : undefined,
  hungTaskSecs: num(env.DBD_VM_HUNG_TASK, 30),
  loglevel: num(env.DBD_VM_LOGLEVEL, 8),
  pvh: env.DBD_VM_PVH !== '0',
  cmdline: env.DBD_VM_CMDLINE ?? '',
};

function argValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const results: Result[] = [];
const caseTimes = loadCaseTimes();
/** the selected VM tests (every guest's bundle holds them all) */
let jobTests: TestFile[] = [];
const bootTimes: Array<{ kernel: string; kver: string; boot: string; seconds: number } & BootResult['marks']> = [];
const log = (s: string): void => console.log(s);

function record(r: Result): void {
  results.push(r);
  const tag = r.known === 'xfail' ? 'XFAIL' : r.known === 'xpass' ? 'XPASS'
    : r.status === 'passed' ? 'PASS' : r.status === 'failed' ? 'FAIL' : 'SKIP';
  log(`${tag} [${r.kernel}] ${r.name} (${(r.ms / 1000).toFixed(1)} s)`);
  if (r.status !== 'passed' && r.error) log(indent(r.error));
}

function indent(s: string): string {
  return s
    .trimEnd()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

function newRunDir(kernel: KernelInfo, label: string): string {
  const dir = join(vmDir(), 'runs', `${kernel.name}-${label}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

interface KernelBuild {
  kernel: KernelInfo;
  /** uncompressed vmlinux for a direct PVH boot, or null (boot the bzImage) */
  image: string | null;
  dattobd: BuildResult;
  hello: BuildResult;
  broken: BuildResult;
  initramfs: string;
}

function guestConfig(kb: KernelBuild, runDir: string, tests: TestFile[], tool: string | null): GuestConfig {
  return {
    kernel: { name: kb.kernel.name, kver: kb.kernel.kver },
    repo: REPO,
    vmDir: vmDir(),
    runDir,
    moduleKo: kb.dattobd.ko,
    moduleError: kb.dattobd.ok ? null : kb.dattobd.output.split('\n').filter((l) => /error|Error|\*\*\*/.test(l)).slice(0, 6).join('\n'),
    fixtures: { hello: kb.hello.ko, broken: kb.broken.ko },
    ioctlTool: tool,
    disks: opts.disks.map((size, i) => ({ dev: `/dev/vd${String.fromCharCode(97 + i)}`, size })),
    tests,
    commandTimeoutMs: opts.commandTimeoutS * 1000,
    caseTimeoutMs: opts.caseTimeoutS * 1000,
  };
}

function runnerScript(configPath: string, bundle: string | null): string {
  const native = join(REPO, 'src', 'native', 'build', 'Release', 'dattobd_native.node');
  const run = bundle
    ? `node ${JSON.stringify(bundle)}`
    : 'node --import tsx test/vm/guest/runner.ts';
  return [
    '#!/bin/sh',
    `cd ${JSON.stringify(REPO)} || exit 250`,
    `export DATTOBD_NATIVE=${JSON.stringify(native)}`,
    `exec ${run} ${JSON.stringify(configPath)}`,
    '',
  ].join('\n');
}

/** Live progress from the serial console: one line per finished case (final results follow). */
function progressPrinter(kernel: string): (chunk: string) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const l of lines) {
      const m = /dbd-vm: (PASSED|FAILED|SKIPPED) (\S+) (\S+) (\d+) ms/.exec(l);
      const note = m && m[2] === SELFTEST.file ? ' — the self-test case must fail' : '';
      if (m) log(`  … [${kernel}] ${m[1]} ${m[2]}:${m[3]} (${(Number(m[4]) / 1000).toFixed(1)} s)${note}`);
    }
  };
}

interface BootRun {
  label: string;
  cases: CaseResult[];
  boot: BootResult;
  kernelLog: string;
  bootError: string | null;
  /** this boot ran the harness self-test last */
  selftest: boolean;
}

/**
 * Boot one kernel: the guest claims cases from the kernel's queue (if any),
 * then runs `tests`; returns its results plus boot checks.
 */
async function runSuite(
  kb: KernelBuild,
  label: string,
  tests: TestFile[],
  tool: string | null,
  shared: { queue: CaseQueue; files: TestFile[] } | null,
): Promise<BootRun> {
  const queue = shared?.queue ?? null;
  const runDir = newRunDir(kb.kernel, label);
  const cfgPath = join(runDir, 'config.json');
  const boot = `${kb.kernel.name}/${label}`;
  const cfg = guestConfig(kb, runDir, tests, tool);
  if (queue) cfg.queue = { dir: '/run/dbd-queue', boot, cases: [...queue.cases] };
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  const files = shared ? shared.files : tests;
  const bundle = env.DBD_VM_TSX === '1' ? null : await bundleGuest(withSelftestFile(files, tests), `${kb.kernel.name}-${label}`);
  writeFileSync(join(runDir, 'guest.sh'), runnerScript(cfgPath, bundle), { mode: 0o755 });
  const nCases = tests.reduce((a, t) => a + t.cases.length, 0) + (queue?.cases.length ?? 0);
  const timeoutMs = (opts.timeoutS ?? 120 + 90 * nCases) * 1000;
  const res = await bootGuest({
    kernel: kb.kernel,
    initramfs: kb.initramfs,
    runDir,
    disks: opts.disks.map((size) => ({ size, cache: opts.diskCache })),
    timeoutMs,
    smp: opts.smp,
    memMiB: opts.memMiB,
    hungTaskSecs: opts.hungTaskSecs,
    loglevel: opts.loglevel,
    extraCmdline: opts.cmdline,
    ...(kb.image ? { kernelImage: kb.image } : {}),
    ...(queue ? { queueDir: queue.dir } : {}),
    // boot + node start, then each case must begin or end within the case timeout
    idle: { ms: (opts.caseTimeoutS + 60) * 1000, progress: /dbd-vm: (init:|runner started|BEGIN |PASSED |FAILED |SKIPPED )/ },
    onSerial: opts.verbose ? (x) => process.stdout.write(x) : progressPrinter(boot),
    onRetry: (m) => log(`boot [${boot}]: ${m}`),
  });
  bootTimes.push({ kernel: kb.kernel.name, kver: kb.kernel.kver, boot: label, seconds: res.seconds, ...res.marks });
  const f = (x: number | null): string => (x === null ? '-' : `${x.toFixed(1)} s`);
  const resFile = join(runDir, 'results.jsonl');
  const cases: CaseResult[] = existsSync(resFile)
    ? readFileSync(resFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as CaseResult)
    : [];
  log(
    `boot [${boot}]: ${res.seconds.toFixed(1)} s QEMU start to power-off ` +
      `(console ${f(res.marks.firstOutput)}, init ready ${f(res.marks.initReady)}, tests done ${f(res.marks.payloadDone)}), ` +
      `${cases.length} cases, payload exit ${res.exitCode ?? 'none'}`,
  );
  if (bundle) for (const c of cases) if (c.error) c.error = remapStack(c.error, bundle);
  // the full dmesg, or the serial console if the guest died before writing it
  const kernelLog = res.dmesg || res.serial;
  let bootError: string | null = null;
  if (res.timedOut) bootError = `guest killed by the host-side timeout: ${res.timeoutReason ?? ''} (DBD_VM_TIMEOUT, DBD_VM_CASE_TIMEOUT)`;
  else if (res.exitCode === null) bootError = `guest ended without reporting the payload's exit status (QEMU exit ${res.qemuExit})`;
  else if (res.exitCode >= 250) bootError = `guest setup failed (exit ${res.exitCode})`;
  else if (!res.dmesg) bootError = 'guest did not write its dmesg';
  else {
    const got = new Set(cases.map((c) => `${c.file}:${c.name}`));
    const expected = [...tests.flatMap((t) => t.cases.map((name) => ({ file: t.file, name }))), ...(queue?.claimedBy(boot) ?? [])];
    const missing = expected.filter((c) => !got.has(`${c.file}:${c.name}`));
    if (missing.length) {
      bootError = `the guest runner ended (exit ${res.exitCode}) without results for ${missing.length} of its ${expected.length} cases`;
    }
  }
  if (bootError) {
    const tailSerial = res.serial.trimEnd().split('\n').slice(-40).join('\n');
    bootError += `\nlast serial console lines (${join(runDir, 'serial.log')}):\n${tailSerial}`;
  }
  if (bundle) for (const x of [bundle, `${bundle}.map`]) rmSync(x, { force: true });
  reportDiffStats(boot, runDir);
  const selftest = tests.some((t) => t.file === SELFTEST.file);
  const expectedFailures = new Set(selftest ? SELFTEST.cases : []);
  const unexpected = cases.some((c) => c.status === 'failed' && !(c.file === SELFTEST.file && expectedFailures.has(c.name)));
  // (declared known failures keep the run directory too: unexpected is true for them)
  if (!opts.keep && !bootError && !unexpected && !scanKernelLog(splitAtSelfTest(kernelLog)[0]).length) {
    rmSync(runDir, { recursive: true, force: true });
  } else {
    opts.disks.forEach((_, i) => rmSync(join(runDir, `disk${i}.img`), { force: true }));
    log(`  run directory kept: ${runDir}`);
  }
  return { label, cases, boot: res, kernelLog, bootError, selftest };
}

/** The test files a bundle must hold: every file of `files`, plus the fixed tests' files. */
function withSelftestFile(files: readonly TestFile[], tests: readonly TestFile[]): TestFile[] {
  const out = [...files];
  for (const t of tests) if (!out.some((x) => x.file === t.file)) out.push(t);
  return out;
}

/** Totals of the differential model cases (diff-stats-*.json written by the guest), per kernel. */
function reportDiffStats(kernel: string, runDir: string): void {
  if (!existsSync(runDir)) return;
  let sequences = 0;
  let commands = 0;
  let divergences = 0;
  let batches = 0;
  for (const f of readdirSync(runDir).filter((x) => /^diff-stats-\d+\.json$/.test(x))) {
    try {
      const j = JSON.parse(readFileSync(join(runDir, f), 'utf8')) as { sequences?: number; commands?: number; divergences?: number };
      sequences += j.sequences ?? 0;
      commands += j.commands ?? 0;
      divergences += j.divergences ?? 0;
      batches++;
    } catch {
      // a batch that died mid-write is reported by its case
    }
  }
  if (batches) {
    log(`differential [${kernel}]: ${sequences} sequences, ${commands} commands in ${batches} batches, ${divergences} divergences`);
  }
}

/**
 * The harness self-test runs last in each kernel's boot: fixtures/broken-module
 * hits WARN_ON(1) in its init. Kernel-log text before its begin marker is
 * the suite's; the rest must contain the WARNING.
 */
const SELFTEST = { file: 'test/vm/selftest/broken-module.vm.ts', cases: ['loadBrokenModule'] };
const SELFTEST_MARK = `dbd-vm: case ${SELFTEST.file} loadBrokenModule begin`;

function splitAtSelfTest(log: string): [string, string] {
  const i = log.indexOf(SELFTEST_MARK);
  if (i < 0) return [log, ''];
  const lineStart = log.lastIndexOf('\n', i) + 1;
  return [log.slice(0, lineStart), log.slice(lineStart)];
}

function caseError(c: CaseResult): string {
  let s = c.error ?? '';
  if (c.log?.length) s += `\n-- case log (last ${c.log.length} lines):\n${c.log.join('\n')}`;
  const kmsg = c.kmsg;
  if (kmsg?.length) s += `\n-- kernel log of the case (last ${Math.min(kmsg.length, 25)} lines):\n${kmsg.slice(-25).join('\n')}`;
  return s;
}

/** One kernel's share of the run: its build, its queue of cases and its boots. */
interface KernelJob {
  kernel: KernelInfo;
  built: Promise<KernelBuild>;
  kb: KernelBuild | null;
  queue: CaseQueue;
  boots: BootRun[];
  active: number;
  seq: number;
  /** boots that ended with a boot error (a hung or dead guest) */
  deaths: number;
  /** the self-test still has to run (last in one of this kernel's boots) */
  selftestPending: boolean;
  selftestRunning: boolean;
  buildError: string | null;
}

const MAX_DEATHS = 2;
const maxBootsPerKernel = Math.max(1, num(env.DBD_VM_BOOTS_PER_KERNEL, 2));
/** a further guest of a kernel starts only for at least this much expected work (s) */
const MIN_SHARE_S = 120;

function wantsBoot(j: KernelJob): boolean {
  if (!j.kb || j.deaths > MAX_DEATHS || j.active >= maxBootsPerKernel) return false;
  const left = j.queue.unclaimed();
  if (j.active === 0) return left.length > 0 || (j.selftestPending && !j.selftestRunning);
  const seconds = left.reduce((a, c) => a + expectedSeconds(caseTimes, c), 0);
  return seconds >= MIN_SHARE_S;
}

/** The next boot for a free lane (fewest running guests first; counted as running), waiting for builds; null: nothing left. */
async function nextJob(jobs: KernelJob[]): Promise<KernelJob | null> {
  for (;;) {
    const ready = jobs.filter(wantsBoot).sort((a, b) => a.active - b.active);
    const j = ready[0];
    if (j) {
      // taken here, synchronously: the other lanes choose right after this one
      j.active++;
      return j;
    }
    const building = jobs.filter((x) => !x.kb && x.buildError === null);
    if (!building.length) return null;
    await Promise.race(building.map((x) => x.built.catch(() => undefined)));
  }
}

async function lane(jobs: KernelJob[], tool: string | null): Promise<void> {
  for (;;) {
    const j = await nextJob(jobs);
    if (!j?.kb) return;
    const selftest = opts.selftest && j.kb.broken.ok && j.selftestPending && !j.selftestRunning;
    if (selftest) j.selftestRunning = true;
    const label = `boot${++j.seq}`;
    try {
      const run = await runSuite(j.kb, label, selftest ? [SELFTEST] : [], tool, { queue: j.queue, files: jobTests });
      j.boots.push(run);
      if (run.bootError) j.deaths++;
      if (selftest && run.cases.some((c) => c.file === SELFTEST.file)) j.selftestPending = false;
    } finally {
      j.active--;
      if (selftest) j.selftestRunning = false;
    }
  }
}

/** Per-kernel results, once all its boots have ended. */
function reportKernel(j: KernelJob, tests: TestFile[]): void {
  const k = j.kernel.name;
  const got = new Map<string, CaseResult>();
  for (const b of j.boots) for (const c of b.cases) got.set(`${c.file}:${c.name}`, c);
  const claims = j.queue.claims();
  const claimOf = new Map(j.queue.cases.map((c, i) => [`${c.file}:${c.name}`, claims.get(i)]));
  const bootOf = new Map(j.boots.map((b) => [`${k}/${b.label}`, b]));
  for (const t of tests) {
    for (const name of t.cases) {
      const key = `${t.file}:${name}`;
      const c = got.get(key);
      if (!c) {
        const by = claimOf.get(key);
        const b = by ? bootOf.get(by) : undefined;
        const why = by !== undefined
          ? `the guest (${by || 'unknown boot'}) died or was killed while this case ran: ${b?.bootError?.split('\n')[0] ?? 'no result'}`
          : `not run: ${j.boots.length ? `every guest of this kernel failed or was killed before this case (${j.deaths} boot errors)` : 'no guest was booted'}`;
        record({ kernel: k, name: key, status: 'failed', ms: 0, error: why });
        continue;
      }
      const r: Result = { kernel: k, name: key, status: c.status, ms: c.ms };
      if (c.status !== 'passed') r.error = caseError(c);
      const reason = t.known?.[name];
      if (reason !== undefined && c.status === 'failed') {
        r.status = 'skipped';
        r.known = 'xfail';
        r.error = `known failure: ${reason}\n${r.error ?? ''}`;
      } else if (reason !== undefined && c.status === 'passed') {
        r.known = 'xpass';
        r.error = `declared as a known failure (${reason}) but passed: remove it from knownFailures once it passes reliably`;
        log(`    ${r.error}`);
      }
      record(r);
    }
  }
  const errs: string[] = [];
  for (const b of j.boots) {
    const suiteLog = b.selftest ? splitAtSelfTest(b.kernelLog)[0] : b.kernelLog;
    const problems = scanKernelLog(suiteLog);
    if (b.bootError) errs.push(`${b.label}: ${b.bootError}`);
    if (problems.length) errs.push(`${b.label}: kernel log problems in the guest's dmesg:\n${formatProblems(problems)}`);
  }
  if (!j.boots.length) errs.push('no guest of this kernel was booted');
  const bootMs = j.boots.reduce((a, b) => a + b.boot.seconds * 1000, 0);
  const clean: Result = { kernel: k, name: 'guest boots and kernel logs clean', status: errs.length ? 'failed' : 'passed', ms: bootMs };
  if (errs.length) clean.error = errs.join('\n');
  record(clean);

  const selfName = 'harness self-test: WARN_ON module is reported with its dmesg excerpt';
  if (!opts.selftest) {
    record({ kernel: k, name: selfName, status: 'skipped', ms: 0, error: 'DBD_VM_SELFTEST=0' });
    return;
  }
  if (!j.kb?.broken.ok) {
    record({ kernel: k, name: selfName, status: 'failed', ms: 0, error: `broken-module fixture did not build:\n${j.kb?.broken.output ?? ''}` });
    return;
  }
  // passes exactly when the harness reports the broken module's WARNING
  const sb = j.boots.find((b) => b.selftest && b.cases.some((c) => c.file === SELFTEST.file));
  const c = sb?.cases.find((x) => x.file === SELFTEST.file && x.name === 'loadBrokenModule');
  const why: string[] = [];
  if (!c) why.push(`no result for the self-test case${j.deaths ? ' (the guests failed before it)' : ''}`);
  else {
    if (c.status !== 'failed') why.push(`the case was reported ${c.status}, expected failed`);
    if (!/WARNING/.test(c.error ?? '') || !/broken/.test(c.error ?? '')) {
      why.push(`the case error lacks the WARNING excerpt naming the module:\n${c.error ?? '(none)'}`);
    }
    if (!scanKernelLog(splitAtSelfTest(sb?.kernelLog ?? '')[1]).some((p) => p.kind === 'WARNING')) why.push('the full-dmesg scan found no WARNING after the self-test began');
  }
  if (why.length) record({ kernel: k, name: selfName, status: 'failed', ms: c?.ms ?? 0, error: why.join('\n') });
  else {
    record({ kernel: k, name: selfName, status: 'passed', ms: c?.ms ?? 0 });
    if (opts.verbose && c) log(indent(`reported as expected:\n${c.error ?? ''}`));
  }
}

async function shellMode(kb: KernelBuild, tool: string | null, cmd: string): Promise<number> {
  const runDir = newRunDir(kb.kernel, 'shell');
  const interactive = cmd === '1';
  const envs = [
    `export DBD_KO=${JSON.stringify(kb.dattobd.ko ?? '')}`,
    `export DBD_IOCTL=${JSON.stringify(tool ?? '')}`,
    `export DBD_HELLO_KO=${JSON.stringify(kb.hello.ko ?? '')}`,
    `export DBD_BROKEN_KO=${JSON.stringify(kb.broken.ko ?? '')}`,
  ];
  const body = interactive
    ? ['echo "dbd-vm shell: dattobd.ko is $DBD_KO, ioctl tool $DBD_IOCTL; exit to power off"', 'setsid -c /bin/bash -i </dev/ttyS0 >/dev/ttyS0 2>&1']
    : [cmd];
  writeFileSync(join(runDir, 'guest.sh'), ['#!/bin/sh', `cd ${JSON.stringify(REPO)}`, ...envs, ...body, ''].join('\n'), { mode: 0o755 });
  const boot = await bootGuest({
    kernel: kb.kernel,
    initramfs: kb.initramfs,
    runDir,
    disks: opts.disks.map((size) => ({ size, cache: opts.diskCache })),
    timeoutMs: (opts.timeoutS ?? (interactive ? 3600 : 300)) * 1000,
    smp: opts.smp,
    memMiB: opts.memMiB,
    hungTaskSecs: opts.hungTaskSecs,
    loglevel: opts.loglevel,
    extraCmdline: opts.cmdline,
    ...(kb.image ? { kernelImage: kb.image } : {}),
    interactive,
    onSerial: interactive ? undefined : (s) => process.stdout.write(s),
  });
  log(`\nshell [${kb.kernel.name}]: exit ${boot.exitCode ?? 'none'}${boot.timedOut ? ' (timed out)' : ''} after ${boot.seconds.toFixed(1)} s (console at ${boot.marks.firstOutput?.toFixed(1) ?? '-'} s, init ready ${boot.marks.initReady?.toFixed(1) ?? '-'} s, payload done ${boot.marks.payloadDone?.toFixed(1) ?? '-'} s); dmesg: ${join(runDir, 'dmesg.txt')}`);
  const problems = scanKernelLog(boot.dmesg || boot.serial);
  if (problems.length) log(`kernel log problems:\n${formatProblems(problems)}`);
  return boot.exitCode ?? 1;
}

function writeJson(extra: Record<string, unknown> = {}): void {
  const count = (s: Result['status']): number => results.filter((r) => r.status === s).length;
  const summary = { passed: count('passed'), failed: count('failed'), skipped: count('skipped') };
  const xfail = results.filter((r) => r.known === 'xfail');
  if (xfail.length) {
    log(`\nknown failures (declared in the test files, counted as skipped): ${xfail.length}`);
    for (const r of xfail) log(`  XFAIL [${r.kernel}] ${r.name}: ${(r.error ?? '').split('\n')[0]}`);
  }
  if (opts.json) {
    writeFileSync(opts.json, JSON.stringify({ ...summary, boots: bootTimes, results, ...extra }, null, 2));
  }
  log(`\nVM suite: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
  process.exitCode = summary.failed === 0 && summary.passed > 0 ? 0 : 1;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const names = selectedKernelNames();
  const kernels = prepareKernels(names, log);

  const tool = buildIoctlTool();
  if (!tool.ok) record({ kernel: 'host', name: 'build dbd-ioctl tool', status: 'failed', ms: 0, error: tool.output });
  if (!opts.shell) {
    const native = await ensureNativeBinding();
    if (native && !native.cached) {
      record({
        kernel: 'host',
        name: 'build the node binding (npm run build:native) for guest tests',
        status: native.ok ? 'passed' : 'failed',
        ms: native.seconds * 1000,
        ...(native.ok ? {} : { error: native.output }),
      });
    }
  }

  // builds run one after another (make -j2 already uses both cores); a kernel
  // boots as soon as its own build is done, at most DBD_VM_JOBS boots at once
  const buildKernel = async (k: KernelInfo): Promise<KernelBuild> => {
    const dattobd = await buildDattobdAsync(k);
    record({
      kernel: k.name,
      name: `build kernel/ → dattobd.ko (KCFLAGS=-Werror)${dattobd.cached ? ', unchanged sources: cached' : ''}`,
      status: dattobd.ok ? 'passed' : 'failed',
      ms: dattobd.seconds * 1000,
      ...(dattobd.ok ? {} : { error: dattobd.output }),
    });
    const hello = await buildFixtureAsync(k, 'hello-module');
    const broken = await buildFixtureAsync(k, 'broken-module');
    if (!hello.ok) record({ kernel: k.name, name: 'build fixture hello-module', status: 'failed', ms: 0, error: hello.output });
    return { kernel: k, image: opts.pvh ? pvhKernel(k) : null, dattobd, hello, broken, initramfs: buildInitramfs(k) };
  };

  if (opts.shell) {
    const first = kernels[0];
    if (!first) throw new HarnessError('no kernel selected', 'set DBD_VM_KERNELS');
    process.exitCode = await shellMode(await buildKernel(first), tool.ko, opts.shell);
    return;
  }

  const all = await discoverTests(env.DBD_VM_TEST_DIR ? resolve(env.DBD_VM_TEST_DIR) : undefined);
  const tests = filterTests(all, env.DBD_VM_TESTS);
  jobTests = tests;
  if (!tests.length) {
    record({ kernel: 'host', name: 'select VM tests', status: 'failed', ms: 0, error: `no VM test matches DBD_VM_TESTS=${env.DBD_VM_TESTS ?? ''}` });
  }
  const order = queueOrder(tests, caseTimes);
  let chain: Promise<unknown> = Promise.resolve();
  const jobs: KernelJob[] = kernels.map((k) => {
    const built = chain.then(() => buildKernel(k));
    chain = built.catch(() => undefined);
    const queueDir = join(vmDir(), 'runs', `${k.name}-queue-${process.pid}`);
    rmSync(queueDir, { recursive: true, force: true });
    const j: KernelJob = {
      kernel: k, built, kb: null, queue: new CaseQueue(queueDir, order), boots: [], active: 0, seq: 0, deaths: 0,
      selftestPending: opts.selftest, selftestRunning: false, buildError: null,
    };
    built.then(
      (kb) => (j.kb = kb),
      (e: unknown) => {
        j.buildError = e instanceof Error ? e.message : String(e);
        record({ kernel: k.name, name: 'prepare the kernel (build, initramfs)', status: 'failed', ms: 0, error: j.buildError });
      },
    );
    return j;
  });
  await Promise.all(Array.from({ length: opts.jobs }, () => lane(jobs, tool.ko)));
  for (const j of jobs) {
    reportKernel(j, tests);
    rmSync(j.queue.dir, { recursive: true, force: true });
  }
  const wall = (Date.now() - t0) / 1000;
  printTimes(jobs, tests, wall);
  writeJson({ seconds: wall });
}

/** Where the time went: per kernel (build, boots, cases) and per case. */
function printTimes(jobs: KernelJob[], tests: TestFile[], wall: number): void {
  const secs = (ms: number): string => (ms / 1000).toFixed(0).padStart(5);
  log('\nwhere the time went (seconds):');
  for (const j of jobs) {
    const build = results.find((r) => r.kernel === j.kernel.name && r.name.startsWith('build kernel/'));
    const caseMs = results.filter((r) => r.kernel === j.kernel.name && r.name.includes('.vm.ts:')).reduce((a, r) => a + r.ms, 0);
    const boots = j.boots.map((b) => `${b.label} ${b.boot.seconds.toFixed(0)} (${b.cases.length} cases)`).join(', ');
    log(`  ${j.kernel.name}: build ${((build?.ms ?? 0) / 1000).toFixed(0)}, cases ${(caseMs / 1000).toFixed(0)}, boots: ${boots || 'none'}`);
  }
  const names = jobs.map((j) => j.kernel.name);
  const rows = tests.flatMap((t) => t.cases.map((c) => `${t.file}:${c}`));
  const ms = (k: string, n: string): number | null => results.find((r) => r.kernel === k && r.name === n)?.ms ?? null;
  const measured: Array<{ name: string; seconds: number }> = [];
  const table = rows.map((n) => {
    const per = names.map((k) => ms(k, n));
    for (const x of per) if (x !== null && x > 0) measured.push({ name: n, seconds: x / 1000 });
    return { n, per, total: per.reduce<number>((a, x) => a + (x ?? 0), 0) };
  }).sort((a, b) => b.total - a.total);
  log(`  per case, longest first: ${names.map((k) => k.padStart(8)).join('')}   total`);
  for (const r of table) {
    log(`    ${r.per.map((x) => (x === null ? '    -' : secs(x)).padStart(8)).join('')} ${secs(r.total)}  ${r.n.replace(/^test\/vm\//, '')}`);
  }
  const busy = jobs.reduce((a, j) => a + j.boots.reduce((b, x) => b + x.boot.seconds, 0), 0);
  log(`  guests: ${busy.toFixed(0)} s of boots in ${wall.toFixed(0)} s wall on ${opts.jobs} lanes (${((100 * busy) / (opts.jobs * wall)).toFixed(0)} % busy)`);
  if (measured.length) log(`  case durations saved for the next run's order: ${saveCaseTimes(measured)}`);
}

try {
  await main();
} catch (e) {
  const msg = e instanceof Error ? e.message : String(e);
  record({ kernel: 'host', name: 'VM harness', status: 'failed', ms: 0, error: msg });
  writeJson();
}
