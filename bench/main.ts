// SPDX-License-Identifier: GPL-2.0-only
// npm run bench: the driver's overhead against the raw device, measured in
// a QEMU/TCG guest per Debian kernel (bench/vm/*.vm.ts), plus the emulator
// and update-img benchmarks when their modules exist. Writes the
// machine-readable results (bench/results.json) and renders
// bench/RESULTS.md from them. Benchmarks print figures; they never fail.
//
//   DBD_BENCH_KERNELS=6.12  DBD_BENCH_PAIRS=3  DBD_BENCH_CASES=incremental  npm run bench
//
// DBD_BENCH_REPS belongs to bench/update-img.ts (its repetitions); this
// runner's A/B pairs are DBD_BENCH_PAIRS.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildIoctlTool, ensureNativeBinding } from '../test/vm/lib/build.js';
import { prepareKernels, type KernelInfo, type KernelName, KERNEL_NAMES } from '../test/vm/lib/kernels.js';
import { vmDir } from '../test/vm/lib/paths.js';
import { parseSize } from '../test/vm/lib/qemu.js';
import { discoverTests, filterTests } from '../test/vm/lib/suite.js';
import { DATA_MIB } from './guest/bench-fs.js';
import { DEFAULT_PARAMS, type BenchParams } from './guest/params.js';
import { figuresFor } from './lib/figures.js';
import { inflightBound } from './lib/bound.js';
import { renderConsole, renderResultsMd } from './lib/report.js';
import type { BenchResults, KernelReport } from './lib/types.js';
import { runKernelBench, UIMG_DISK_BYTES, type VmBenchRun } from './vm-run.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const env = process.env;
const num = (v: string | undefined, d: number): number => (v && Number.isFinite(Number(v)) ? Number(v) : d);
const log = (s: string): void => console.log(s);

function kernels(): KernelName[] {
  const raw = env.DBD_BENCH_KERNELS?.trim();
  if (!raw) return [...KERNEL_NAMES];
  return raw.split(',').map((s) => s.trim()).filter(Boolean) as KernelName[];
}

