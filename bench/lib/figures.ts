// SPDX-License-Identifier: GPL-2.0-only
// Samples of one kernel's guest run → reported figures: per-pair ratios
// (traced/raw of the same repetition), medians with min/max, goal verdicts.
import { METRICS, METRIC_ORDER } from './metrics.js';
import { stat } from './stats.js';
import type { Figure, Sample } from './types.js';

export interface FigureOptions {
  /** bound of in-flight COW data in MiB, or null if unknown */
  inflightBoundMiB: number | null;
  inflightBoundSource: string;
  /** why metrics without samples were not measured */
  missingReason: (metric: string) => string;
}

export function figuresFor(samples: readonly Sample[], o: FigureOptions): Figure[] {
  const out: Figure[] = [];
  const known = new Set(METRIC_ORDER);
  const extra = [...new Set(samples.map((s) => s.metric))].filter((m) => !known.has(m));
  for (const metric of [...METRIC_ORDER, ...extra]) {
    const def = METRICS[metric] ?? { title: metric, kind: 'value' as const, section: 'throughput' as const };
    const mine = samples.filter((s) => s.metric === metric);
    const notes = mine.filter((s) => s.side === 'note' && s.note).map((s) => s.note as string);
    const skips = mine.filter((s) => s.side === 'skip').map((s) => s.note ?? 'not measured');
    const unit = mine.find((s) => s.unit)?.unit ?? '';
    const f: Figure = { metric, title: def.title, unit, verdict: 'no goal' };
    if (def.goal) f.goal = def.goal;
    if (metric === 'mem.storm.peak' && o.inflightBoundMiB !== null) {
      f.goal = { op: '<=', value: o.inflightBoundMiB, of: 'value' };
      notes.push(`bound ${o.inflightBoundMiB} MiB (${o.inflightBoundSource})`);
    }
    if (def.kind === 'ratio') {
      const raw = mine.filter((s) => s.side === 'raw');
      const traced = mine.filter((s) => s.side === 'traced');
      const ratios: number[] = [];
      for (const tr of traced) {
        const r = raw.find((x) => x.rep === tr.rep);
        if (r && r.value > 0) ratios.push(tr.value / r.value);
      }
      const rs = stat(raw.map((s) => s.value));
      const ts = stat(traced.map((s) => s.value));
      const ratio = stat(ratios);
      if (rs) f.raw = rs;
      if (ts) f.traced = ts;
      if (ratio) f.ratio = ratio;
      const side = (xs: readonly Sample[], k: string): string => {
        const st = stat(xs.map((x) => Number(x.extra?.[k])));
        return st ? fmt(st.median) : '?';
      };
      if (raw.length && traced.length) {
        const parts = [`latency per I/O ${side(raw, 'clatUs')} → ${side(traced, 'clatUs')} µs`];
        if (traced.some((x) => x.extra?.ctxtPerIo !== undefined)) {
          parts.push(`context switches per I/O ${side(raw, 'ctxtPerIo')} → ${side(traced, 'ctxtPerIo')}`);
        }
        if (traced.some((x) => x.extra?.sysUsPerIo !== undefined)) {
          parts.push(`fio system CPU per I/O ${side(raw, 'sysUsPerIo')} → ${side(traced, 'sysUsPerIo')} µs`);
        }
        notes.push(parts.join(', '));
      }
    } else {
      const v = stat(mine.filter((s) => s.side === 'value').map((s) => s.value));
      if (v) f.value = v;
      const details = describeExtras(mine.filter((s) => s.side === 'value'));
      if (details) notes.push(details);
    }
    const measured = f.ratio ?? f.value;
    if (!measured) {
      f.verdict = 'not measured';
      notes.unshift(skips[0] ?? o.missingReason(metric));
    } else if (f.goal) {
      const ok = f.goal.op === '>=' ? measured.median >= f.goal.value : measured.median <= f.goal.value;
      f.verdict = ok ? 'meets goal' : 'misses goal';
    }
    if (notes.length) f.note = notes.join('; ');
    out.push(f);
  }
  return out;
}

/** medians of the numeric extras (e.g. slab/vmalloc/pages split of a memory figure) */
function describeExtras(xs: readonly Sample[]): string {
  const keys = new Set<string>();
  for (const s of xs) for (const [k, v] of Object.entries(s.extra ?? {})) if (typeof v === 'number') keys.add(k);
  const parts: string[] = [];
  for (const k of keys) {
    if (k === 'busy' || k === 'samples') continue;
    const st = stat(xs.map((s) => Number(s.extra?.[k])));
    if (st) parts.push(`${k} ${fmt(st.median)}`);
  }
  return parts.length ? `medians: ${parts.join(', ')}` : '';
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '—';
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
