// SPDX-License-Identifier: GPL-2.0-only
// What each metric measures, its unit and its goal (issue 7).
import type { Figure } from './types.js';

export interface MetricDef {
  title: string;
  /** comparisons are reported as traced/raw ratios per A/B pair */
  kind: 'ratio' | 'value';
  goal?: Figure['goal'];
  section: 'throughput' | 'latency' | 'memory' | 'update-img';
}

export const METRICS: Record<string, MetricDef> = {
  'ctl.aa.rand4k': { title: 'A/A control: random 4 KiB writes, vda vs vdb, both untracked', kind: 'ratio', section: 'throughput' },
  'inc.seq4k': { title: 'incremental: sequential 4 KiB O_DIRECT writes', kind: 'ratio', goal: { op: '>=', value: 0.97, of: 'ratio' }, section: 'throughput' },
  'inc.rand4k': { title: 'incremental: random 4 KiB O_DIRECT writes', kind: 'ratio', goal: { op: '>=', value: 0.97, of: 'ratio' }, section: 'throughput' },
  'snap.rewrite.seq1m': { title: 'snapshot, blocks already copied: sequential 1 MiB rewrites', kind: 'ratio', goal: { op: '>=', value: 0.9, of: 'ratio' }, section: 'throughput' },
  'snap.rewrite.rand4k': { title: 'snapshot, blocks already copied: random 4 KiB rewrites', kind: 'ratio', goal: { op: '>=', value: 0.9, of: 'ratio' }, section: 'throughput' },
  'snap.first.seq1m': { title: 'snapshot, first writes: sequential 1 MiB', kind: 'ratio', goal: { op: '>=', value: 0.45, of: 'ratio' }, section: 'throughput' },
  'snap.first.rand4k': { title: 'snapshot, first writes: random 4 KiB', kind: 'ratio', goal: { op: '>=', value: 0.45, of: 'ratio' }, section: 'throughput' },
  'snap.read.fresh': { title: 'sequential 1 MiB read of /dev/datto0 vs origin, fresh snapshot', kind: 'ratio', goal: { op: '>=', value: 0.9, of: 'ratio' }, section: 'throughput' },
  'snap.read.cowed': { title: 'sequential 1 MiB read of /dev/datto0 vs origin, after first writes', kind: 'ratio', goal: { op: '>=', value: 0.9, of: 'ratio' }, section: 'throughput' },
  'lat.setup.idle': { title: 'setup-snapshot, idle filesystem', kind: 'value', section: 'latency' },
  'lat.setup.busy': { title: 'setup-snapshot, busy filesystem (buffered writer)', kind: 'value', section: 'latency' },
  'lat.transsnap.idle': { title: 'transition-to-snapshot, idle filesystem', kind: 'value', section: 'latency' },
  'lat.transsnap.busy': { title: 'transition-to-snapshot, busy filesystem (buffered writer)', kind: 'value', section: 'latency' },
  'lat.spawn': { title: 'process start of dbd-ioctl (get-free; subtracted above)', kind: 'value', section: 'latency' },
  'mem.snap.idle': { title: 'snapshot mode, right after setup', kind: 'value', section: 'memory' },
  'mem.snap.written': { title: 'snapshot mode, after first writes', kind: 'value', section: 'memory' },
  'mem.inc.idle': { title: 'incremental mode, right after transition', kind: 'value', section: 'memory' },
  'mem.inc.written': { title: 'incremental mode, after the write runs', kind: 'value', section: 'memory' },
  'mem.storm.peak': { title: 'peak in-flight COW data under a write storm', kind: 'value', section: 'memory' },
  ...updateImgMetrics(),
};

/** update-img against dd of the same byte count (issue 5), bench/vm/update-img.vm.ts */
function updateImgMetrics(): Record<string, MetricDef> {
  const out: Record<string, MetricDef> = {};
  const goal: Figure['goal'] = { op: '>=', value: 0.9, of: 'value' };
  for (const pattern of ['scattered', 'clustered'] as const) {
    for (const percent of [1, 10, 50]) {
      out[`uimg.${pattern}.${percent}`] = { title: `update-img vs dd, ${percent} % of the blocks changed, ${pattern}`, kind: 'value', goal, section: 'update-img' };
    }
  }
  out['uimg.scattered.1.js'] = { title: 'update-img vs dd, 1 % scattered, JS copy engine', kind: 'value', section: 'update-img' };
  out['uimg.scattered.10.exact'] = { title: 'update-img vs dd, 10 % scattered, --exact-writes', kind: 'value', section: 'update-img' };
  out['uimg.scattered.50.exact'] = { title: 'update-img vs dd, 50 % scattered, --exact-writes', kind: 'value', section: 'update-img' };
  out['uimg.clustered.50.js'] = { title: 'update-img vs dd, 50 % clustered, JS copy engine', kind: 'value', section: 'update-img' };
  out['uimg.loop.scattered.1'] = { title: 'update-img vs dd, 1 % scattered, volume on a loop device (former layout)', kind: 'value', section: 'update-img' };
  out['uimg.loop.scattered.10'] = { title: 'update-img vs dd, 10 % scattered, volume on a loop device (former layout)', kind: 'value', section: 'update-img' };
  out['uimg.scattered.1.origin'] = { title: 'update-img vs dd, 1 % scattered, reading the origin instead of the snapshot (bound)', kind: 'value', section: 'update-img' };
  out['uimg.scattered.10.origin'] = { title: 'update-img vs dd, 10 % scattered, reading the origin instead of the snapshot (bound)', kind: 'value', section: 'update-img' };
  out['uimg.method'] = { title: 'update-img benchmark method', kind: 'value', section: 'update-img' };
  return out;
}

export const METRIC_ORDER = Object.keys(METRICS);
