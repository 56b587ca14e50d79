// SPDX-License-Identifier: GPL-2.0-only
// Diagnosis, not part of the default run (DBD_BENCH_CASES=diag): where a
// traced 4 KiB write spends its time. The kernel's function profiler
// (tracefs, graph time) reports hits and total time of the driver's
// functions and of the block layer entry points while random 4 KiB
// O_DIRECT writes run in incremental mode, in snapshot mode over already
// copied blocks, and untracked. Results go to the case log and to the
// samples as metric diag.<mode>.<function> (avg µs per call).
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import type { VmContext } from '../../test/vm/guest/api.js';
import { DATA_MIB, ensureBenchDisks, removeCow } from '../guest/bench-fs.js';
import { fio, type FioJob } from '../guest/fio.js';
import { params } from '../guest/params.js';
import { Recorder } from '../guest/record.js';

const TR = '/sys/kernel/tracing';
const MINOR = 0;

function w(file: string, v: string): void {
  writeFileSync(`${TR}/${file}`, v);
}

interface Prof {
  fn: string;
  hits: number;
  avgUs: number;
}

function readProfile(): Prof[] {
  const out = new Map<string, Prof>();
  for (const f of readdirSync(`${TR}/trace_stat`).filter((x) => x.startsWith('function'))) {
    for (const line of readFileSync(`${TR}/trace_stat/${f}`, 'utf8').split('\n')) {
      // "  dbd_submit_bio_noacct      1234    5678.123 us     4.601 us   ..."
      const m = /^\s*(\S+)\s+(\d+)\s+([\d.]+) us\s+([\d.]+) us/.exec(line);
      if (!m) continue;
      const fn = m[1] as string;
      const prev = out.get(fn) ?? { fn, hits: 0, avgUs: 0 };
      const hits = Number(m[2]);
      const total = Number(m[3]);
      const tot = prev.avgUs * prev.hits + total;
      prev.hits += hits;
      prev.avgUs = prev.hits ? tot / prev.hits : 0;
      out.set(fn, prev);
    }
  }
  return [...out.values()].sort((a, b) => b.avgUs * b.hits - a.avgUs * a.hits);
}

export async function diagWritePath(t: VmContext): Promise<void> {
  const p = params(t);
  const { traced, raw } = ensureBenchDisks(t);
  if (!raw) throw new Error('needs two disks');
  const rec = new Recorder(t);
  t.loadModule();
  if (!existsSync(`${TR}/trace_stat`)) t.run(['mount', '-t', 'tracefs', 'nodev', TR]);
  const fns = [
    'submit_bio_noacct',
    'dbd_submit_bio_noacct',
    'dbd_inc_write',
    'dbd_snap_write',
    'dbd_cow_mark_changed',
    'blk_mq_submit_bio',
    'iomap_dio_rw',
    'ext4_file_write_iter',
    'try_to_wake_up',
    'dbd_cow_save_block',
    'kernel_write',
    'snap_batch_commit',
    'snap_read_origin',
    'snap_load_window',
    'dbd_cow_read_data',
  ];
  const avail = readFileSync(`${TR}/available_filter_functions`, 'utf8');
  const usable = fns.filter((f) => new RegExp(`^${f}( |$)`, 'm').test(avail));
  t.log(`profiling ${usable.join(' ')}`);
  const job = (file: string): FioJob => ({ filename: file, rw: 'randwrite', bs: '4k', size: `${DATA_MIB}M`, runtimeS: p.runtimeS, randseed: 9 });
  const profile = (mode: string, j: FioJob): void => {
    w('function_profile_enabled', '0');
    w('set_ftrace_filter', usable.join('\n') + '\n');
    w('function_profile_enabled', '1');
    const r = fio(t, j);
    w('function_profile_enabled', '0');
    const prof = readProfile();
    t.log(`${mode}: ${r.mibps.toFixed(2)} MiB/s, ${Math.round(r.iops)} IOPS, clat ${r.clatUs.toFixed(0)} µs, ctxt/IO ${r.ctxtPerIo?.toFixed(2)}`);
    for (const x of prof) {
      t.log(`  ${x.fn.padEnd(28)} hits ${String(x.hits).padStart(8)} avg ${x.avgUs.toFixed(1)} µs`);
      rec.sample({ metric: `diag.${mode}.${x.fn}`, side: 'value', rep: 0, value: x.avgUs, unit: 'µs', extra: { hits: x.hits, iops: Math.round(r.iops) } });
    }
  };
  try {
    profile('raw', job(raw.data));
    t.ioctl.setup(MINOR, traced.dev, traced.cow, 64);
    t.ioctl.transitionInc(MINOR);
    profile('inc', job(traced.data));
    t.ioctl.destroy(MINOR);
    removeCow(t, traced);
    t.ioctl.setup(MINOR, traced.dev, traced.cow, 200);
    const once: FioJob = { ...job(traced.data), runtimeS: undefined, ioSize: '8M' };
    fio(t, once);
    profile('snap-rewrite', once);
    t.ioctl.destroy(MINOR);
    removeCow(t, traced);
    // sequential first writes and snapshot reads
    t.ioctl.setup(MINOR, traced.dev, traced.cow, 300);
    profile('snap-first-seq1m', { filename: traced.data, rw: 'write', bs: '1M', size: '128M' });
    profile('snap-read', { filename: `/dev/datto${MINOR}`, rw: 'read', bs: '1M', offset: String(traced.dataDevOffset), size: '256M' });
    t.ioctl.destroy(MINOR);
    removeCow(t, traced);
  } finally {
    w('function_profile_enabled', '0');
    w('set_ftrace_filter', '\n');
  }
  throw new Error('diagnosis only: see the case log (this case always reports failed so that its log is kept)');
}
