// SPDX-License-Identifier: GPL-2.0-only
/**
 * Emulator benchmarks (host, single thread):
 *  - commands/s of the model-based runner (reference model + emulator +
 *    per-command SPEC checks) and of the emulator alone, on the same
 *    generated command sequences (generation not timed);
 *  - block writes/s in snapshot mode (first writes: origin read + COW append;
 *    rewrites: already saved, no read), in incremental mode, and snapshot
 *    read throughput.
 *
 *   npx tsx bench/emulator.ts      (updates the "## Emulator" section of bench/RESULTS.md)
 *   DBD_BENCH_EMU_SEQS=1500 DBD_BENCH_EMU_BLOCKS=20000
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { Emulator } from '../emulator/index.js';
import { MIB } from '../src/abi/constants.js';
import { applyModel, applyReal, makeReal, opArb, type Op } from '../test/model/commands.js';
import { checkCommand } from '../test/model/checks.js';
import { Model } from '../test/model/model.js';

export interface EmulatorBenchResult {
  date: string;
  host: string;
  node: string;
  sequences: number;
  commands: number;
  /** Model-based runner: model + emulator + checks (wall clock). */
  modelRunnerCommandsPerSec: number;
  /** The same, per second of this process's CPU time (independent of machine load). */
  modelRunnerCommandsPerCpuSec: number;
  /** The same commands on the emulator alone (wall clock / CPU time). */
  emulatorCommandsPerSec: number;
  emulatorCommandsPerCpuSec: number;
  /** Load average during the run (1 min), for reading the wall-clock figures. */
  loadAverage: number;
  snapshotFirstWritesPerSec: number;
  snapshotRewritesPerSec: number;
  incrementalWritesPerSec: number;
  snapshotReadMiBps: number;
  blocks: number;
  goalCommandsPerSec: number;
}

const num = (v: string | undefined, d: number): number => (v && Number.isFinite(Number(v)) ? Number(v) : d);

function sequences(n: number): Op[][] {
  return fc.sample(fc.array(opArb(), { minLength: 10, maxLength: 50 }), { numRuns: n, seed: 42 });
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

function timeRunner(seqs: Op[][], withModel: boolean): { commands: number; seconds: number; cpuSeconds: number } {
  let commands = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const seq of seqs) {
    const emu = makeReal(1);
    const m = withModel ? new Model() : undefined;
    for (const op of seq) {
      if (m) {
        const before = emu.ctl.procInfo();
        const exp = applyModel(m, op);
        const real = applyReal(emu, op);
        checkCommand(m, emu, op, real, exp, before);
      } else {
        applyReal(emu, op);
      }
      commands++;
    }
  }
  return { commands, seconds: (performance.now() - t0) / 1000, cpuSeconds: cpuSeconds(c0) };
}

function shuffled(n: number, max: number): number[] {
  let x = 12345;
  const seen = new Set<number>();
  const out: number[] = [];
  while (out.length < n) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const b = x % max;
    if (!seen.has(b)) {
      seen.add(b);
      out.push(b);
    }
  }
  return out;
}

function blockBench(blocks: number): Pick<EmulatorBenchResult, 'snapshotFirstWritesPerSec' | 'snapshotRewritesPerSec' | 'incrementalWritesPerSec' | 'snapshotReadMiBps'> {
  const size = 1024 * MIB;
  const emu = new Emulator();
  emu.addVolume({ path: '/dev/sdb1', sizeBytes: size, fsFreeBytes: 512 * MIB });
  emu.mount('/dev/sdb1', '/mnt');
  const order = shuffled(blocks, size / 4096);
  const data = new Uint8Array(4096).fill(0x5a);
  for (const b of order) emu.write('/dev/sdb1', b * 4096, data); // populate the origin
  emu.ctl.setupSnapshot({ minor: 0, bdev: '/dev/sdb1', cow: '/mnt/c', fallocatedSpace: Math.ceil((blocks * 4096) / MIB) + 8, cacheSize: 0 });
  // per second of CPU time: the machine is shared, wall time mostly measures the neighbours
  const rate = (f: () => void): number => {
    const c0 = process.cpuUsage();
    f();
    return blocks / cpuSeconds(c0);
  };
  const first = rate(() => {
    for (const b of order) emu.write('/dev/sdb1', b * 4096, data);
  });
  const again = rate(() => {
    for (const b of order) emu.write('/dev/sdb1', b * 4096, data);
  });
  const rd = emu.io.openRead('/dev/datto0');
  const buf = new Uint8Array(MIB);
  const readMiB = 128;
  const c0 = process.cpuUsage();
  for (let i = 0; i < readMiB; i++) rd.read(buf, (order[i] ?? 0) * 4096 - (((order[i] ?? 0) * 4096) % MIB));
  const readMiBps = readMiB / cpuSeconds(c0);
  rd.close();
  if (emu.ctl.info(0).error !== 0) throw new Error(`snapshot failed during the benchmark: ${emu.ctl.info(0).error}`);
  emu.ctl.transitionToIncremental(0);
  const inc = rate(() => {
    for (const b of order) emu.write('/dev/sdb1', b * 4096, data);
  });
  return { snapshotFirstWritesPerSec: first, snapshotRewritesPerSec: again, incrementalWritesPerSec: inc, snapshotReadMiBps: readMiBps };
}

