// SPDX-License-Identifier: GPL-2.0-only
// Throughput of writes and snapshot reads through dattobd against an
// untracked twin device: /dev/vda is traced, /dev/vdb has the same layout
// and is never tracked. Raw (vdb) and traced (vda) runs of the same fio
// job alternate back to back (A/B, then B/A in the next pair) so drift of
// the shared host cancels; an A/A control (both untracked) shows how much
// of a ratio is the two disks rather than the driver.
import type { VmContext } from '../../test/vm/guest/api.js';
import { DATA_MIB, ensureBenchDisks, removeCow, type BenchFs } from '../guest/bench-fs.js';
import { fioBatch, type FioJob, type FioResult } from '../guest/fio.js';
import { kernelMem, memDelta, type KernelMem } from '../guest/meminfo.js';
import { params, repeater } from '../guest/params.js';
import { Recorder } from '../guest/record.js';

const MINOR = 0;

function sample(rec: Recorder, metric: string, side: 'raw' | 'traced', rep: number, r: FioResult): void {
  const extra: Record<string, number> = { iops: Math.round(r.iops), bytes: r.bytes, seconds: r.seconds, clatUs: Math.round(r.clatUs) };
  if (r.ctxtPerIo !== undefined) extra.ctxtPerIo = Number(r.ctxtPerIo.toFixed(2));
  if (r.sysUsPerIo !== undefined) extra.sysUsPerIo = Number(r.sysUsPerIo.toFixed(1));
  rec.sample({ metric, side, rep, value: r.mibps, unit: 'MiB/s', extra });
}

interface PairSpec {
  metric: string;
  raw: FioJob;
  traced: FioJob;
}

/**
 * Run A/B pairs in one fio process (one process start for all of them):
 * each pair's raw and traced job back to back, raw first in even
 * repetitions and traced first in odd ones.
 */
function pairs(t: VmContext, rec: Recorder, rep: number, specs: readonly PairSpec[]): void {
  const order: Array<{ metric: string; side: 'raw' | 'traced'; job: FioJob }> = [];
  for (const p of specs) {
    const a = { metric: p.metric, side: 'raw' as const, job: p.raw };
    const b = { metric: p.metric, side: 'traced' as const, job: p.traced };
    order.push(...(rep % 2 === 0 ? [a, b] : [b, a]));
  }
  const res = fioBatch(t, order.map((o) => o.job));
  order.forEach((o, i) => sample(rec, o.metric, o.side, rep, res[i] as FioResult));
}

function settledMem(t: VmContext): KernelMem {
  t.run(['sync']);
  return kernelMem();
}

function memSample(rec: Recorder, metric: string, rep: number, fs: BenchFs, d: KernelMem, note: string): void {
  const gib = fs.devBytes / 2 ** 30;
  const total = d.slabUnreclaimKiB + d.vmallocKiB + d.unaccountedKiB;
  rec.sample({
    metric,
    side: 'value',
    rep,
    value: total / gib,
    unit: 'KiB/GiB',
    note,
    extra: { slabKiB: d.slabUnreclaimKiB, vmallocKiB: d.vmallocKiB, pagesKiB: d.unaccountedKiB, trackedGiB: Number(gib.toFixed(3)) },
  });
}

function twin(t: VmContext): { traced: BenchFs; raw: BenchFs } {
  const d = ensureBenchDisks(t);
  if (!d.raw) throw new Error('the benchmark needs two guest disks (traced + untracked twin)');
  return { traced: d.traced, raw: d.raw };
}

/** incremental mode: sequential and random 4 KiB O_DIRECT writes */
export async function incrementalWrites(t: VmContext): Promise<void> {
  const p = params(t);
  const { traced, raw } = twin(t);
  const rec = new Recorder(t);
  t.loadModule();
  const seq = (fs: BenchFs): FioJob => ({ filename: fs.data, rw: 'write', bs: '4k', size: `${DATA_MIB}M`, runtimeS: p.runtimeS });
  const rand = (fs: BenchFs): FioJob => ({ filename: fs.data, rw: 'randwrite', bs: '4k', size: `${DATA_MIB}M`, runtimeS: p.runtimeS, randseed: 7 });
  // A/A control: both devices untracked
  for (let rep = 0; rep < Math.min(p.reps, p.minReps); rep++) {
    pairs(t, rec, rep, [{ metric: 'ctl.aa.rand4k', raw: rand(raw), traced: rand(traced) }]);
  }

  const before = settledMem(t);
  t.ioctl.setup(MINOR, traced.dev, traced.cow, 64);
  t.ioctl.transitionInc(MINOR);
  const st = t.ioctl.info(MINOR).state;
  if (st !== 2) throw new Error(`expected incremental state 2 after transition-to-incremental, got ${st}`);
  memSample(rec, 'mem.inc.idle', 0, traced, memDelta(settledMem(t), before), 'incremental, right after transition');
  const more = repeater(p);
  for (let rep = 0; more(rep); rep++) {
    pairs(t, rec, rep, [
      { metric: 'inc.seq4k', raw: seq(raw), traced: seq(traced) },
      { metric: 'inc.rand4k', raw: rand(raw), traced: rand(traced) },
    ]);
  }
  memSample(rec, 'mem.inc.written', 0, traced, memDelta(settledMem(t), before), 'incremental, after the write runs');
  const info = t.ioctl.info(MINOR);
  t.log(`incremental: ${info.nr_changed_blocks} changed blocks recorded`);
  t.ioctl.destroy(MINOR);
  removeCow(t, traced);
}

