// SPDX-License-Identifier: GPL-2.0-only
// In-guest test runner: `node --import tsx test/vm/guest/runner.ts <config.json>`.
// Runs the cases it claims from the kernel's shared queue, then the configured
// ones, one after another; cleans up after each one
// (background processes, mounts under /mnt, dattobd devices and module,
// loop devices), checks the kernel log written during the case, and appends
// one JSON line per case to <runDir>/results.jsonl.
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatProblems, scanKernelLog } from '../lib/logscan.js';
import { SkipCase, type GuestConfig, type VmCase } from './api.js';
import { CaseContext } from './context.js';
import { KmsgReader, kmsgMark } from './kmsg.js';

export interface CaseResult {
  file: string;
  name: string;
  status: 'passed' | 'failed' | 'skipped';
  ms: number;
  error?: string;
  log?: string[];
  kmsg?: string[];
}

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: runner.ts <config.json>');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8')) as GuestConfig;
const resultsFile = join(config.runDir, 'results.jsonl');
console.log(`dbd-vm: runner started at ${readFileSync('/proc/uptime', 'utf8').split(' ')[0]}s`);
const kmsg = new KmsgReader();
kmsg.read(); // skip the boot log: it is checked as a whole by the host

function emit(r: CaseResult): void {
  appendFileSync(resultsFile, JSON.stringify(r) + '\n');
  const extra = r.status === 'skipped' && r.error ? ` (${r.error})` : '';
  console.log(`dbd-vm: ${r.status.toUpperCase()} ${r.file} ${r.name} ${r.ms} ms${extra}`);
}

function cleanup(t: CaseContext): string[] {
  const problems: string[] = [];
  for (const c of t.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // unmount everything below /mnt and every /dev/datto* mount, deepest first
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 2 && ((f[1] ?? '').startsWith('/mnt/') || (f[0] ?? '').startsWith('/dev/datto')))
    .map((f) => (f[1] ?? '').replace(/\\040/g, ' '))
    .reverse();
  for (const m of mounts) {
    const r = t.run(['umount', m], { allowFail: true });
    if (r.code !== 0) {
      const r2 = t.run(['umount', '-l', m], { allowFail: true });
      problems.push(`cleanup: umount ${m} failed (${r.stderr.trim()})${r2.code === 0 ? '; lazily unmounted' : ''}`);
    }
  }
  if (t.moduleLoaded('dattobd')) {
    try {
      const info = t.procInfo();
      for (const d of info.devices) {
        const minor = Number(d.minor);
        try {
          t.ioctl.destroy(minor);
        } catch (e) {
          problems.push(`cleanup: destroy ${minor} failed: ${(e as Error).message}`);
        }
      }
    } catch (e) {
      problems.push(`cleanup: ${(e as Error).message}`);
    }
    const r = t.run(['rmmod', 'dattobd'], { allowFail: true });
    if (r.code !== 0) problems.push(`cleanup: rmmod dattobd failed: ${r.stderr.trim()}`);
  }
  for (const m of ['dbd_hello', 'hello', 'broken']) {
    if (t.moduleLoaded(m)) t.run(['rmmod', m], { allowFail: true });
  }
  // a process start costs ~0.3-1 s under TCG: detach loop devices only if one is attached
  const attached = readdirSync('/sys/block').some((d) => d.startsWith('loop') && existsSync(`/sys/block/${d}/loop/backing_file`));
  if (attached) t.run(['losetup', '-D'], { allowFail: true });
  return problems;
}

async function runCase(file: string, name: string, fn: VmCase): Promise<{ result: CaseResult; timedOut: boolean }> {
  const t = new CaseContext(config, kmsg);
  console.log(`dbd-vm: BEGIN ${file} ${name}`);
  kmsgMark(`case ${file} ${name} begin`);
  const t0 = Date.now();
  let status: CaseResult['status'] = 'passed';
  let error: string | undefined;
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(() => fn(t)),
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => {
          timedOut = true;
          rej(new Error(`case timed out after ${config.caseTimeoutMs} ms`));
        }, config.caseTimeoutMs);
      }),
    ]);
  } catch (e) {
    if (e instanceof SkipCase) {
      status = 'skipped';
      error = e.message;
    } else {
      status = 'failed';
      error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    }
  } finally {
    clearTimeout(timer);
  }
  const ms = Date.now() - t0;
  if (!timedOut) {
    const problems = cleanup(t);
    if (problems.length && status !== 'failed') {
      status = 'failed';
      error = problems.join('\n');
    } else if (problems.length) error += `\n${problems.join('\n')}`;
  }
  kmsgMark(`case ${file} ${name} end`);
  const lines = t.kmsg();
  const kp = scanKernelLog(lines.join('\n'));
  if (kp.length) {
    status = 'failed';
    error = `${error ? error + '\n' : ''}kernel log problems during the case:\n${formatProblems(kp)}`;
  }
  const result: CaseResult = { file, name, status, ms };
  if (error !== undefined) result.error = error;
  if (status === 'failed') {
    result.log = t.logLines.slice(-80);
    result.kmsg = lines.slice(-200);
  }
  return { result, timedOut };
}

const modules = new Map<string, { mod: Record<string, unknown> | null; loadError: string | null }>();

async function loadModule(file: string): Promise<{ mod: Record<string, unknown> | null; loadError: string | null }> {
  let m = modules.get(file);
  if (!m) {
    try {
      // bundled run: the host's entry registered every test module up front
      const bundled = (globalThis as { __dbdVmModules?: Record<string, Record<string, unknown>> }).__dbdVmModules;
      const mod = bundled?.[file] ?? ((await import(pathToFileURL(resolve(config.repo, file)).href)) as Record<string, unknown>);
      m = { mod, loadError: null };
    } catch (e) {
      m = { mod: null, loadError: `cannot load ${file}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}` };
    }
    modules.set(file, m);
  }
  return m;
}

let failed = 0;
let abort: string | null = null;

async function runOne(file: string, name: string): Promise<void> {
  const { mod, loadError } = await loadModule(file);
  if (abort || loadError || !mod || typeof mod[name] !== 'function') {
    failed++;
    emit({ file, name, status: 'failed', ms: 0, error: abort ?? loadError ?? `${file} has no exported function ${name} in the guest` });
    return;
  }
  const { result, timedOut } = await runCase(file, name, mod[name] as VmCase);
  if (result.status === 'failed') failed++;
  emit(result);
  if (timedOut) abort = `not run: ${file} ${name} timed out before it`;
}

/** Claim case i of the shared queue: true for exactly one of the guests that try. */
function claim(dir: string, i: number, boot: string): boolean {
  try {
    mkdirSync(join(dir, `claim-${i}`));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  writeFileSync(join(dir, `claim-${i}`, 'boot'), boot);
  return true;
}

async function main(): Promise<number> {
  const q = config.queue;
  if (q) {
    // after a case timed out the kernel cannot be trusted: claim nothing more
    // (the host gives what is left to another guest)
    for (let i = 0; i < q.cases.length && !abort; i++) {
      const c = q.cases[i];
      if (c && claim(q.dir, i, q.boot)) await runOne(c.file, c.name);
    }
  }
  for (const spec of config.tests) for (const name of spec.cases) await runOne(spec.file, name);
  return failed ? 1 : 0;
}

process.exitCode = await main();
kmsg.close();
// background children may still hold the event loop
setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref();