/** Entry point for bench/main.ts. */
export function benchEmulator(): EmulatorBenchResult {
  const nSeq = num(process.env.DBD_BENCH_EMU_SEQS, 1500);
  const blocks = num(process.env.DBD_BENCH_EMU_BLOCKS, 20000);
  const seqs = sequences(nSeq);
  timeRunner(seqs.slice(0, 300), true); // warm-up (JIT)
  timeRunner(seqs.slice(0, 300), false);
  const withModel = timeRunner(seqs, true);
  const alone = timeRunner(seqs, false);
  return {
    date: new Date().toISOString(),
    host: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    node: process.version,
    sequences: nSeq,
    commands: withModel.commands,
    modelRunnerCommandsPerSec: withModel.commands / withModel.seconds,
    modelRunnerCommandsPerCpuSec: withModel.commands / withModel.cpuSeconds,
    emulatorCommandsPerSec: alone.commands / alone.seconds,
    emulatorCommandsPerCpuSec: alone.commands / alone.cpuSeconds,
    loadAverage: loadavg()[0] ?? 0,
    ...blockBench(blocks),
    blocks,
    goalCommandsPerSec: 20000,
  };
}

const f0 = (n: number): string => Math.round(n).toLocaleString('en-US');

export function renderEmulatorSection(r: EmulatorBenchResult): string {
  const goal = (v: number): string => (v >= r.goalCommandsPerSec ? '✓' : '✗');
  return [
    '## Emulator',
    '',
    `Measured by \`npx tsx bench/emulator.ts\` on ${r.date.slice(0, 16).replace('T', ' ')} UTC, ${r.host}, Node ${r.node},` +
      ` single thread, load average ${r.loadAverage.toFixed(1)}. The machine is shared: rates are given per second of this` +
      ' process\'s CPU time (process.cpuUsage); the wall-clock rates of the command runners are shown for reference.',
    '',
    '| figure | per CPU second | wall clock | goal |',
    '|---|---|---|---|',
    `| model-based runner (model + emulator + per-command checks), ${r.commands} commands in ${r.sequences} sequences | ${f0(r.modelRunnerCommandsPerCpuSec)} commands/s | ${f0(r.modelRunnerCommandsPerSec)} commands/s | ≥ ${f0(r.goalCommandsPerSec)} ${goal(r.modelRunnerCommandsPerCpuSec)} |`,
    `| emulator alone, same commands | ${f0(r.emulatorCommandsPerCpuSec)} commands/s | ${f0(r.emulatorCommandsPerSec)} commands/s | ≥ ${f0(r.goalCommandsPerSec)} ${goal(r.emulatorCommandsPerCpuSec)} |`,
    `| snapshot mode, 4 KiB writes to ${f0(r.blocks)} distinct blocks (origin read + COW append each) | ${f0(r.snapshotFirstWritesPerSec)} writes/s | | |`,
    `| snapshot mode, rewrites of already-saved blocks (no read) | ${f0(r.snapshotRewritesPerSec)} writes/s | | |`,
    `| incremental mode, 4 KiB writes | ${f0(r.incrementalWritesPerSec)} writes/s | | |`,
    `| snapshot device reads, 1 MiB | ${f0(r.snapshotReadMiBps)} MiB/s | | |`,
    '',
  ].join('\n');
}

/** Replace (or add) the "## Emulator" section of RESULTS.md. */
function updateResults(section: string): string {
  const path = join(dirname(fileURLToPath(import.meta.url)), 'RESULTS.md');
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n\n';
  const start = text.search(/^## Emulator\b/m);
  let out: string;
  if (start < 0) {
    out = `${text.replace(/\n*$/, '\n\n')}${section}`;
  } else {
    const rest = text.slice(start + 1);
    const next = rest.search(/^## /m);
    out = text.slice(0, start) + section + (next < 0 ? '' : `\n${rest.slice(next)}`);
  }
  writeFileSync(path, out.replace(/\n*$/, '\n'));
  return path;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = benchEmulator();
  const section = renderEmulatorSection(r);
  console.log(section);
  console.log(`updated ${updateResults(section)}`);
}