/**
 * snapshot mode, on a fresh snapshot per repetition: sequential 1 MiB and
 * random 4 KiB first writes (the original data must be read and saved) and
 * rewrites of the same blocks (already saved: they must pass straight
 * through), and sequential reads of /dev/datto0 against the origin, fresh
 * and after the writes.
 */
export async function snapshotWritesAndReads(t: VmContext): Promise<void> {
  const p = params(t);
  const { traced, raw } = twin(t);
  const rec = new Recorder(t);
  t.loadModule();
  const seq = (fs: BenchFs): FioJob => ({ filename: fs.data, rw: 'write', bs: '1M', size: `${p.seqMiB}M` });
  // random writes go to the part of the file the sequential job does not touch
  const rand = (seed: number) => (fs: BenchFs): FioJob => ({
    filename: fs.data,
    rw: 'randwrite',
    bs: '4k',
    offset: `${p.seqMiB}M`,
    size: `${DATA_MIB - p.seqMiB}M`,
    ioSize: `${p.randMiB}M`,
    randseed: seed,
  });
  const read = (dev: string): FioJob => ({ filename: dev, rw: 'read', bs: '1M', offset: String(traced.dataDevOffset), size: `${p.readMiB}M` });
  // Rewrites and reads start once the driver's threads are idle (bench/guest/quiet.sh), so they
  // measure their own cost, not the tail of the previous first-write job's saving (both sides wait).
  const quiet = (j: FioJob): FioJob => ({ ...j, prerun: `sh ${t.config.repo}/bench/guest/quiet.sh` });
  // the random rewrites replay the random first writes' own log: exactly the blocks they copied
  const randLog = (fs: BenchFs, rep: number): string => `/tmp/dbd-bench-rand-${fs === traced ? 'traced' : 'raw'}-${rep}.iolog`;
  const firstRand = (seed: number, rep: number, fs: BenchFs): FioJob => ({ ...rand(seed)(fs), writeIolog: randLog(fs, rep) });
  const reRand = (seed: number, rep: number, fs: BenchFs): FioJob => quiet({ ...rand(seed)(fs), readIolog: randLog(fs, rep) });
  const more = repeater(p);
  for (let rep = 0; more(rep); rep++) {
    const seed = 100 + rep;
    const before = settledMem(t);
    t.ioctl.setup(MINOR, traced.dev, traced.cow, Math.ceil((p.seqMiB + p.randMiB) * 1.5) + 64);
    const st = t.ioctl.info(MINOR).state;
    if (st !== 3) throw new Error(`expected active snapshot state 3 after setup, got ${st}`);
    memSample(rec, 'mem.snap.idle', rep, traced, memDelta(settledMem(t), before), 'snapshot, right after setup');
    const snapDev = `/dev/datto${MINOR}`;
    pairs(t, rec, rep, [
      { metric: 'snap.read.fresh', raw: read(traced.dev), traced: read(snapDev) },
      { metric: 'snap.first.seq1m', raw: seq(raw), traced: seq(traced) },
      { metric: 'snap.rewrite.seq1m', raw: quiet(seq(raw)), traced: quiet(seq(traced)) },
      { metric: 'snap.first.rand4k', raw: firstRand(seed, rep, raw), traced: firstRand(seed, rep, traced) },
      { metric: 'snap.rewrite.rand4k', raw: reRand(seed, rep, raw), traced: reRand(seed, rep, traced) },
      { metric: 'snap.read.cowed', raw: quiet(read(traced.dev)), traced: quiet(read(snapDev)) },
    ]);
    memSample(rec, 'mem.snap.written', rep, traced, memDelta(settledMem(t), before), `snapshot, after ${p.seqMiB + p.randMiB} MiB of first writes`);
    t.ioctl.destroy(MINOR);
    removeCow(t, traced);
  }
  rec.sample({
    metric: 'snap.read.cowed',
    side: 'note',
    rep: 0,
    value: Number.NaN,
    unit: '',
    note: `${p.readMiB} MiB from the data file's first block on; about ${p.seqMiB} MiB of it (the sequential first writes) come from the COW file`,
  });
}
