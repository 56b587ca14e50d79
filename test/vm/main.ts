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

/** Boot one kernel with a set of tests; returns per-case results plus boot checks. */
async function runSuite(
  kb: KernelBuild,
  label: string,
  tests: TestFile[],
  tool: string | null,
): Promise<{ cases: CaseResult[]; boot: BootResult; kernelLog: string; bootError: string | null }> {
  const runDir = newRunDir(kb.kernel, label);
  const cfgPath = join(runDir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify(guestConfig(kb, runDir, tests, tool), null, 2));
  const bundle = env.DBD_VM_TSX === '1' ? null : await bundleGuest(tests, `${kb.kernel.name}-${label}`);
  writeFileSync(join(runDir, 'guest.sh'), runnerScript(cfgPath, bundle), { mode: 0o755 });
  const nCases = tests.reduce((a, t) => a + t.cases.length, 0);
  const timeoutMs = (opts.timeoutS ?? 120 + 90 * nCases) * 1000;
  const boot = await bootGuest({
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
    // boot + node start, then each case must begin or end within the case timeout
    idle: { ms: (opts.caseTimeoutS + 60) * 1000, progress: /dbd-vm: (init:|runner started|BEGIN |PASSED |FAILED |SKIPPED )/ },
    onSerial: opts.verbose ? (s) => process.stdout.write(s) : progressPrinter(kb.kernel.name),
    onRetry: (m) => log(`boot [${kb.kernel.name}] ${label}: ${m}`),
  });
  bootTimes.push({ kernel: kb.kernel.name, kver: kb.kernel.kver, boot: label, seconds: boot.seconds, ...boot.marks });
  const f = (x: number | null): string => (x === null ? '-' : `${x.toFixed(1)} s`);
  log(
    `boot [${kb.kernel.name}] ${label}: ${boot.seconds.toFixed(1)} s QEMU start to power-off ` +
      `(console ${f(boot.marks.firstOutput)}, init ready ${f(boot.marks.initReady)}, tests done ${f(boot.marks.payloadDone)}), payload exit ${boot.exitCode ?? 'none'}`,
  );
  const resFile = join(runDir, 'results.jsonl');
  const cases: CaseResult[] = existsSync(resFile)
    ? readFileSync(resFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as CaseResult)
    : [];
  if (bundle) for (const c of cases) if (c.error) c.error = remapStack(c.error, bundle);
  // the full dmesg, or the serial console if the guest died before writing it
  const kernelLog = boot.dmesg || boot.serial;
  let bootError: string | null = null;
  if (boot.timedOut) bootError = `guest killed by the host-side timeout: ${boot.timeoutReason ?? ''} (DBD_VM_TIMEOUT, DBD_VM_CASE_TIMEOUT)`;
  else if (boot.exitCode === null) bootError = `guest ended without reporting the payload's exit status (QEMU exit ${boot.qemuExit})`;
  else if (boot.exitCode >= 250) bootError = `guest setup failed (exit ${boot.exitCode})`;
  else if (!boot.dmesg) bootError = 'guest did not write its dmesg';
  else {
    const expected = tests.reduce((a, t) => a + t.cases.length, 0);
    if (cases.length < expected) {
      bootError = `the guest runner ended (exit ${boot.exitCode}) after reporting ${cases.length} of ${expected} cases`;
    }
  }
  if (bootError) {
    const tailSerial = boot.serial.trimEnd().split('\n').slice(-40).join('\n');
    bootError += `\nlast serial console lines (${join(runDir, 'serial.log')}):\n${tailSerial}`;
  }
  if (bundle) for (const f of [bundle, `${bundle}.map`]) rmSync(f, { force: true });
  reportDiffStats(kb.kernel.name, runDir);
  const expectedFailures = new Set(tests.filter((t) => t.file === SELFTEST.file).flatMap((t) => t.cases));
  const unexpected = cases.some((c) => c.status === 'failed' && !(c.file === SELFTEST.file && expectedFailures.has(c.name)));
  // (declared known failures keep the run directory too: unexpected is true for them)
  if (!opts.keep && !bootError && !unexpected && !scanKernelLog(splitAtSelfTest(kernelLog)[0]).length) {
    rmSync(runDir, { recursive: true, force: true });
  } else {
    opts.disks.forEach((_, i) => rmSync(join(runDir, `disk${i}.img`), { force: true }));
    log(`  run directory kept: ${runDir}`);
  }
  return { cases, boot, kernelLog, bootError };
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

async function kernelRun(kb: KernelBuild, tests: TestFile[], tool: string | null): Promise<void> {
  const k = kb.kernel.name;
  const t0 = Date.now();
  const selfName = 'harness self-test: WARN_ON module is reported with its dmesg excerpt';
  const withSelf = opts.selftest && kb.broken.ok;
  const { cases, kernelLog, bootError, boot } = await runSuite(kb, 'suite', withSelf ? [...tests, SELFTEST] : tests, tool);
  const got = new Map(cases.map((c) => [`${c.file}:${c.name}`, c]));
  for (const t of tests) {
    for (const name of t.cases) {
      const c = got.get(`${t.file}:${name}`);
      if (!c) {
        const running = boot.serial.includes(`dbd-vm: BEGIN ${t.file} ${name}\n`) || boot.serial.includes(`dbd-vm: BEGIN ${t.file} ${name}\r`);
        const why = running
          ? `the guest died or was killed while this case ran: ${bootError?.split('\n')[0] ?? 'no result'}`
          : `not run: ${bootError ? 'the guest failed or was killed before this case' : 'no result from the guest'}`;
        record({ kernel: k, name: `${t.file}:${name}`, status: 'failed', ms: 0, error: why });
      } else {
        const r: Result = { kernel: k, name: `${t.file}:${name}`, status: c.status, ms: c.ms };
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
  }
  const [suiteLog, selfLog] = splitAtSelfTest(kernelLog);
  const problems = scanKernelLog(suiteLog);
  const clean: Result = { kernel: k, name: 'guest boot and kernel log clean', status: 'passed', ms: Date.now() - t0 };
  const errs: string[] = [];
  if (bootError) errs.push(bootError);
  if (problems.length) errs.push(`kernel log problems in the guest's dmesg:\n${formatProblems(problems)}`);
  if (errs.length) {
    clean.status = 'failed';
    clean.error = errs.join('\n');
  }
  record(clean);

  if (!opts.selftest) {
    record({ kernel: k, name: selfName, status: 'skipped', ms: 0, error: 'DBD_VM_SELFTEST=0' });
    return;
  }
  if (!kb.broken.ok) {
    record({ kernel: k, name: selfName, status: 'failed', ms: 0, error: `broken-module fixture did not build:\n${kb.broken.output}` });
    return;
  }
  // passes exactly when the harness reports the broken module's WARNING
  const c = got.get(`${SELFTEST.file}:loadBrokenModule`);
  const why: string[] = [];
  if (!c) why.push(`no result for the self-test case${bootError ? ' (the guest failed before it)' : ''}`);
  else {
    if (c.status !== 'failed') why.push(`the case was reported ${c.status}, expected failed`);
    if (!/WARNING/.test(c.error ?? '') || !/broken/.test(c.error ?? '')) {
      why.push(`the case error lacks the WARNING excerpt naming the module:\n${c.error ?? '(none)'}`);
    }
    if (!scanKernelLog(selfLog).some((p) => p.kind === 'WARNING')) why.push('the full-dmesg scan found no WARNING after the self-test began');
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

async function pool<T>(items: readonly T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  });
  await Promise.all(workers);
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
  if (!tests.length) {
    record({ kernel: 'host', name: 'select VM tests', status: 'failed', ms: 0, error: `no VM test matches DBD_VM_TESTS=${env.DBD_VM_TESTS ?? ''}` });
  }
  let chain: Promise<unknown> = Promise.resolve();
  const built = kernels.map((k) => {
    const p = chain.then(() => buildKernel(k));
    chain = p.catch(() => undefined);
    return p;
  });
  const jobs: Array<() => Promise<void>> = [];
  kernels.forEach((_, i) => {
    jobs.push(async () => {
      const kb = await (built[i] as Promise<KernelBuild>);
      if (tests.length || opts.selftest) await kernelRun(kb, tests, tool.ko);
    });
  });
  await pool(jobs, opts.jobs, (j) => j());
  log(`\nboot times: ${bootTimes.map((b) => `${b.kernel}/${b.boot} ${b.seconds.toFixed(1)} s`).join(', ')}`);
  log(`VM suite wall time: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  writeJson({ seconds: (Date.now() - t0) / 1000 });
}

try {
  await main();
} catch (e) {
  const msg = e instanceof Error ? e.message : String(e);
  record({ kernel: 'host', name: 'VM harness', status: 'failed', ms: 0, error: msg });
  writeJson();
}