async function optionalBench(file: string): Promise<unknown> {
  const path = join(BENCH, file);
  if (!existsSync(path)) return undefined;
  const t0 = Date.now();
  try {
    const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    const fns = Object.entries(mod).filter(([k, v]) => typeof v === 'function' && /^(bench|run|measure)/i.test(k));
    if (!fns.length) return { error: `${file} exports no bench*/run*/measure* function` };
    const [name, fn] = fns[0] as [string, () => unknown];
    log(`${file}: calling ${name}()`);
    const result = await fn();
    // a render*Section(result) export gives the module's own markdown
    const render = Object.entries(mod).find(([k, v]) => typeof v === 'function' && /^render\w*Section$/.test(k));
    let markdown: string | undefined;
    if (render) {
      try {
        markdown = String((render[1] as (r: unknown) => unknown)(result));
      } catch {
        markdown = undefined;
      }
    }
    return { function: name, seconds: (Date.now() - t0) / 1000, result, ...(markdown ? { markdown } : {}) };
  } catch (e) {
    return { error: `${file} failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** kernels.json from an earlier setup, when every file it names still exists */
function cachedKernels(names: readonly KernelName[]): KernelInfo[] | null {
  const file = join(vmDir(), 'kernels.json');
  if (env.DBD_BENCH_SETUP === '1' || !existsSync(file)) return null;
  const all = JSON.parse(readFileSync(file, 'utf8')) as KernelInfo[];
  const out = names.map((n) => all.find((k) => k.name === n));
  if (out.some((k) => !k || !existsSync(k.vmlinuz) || !existsSync(k.headers) || !existsSync(k.modules))) return null;
  log(`kernels from ${file} (DBD_BENCH_SETUP=1 reruns test/vm/setup.sh): ${out.map((k) => `${k?.name} ${k?.kver}`).join(', ')}`);
  return out as KernelInfo[];
}

/**
 * The module measured: by default kernel/ as committed at HEAD (exported
 * with git archive), so a benchmark never measures someone's half-edited
 * working tree; DBD_BENCH_KERNEL_SRC=worktree uses kernel/ as it is.
 */
function kernelSource(): { dir: string; label: string } {
  if (env.DBD_BENCH_KERNEL_SRC === 'worktree') return { dir: join(REPO, 'kernel'), label: 'working tree kernel/' };
  const sha = execFileSync('git', ['-C', REPO, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  const dest = join(vmDir(), 'bench-src', sha);
  if (!existsSync(join(dest, 'kernel', 'Kbuild'))) {
    mkdirSync(dest, { recursive: true });
    execFileSync('sh', ['-c', `git -C "${REPO}" archive ${sha} kernel | tar -x -C "${dest}"`]);
  }
  const dirty = execFileSync('git', ['-C', REPO, 'status', '--porcelain', '--', 'kernel'], { encoding: 'utf8' }).trim();
  return { dir: join(dest, 'kernel'), label: `kernel/ at commit ${sha.slice(0, 12)}${dirty ? ' (uncommitted changes in the working tree not included)' : ''}` };
}

function hostInfo(): BenchResults['host'] {
  let qemu = '';
  try {
    qemu = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  } catch {
    qemu = 'qemu-system-x86_64 not found';
  }
  return { cpus: cpus().length, model: cpus()[0]?.model ?? '', node: process.version, qemu };
}

async function pool<T, R>(items: readonly T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const params: BenchParams = {
    reps: num(env.DBD_BENCH_PAIRS, DEFAULT_PARAMS.reps),
    runtimeS: num(env.DBD_BENCH_RUNTIME, DEFAULT_PARAMS.runtimeS),
    seqMiB: DEFAULT_PARAMS.seqMiB,
    randMiB: DEFAULT_PARAMS.randMiB,
    readMiB: DEFAULT_PARAMS.readMiB,
    stormMiB: DEFAULT_PARAMS.stormMiB,
    caseBudgetS: num(env.DBD_BENCH_CASE_BUDGET, DEFAULT_PARAMS.caseBudgetS),
    minReps: DEFAULT_PARAMS.minReps,
  };
  const jobs = Math.max(1, num(env.DBD_BENCH_JOBS, 1));
  const smp = num(env.DBD_BENCH_SMP, 2);
  const memMiB = num(env.DBD_BENCH_MEM, 1024);
  const disk = env.DBD_BENCH_DISK ?? '1G';
  const out = env.DBD_BENCH_JSON ?? join(BENCH, 'results.json');
  const md = env.DBD_BENCH_MD ?? join(BENCH, 'RESULTS.md');

  const src = kernelSource();
  log(`kernel module sources: ${src.label}`);
  const ks = cachedKernels(kernels()) ?? prepareKernels(kernels(), log);
  const tool = buildIoctlTool();
  if (!tool.ok) log(`dbd-ioctl did not build:\n${tool.output}`);
  // the update-img guest case runs the CLI's native copy engine (src/native)
  const native = await ensureNativeBinding();
  if (native && !native.ok) log(`the node binding did not build (update-img falls back to its JS engine):\n${native.output}`);
  const tests = filterTests(await discoverTests(join(BENCH, 'vm')), env.DBD_BENCH_CASES);
  const runs: VmBenchRun[] = await pool(ks, jobs, (k) =>
    runKernelBench(k, tests, tool.ko, { nativeAddon: native?.ko ?? null, kernelSrc: src.dir, smp, memMiB, diskBytes: parseSize(disk), timeoutS: num(env.DBD_BENCH_TIMEOUT, 480), caseTimeoutS: num(env.DBD_BENCH_CASE_TIMEOUT, 200), params, keep: env.DBD_BENCH_KEEP === '1', verbose: env.DBD_BENCH_VERBOSE === '1' }, log),
  );

  const phases: Record<string, number> = { 'setup and module builds': 0 };
  for (const r of runs) phases[`boot ${r.kernel.name}`] = r.bootSeconds;
  phases['setup and module builds'] = (Date.now() - t0) / 1000 - runs.reduce((a, r) => a + r.bootSeconds, 0);
  const bound = inflightBound(dirname(src.dir));
  const reports: KernelReport[] = runs.map((r) => {
    const failed = (metric: string): string => {
      if (!r.build.ok) return 'dattobd.ko did not build for this kernel';
      const c = r.cases.find((x) => x.status !== 'passed' && caseMetrics(x.name).some((p) => metric.startsWith(p)));
      if (c) return `${c.name} ${c.status}: ${(c.error ?? '').split('\n')[0]}`;
      if (!r.cases.length) return 'the guest produced no results';
      const ran = r.cases.some((x) => caseMetrics(x.name).some((p) => metric.startsWith(p)));
      if (!ran && r.problems.length) return `not run: the guest stopped before this case (${(r.problems.at(-1) ?? '').split('\n')[0]})`;
      return 'not selected (DBD_BENCH_CASES)';
    };
    return {
      kernel: r.kernel.name,
      kver: r.kernel.kver,
      bootSeconds: r.bootSeconds,
      problems: r.problems,
      figures: figuresFor(r.samples, { inflightBoundMiB: bound.mib, inflightBoundSource: bound.source, missingReason: failed }),
    };
  });

  const write = (r: BenchResults): void => {
    writeFileSync(out, JSON.stringify(r, null, 2) + '\n');
    const prev = existsSync(md) ? readFileSync(md, 'utf8') : '';
    writeFileSync(md, renderResultsMd(r, prev));
  };
  const guest: BenchResults['guest'] = {
    accel: 'tcg',
    smp,
    memMiB,
    dataMiB: DATA_MIB,
    disk: `2 × ${disk} virtio-blk (vda traced, vdb untracked twin) and a ${UIMG_DISK_BYTES / 2 ** 20} MiB one (vdc, update-img's volume), raw sparse files on the host, cache=none, aio=threads`,
  };
  // the kernel figures are written first, so a slow or failing sub-benchmark cannot lose them
  write({
    date: new Date().toISOString(),
    host: hostInfo(),
    guest,
    parallelBoots: jobs,
    reps: params.reps,
    wallSeconds: (Date.now() - t0) / 1000,
    phases: { ...phases },
    kernels: reports,
    moduleSource: src.label,
    extraNotes: [],
  });
  let t1 = Date.now();
  const emulator = env.DBD_BENCH_EMULATOR === '0' ? undefined : await optionalBench('emulator.ts');
  if (emulator) phases.emulator = (Date.now() - t1) / 1000;
  t1 = Date.now();
  // update-img's own default volume is 256 MiB; 128 MiB keeps the whole run within 20 minutes
  env.DBD_BENCH_UPDATE_IMG_MIB ??= '128';
  const updateImg = env.DBD_BENCH_UPDATE_IMG === '0' ? undefined : await optionalBench('update-img.ts');
  if (updateImg) phases['update-img'] = (Date.now() - t1) / 1000;
  const results: BenchResults = {
    date: new Date().toISOString(),
    host: hostInfo(),
    guest,
    parallelBoots: jobs,
    reps: params.reps,
    wallSeconds: (Date.now() - t0) / 1000,
    phases: { ...phases },
    kernels: reports,
    moduleSource: src.label,
    emulator,
    updateImg,
    extraNotes: [],
  };
  write(results);
  log(renderConsole(results));
  log(`results: ${out}\nreport: ${md}\nwall time ${results.wallSeconds.toFixed(0)} s`);
}

/** metric prefixes produced by each guest case */
function caseMetrics(name: string): string[] {
  if (name === 'incrementalWrites') return ['inc.', 'mem.inc.', 'ctl.'];
  if (name === 'snapshotWritesAndReads') return ['snap.', 'mem.snap.'];
  if (name === 'setupAndTransitionLatency') return ['lat.'];
  if (name === 'writeStormInflight') return ['mem.storm.'];
  if (name === 'updateImgVsDd') return ['uimg.'];
  return [];
}

await main();
