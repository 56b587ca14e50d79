// SPDX-License-Identifier: GPL-2.0-only
// Latency of setup-snapshot and transition-to-snapshot on an idle and on a
// busy filesystem (a buffered sequential writer keeps dirty data in the
// page cache, so the freeze has to flush it). A guest process start costs
// milliseconds under TCG: the median wall time of `dbd-ioctl get-free`
// (no work in the driver) is subtracted and reported as well.
import type { ChildProcess } from 'node:child_process';
import type { VmContext } from '../../test/vm/guest/api.js';
import { BUSY_MIB, ensureBenchDisks, removeCow, type BenchFs } from '../guest/bench-fs.js';
import { fioBackground, sleep, stopBackground } from '../guest/fio.js';
import { params, repeater } from '../guest/params.js';
import { Recorder } from '../guest/record.js';

const MINOR = 0;

function timed(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
}

/** a buffered sequential writer on the traced filesystem, running until stopped */
async function startBusy(t: VmContext, fs: BenchFs): Promise<ChildProcess> {
  const c = fioBackground(t, { filename: fs.busy, rw: 'write', bs: '1M', size: `${BUSY_MIB}M`, runtimeS: 600, direct: false });
  await sleep(1500);
  if (c.exitCode !== null) throw new Error(`background fio exited early (${c.exitCode})`);
  return c;
}

export async function setupAndTransitionLatency(t: VmContext): Promise<void> {
  const p = params(t);
  const fs = ensureBenchDisks(t).traced;
  const rec = new Recorder(t);
  t.loadModule();
  const spawn: number[] = [];
  for (let i = 0; i < 5; i++) spawn.push(timed(() => t.ioctl.getFree()));
  const base = median(spawn);
  spawn.forEach((ms, rep) => rec.sample({ metric: 'lat.spawn', side: 'value', rep, value: ms, unit: 'ms' }));

  const record = (metric: string, rep: number, ms: number, busy: boolean): void =>
    rec.sample({
      metric,
      side: 'value',
      rep,
      value: Math.max(0, ms - base),
      unit: 'ms',
      extra: { wallMs: Number(ms.toFixed(2)), spawnMs: Number(base.toFixed(2)), busy: busy ? 1 : 0 },
    });

  const more = repeater(p, Math.min(p.reps, 3));
  const measure = (tag: string, rep: number, busy: boolean): void => {
    // setup-snapshot (default COW size: 10 % of the volume, fallocated)
    record(`lat.setup.${tag}`, rep, timed(() => t.ioctl.setup(MINOR, fs.dev, fs.cow)), busy);
    t.ioctl.destroy(MINOR);
    removeCow(t, fs);
    // transition-to-snapshot from incremental
    t.ioctl.setup(MINOR, fs.dev, fs.cow);
    t.ioctl.transitionInc(MINOR);
    record(`lat.transsnap.${tag}`, rep, timed(() => t.ioctl.transitionSnap(MINOR, fs.cow2)), busy);
    const st = t.ioctl.info(MINOR).state;
    if (st !== 3) throw new Error(`expected active snapshot state 3 after transition-to-snapshot, got ${st}`);
    t.ioctl.destroy(MINOR);
    removeCow(t, fs);
  };
  for (let rep = 0; more(rep); rep++) {
    measure('idle', rep, false);
    const c = await startBusy(t, fs);
    try {
      measure('busy', rep, true);
    } finally {
      await stopBackground(c);
    }
  }
}
