// SPDX-License-Identifier: GPL-2.0-only
// Peak in-flight COW data under a write storm: deep-queue 1 MiB O_DIRECT
// first writes under a fresh snapshot, while /proc/meminfo is sampled every
// 10 ms. Original data read for COW but not yet in the COW file lives in
// pages the driver allocates directly (no LRU, no slab), so it shows as a
// rise of kernel memory on no LRU list (plus slab and vmalloc). The same
// storm on the untracked twin disk is the control: the figure is the
// traced peak minus the raw peak of the same pair. It must stay within the
// driver's bound.
import type { VmContext } from '../../test/vm/guest/api.js';
import { ensureBenchDisks, removeCow, type BenchFs } from '../guest/bench-fs.js';
import { fioArgs, parseFio, sleep, type FioJob } from '../guest/fio.js';
import { kernelMem, memTotal } from '../guest/meminfo.js';
import { params, repeater } from '../guest/params.js';
import { Recorder } from '../guest/record.js';

const MINOR = 0;

interface StormResult {
  peakMiB: number;
  pagesPeakMiB: number;
  mibps: number;
  drainMs: number;
  samples: number;
  /** above the baseline 3 s after the storm (or once settled) */
  residualMiB: number;
}

async function storm(t: VmContext, fs: BenchFs, mib: number): Promise<StormResult> {
  const job: FioJob = { filename: fs.data, rw: 'write', bs: '1M', size: `${mib}M`, ioengine: 'libaio', iodepth: 16 };
  t.run(['sync']);
  await sleep(200);
  const base = kernelMem();
  let peak = 0;
  let peakPages = 0;
  let samples = 0;
  const tick = (): void => {
    const m = kernelMem();
    samples++;
    peak = Math.max(peak, memTotal(m) - memTotal(base));
    peakPages = Math.max(peakPages, m.unaccountedKiB - base.unaccountedKiB);
  };
  const timer = setInterval(tick, 10);
  const child = t.spawn([...fioArgs(job), '--output-format=json']);
  let out = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  // the COW thread drains what is left in memory after the last write
  const drainT0 = Date.now();
  let settled = 0;
  while (Date.now() - drainT0 < 3_000 && settled < 5) {
    await sleep(50);
    settled = memTotal(kernelMem()) - memTotal(base) < 8192 ? settled + 1 : 0;
  }
  clearInterval(timer);
  tick();
  const residualMiB = (memTotal(kernelMem()) - memTotal(base)) / 1024;
  if (code !== 0) throw new Error(`storm fio exited ${code}:\n${out.slice(-2000)}`);
  const r = parseFio(out, 'write');
  return { peakMiB: peak / 1024, pagesPeakMiB: peakPages / 1024, mibps: r.mibps, drainMs: Date.now() - drainT0, samples, residualMiB };
}

export async function writeStormInflight(t: VmContext): Promise<void> {
  const p = params(t);
  const { traced, raw } = ensureBenchDisks(t);
  if (!raw) throw new Error('the benchmark needs two guest disks (traced + untracked twin)');
  const rec = new Recorder(t);
  t.loadModule();
  const more = repeater(p, Math.min(p.reps, 3));
  for (let rep = 0; more(rep); rep++) {
    const runTraced = async (): Promise<StormResult> => {
      t.ioctl.setup(MINOR, traced.dev, traced.cow, Math.ceil(p.stormMiB * 1.25) + 64);
      const r = await storm(t, traced, p.stormMiB);
      t.ioctl.destroy(MINOR);
      removeCow(t, traced);
      return r;
    };
    let a: StormResult;
    let b: StormResult;
    if (rep % 2 === 0) {
      a = await storm(t, raw, p.stormMiB);
      b = await runTraced();
    } else {
      b = await runTraced();
      a = await storm(t, raw, p.stormMiB);
    }
    rec.sample({
      metric: 'mem.storm.peak',
      side: 'value',
      rep,
      value: b.peakMiB - a.peakMiB,
      unit: 'MiB',
      extra: {
        tracedPeakMiB: Number(b.peakMiB.toFixed(1)),
        rawPeakMiB: Number(a.peakMiB.toFixed(1)),
        tracedPagesPeakMiB: Number(b.pagesPeakMiB.toFixed(1)),
        tracedStormMiBps: Number(b.mibps.toFixed(1)),
        rawStormMiBps: Number(a.mibps.toFixed(1)),
        tracedDrainMs: b.drainMs,
        tracedResidualMiB: Number(b.residualMiB.toFixed(1)),
        rawResidualMiB: Number(a.residualMiB.toFixed(1)),
        samples: b.samples,
      },
    });
  }
}
