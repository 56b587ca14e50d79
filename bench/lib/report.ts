// SPDX-License-Identifier: GPL-2.0-only
// Renders bench/RESULTS.md from the results JSON. Sections owned by others
// ("## Emulator…", "## update-img…") and hand-written ones ("… (hand-written)")
// are carried over verbatim from the previous file.
import { fmt } from './figures.js';
import { METRICS } from './metrics.js';
import type { BenchResults, Figure, KernelReport, Stat } from './types.js';

const KEEP = /^## (emulator|update-img)|\(hand-written\)/i;

/** "## ..." sections of a markdown file: [heading line, body] */
export function sections(md: string): Array<{ heading: string; text: string }> {
  const out: Array<{ heading: string; text: string }> = [];
  let cur: { heading: string; text: string } | null = null;
  for (const line of md.split('\n')) {
    if (line.startsWith('## ')) {
      cur = { heading: line, text: line + '\n' };
      out.push(cur);
    } else if (cur) cur.text += line + '\n';
  }
  return out;
}

const range = (s: Stat | undefined, digits?: (x: number) => string): string => {
  if (!s) return '—';
  const f = digits ?? fmt;
  return s.n > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
};
const ratioFmt = (x: number): string => x.toFixed(3);

function verdict(f: Figure): string {
  switch (f.verdict) {
    case 'meets goal':
      return `**meets** ${f.goal?.op} ${f.goal?.value}`;
    case 'misses goal':
      return `**MISSES** ${f.goal?.op} ${f.goal?.value}`;
    case 'not measured':
      return 'not measured';
    default:
      return '';
  }
}

function throughputTable(k: KernelReport): string {
  const rows = k.figures.filter((f) => METRICS[f.metric]?.section === 'throughput' || (!METRICS[f.metric] && f.ratio));
  const lines = [
    '| figure | raw MiB/s | traced MiB/s | ratio traced/raw: median (min–max) | goal | notes |',
    '|---|---|---|---|---|---|',
  ];
  for (const f of rows) {
    lines.push(`| ${f.title} | ${range(f.raw)} | ${range(f.traced)} | ${range(f.ratio, ratioFmt)} | ${verdict(f)} | ${f.note ?? ''} |`);
  }
  return lines.join('\n');
}

function valueTable(k: KernelReport, section: 'latency' | 'memory' | 'update-img'): string {
  const rows = k.figures.filter((f) => METRICS[f.metric]?.section === section && f.metric !== 'uimg.method');
  const head = section === 'latency' ? 'ms' : section === 'update-img' ? 'dd seconds / update-img seconds' : 'value';
  const lines = [`| figure | ${head}: median (min–max) | unit | goal | notes |`, '|---|---|---|---|---|'];
  for (const f of rows) {
    lines.push(`| ${f.title} | ${range(f.value)} | ${f.unit} | ${verdict(f)} | ${f.note ?? ''} |`);
  }
  return lines.join('\n');
}

function kernelSection(r: BenchResults, k: KernelReport): string {
  const out = [`### Kernel ${k.kernel} (${k.kver}) — guest under QEMU TCG, boot ${k.bootSeconds.toFixed(0)} s`, ''];
  if (k.problems.length) {
    out.push('Problems in this run (first lines; the run directory is kept with the full logs):', '', '```', ...k.problems.map((p) => p.trimEnd().split('\n').slice(0, 3).join('\n')), '```', '');
  }
  out.push(`Throughput (up to ${r.reps} A/B pairs, at least 3; ratio = traced/raw of the same pair):`, '', throughputTable(k), '');
  out.push('Latency (wall time of the ioctl minus the median process start of `dbd-ioctl`):', '', valueTable(k, 'latency'), '');
  out.push(
    'Memory (kernel memory attributable to the driver: Δ SUnreclaim + Δ VmallocUsed + Δ pages on no LRU, per GiB of tracked volume; storm peak in MiB):',
    '',
    valueTable(k, 'memory'),
    '',
  );
  const method = k.figures.find((f) => f.metric === 'uimg.method')?.note;
  out.push('update-img against dd of the same byte count (`bench/vm/update-img.vm.ts`; ≥ 0.9 meets issue 5\'s goal):', '', valueTable(k, 'update-img'), '');
  if (method && !method.startsWith('not ')) out.push(`Method: ${method}.`, '');
  return out.join('\n');
}

function summaryTable(r: BenchResults): string {
  const metrics = [...new Set(r.kernels.flatMap((k) => k.figures.filter((f) => f.goal).map((f) => f.metric)))];
  const lines = [
    `| figure | goal | ${r.kernels.map((k) => k.kernel).join(' | ')} |`,
    `|---|---|${r.kernels.map(() => '---').join('|')}|`,
  ];
  for (const m of metrics) {
    const any = r.kernels.flatMap((k) => k.figures).find((f) => f.metric === m);
    if (!any) continue;
    const cells = r.kernels.map((k) => {
      const f = k.figures.find((x) => x.metric === m);
      if (!f || f.verdict === 'not measured') return 'not measured';
      const s = f.ratio ?? f.value;
      const v = s ? (f.ratio ? ratioFmt(s.median) : `${fmt(s.median)} ${f.unit}`) : '—';
      return f.verdict === 'misses goal' ? `${v} ✗` : `${v} ✓`;
    });
    lines.push(`| ${any.title} | ${any.goal?.op} ${any.goal?.value}${any.goal?.of === 'value' ? ` ${any.unit}` : ''} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function collectedSection(r: BenchResults): string {
  const part = (name: string, v: unknown): string => {
    if (v === undefined) return `${name}: not present or not selected, not measured.`;
    const md = (v as { markdown?: unknown }).markdown;
    if (typeof md === 'string') {
      // the module's own rendering, one heading level down
      return `${name} (called by npm run bench in the same run):\n\n${md.replace(/^## /gm, '### ').trimEnd()}`;
    }
    return `${name} (called by npm run bench):\n\n\`\`\`json\n${JSON.stringify(v, null, 2)}\n\`\`\``;
  };
  return ['## Collected by npm run bench: emulator and update-img', '', part('bench/emulator.ts', r.emulator), '', part('bench/update-img.ts', r.updateImg), ''].join('\n');
}

export function renderResultsMd(r: BenchResults, previous: string): string {
  const kept = sections(previous).filter((s) => KEEP.test(s.heading));
  const body = [
    '# Benchmarks',
    '',
    'Generated by `npm run bench` (`bench/main.ts`) from `bench/results.json`; sections marked',
    '"hand-written" and the Emulator / update-img sections are kept as they are.',
    '',
    '## Kernel driver: overhead against the raw device',
    '',
    `Run ${r.date}, wall time ${r.wallSeconds.toFixed(0)} s (${(r.wallSeconds / 60).toFixed(1)} min), ${r.parallelBoots === 1 ? 'one guest at a time' : `${r.parallelBoots} guests in parallel`}.`,
    ...(r.phases ? [`Where the wall time went: ${Object.entries(r.phases).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ')}.`] : []),
    `Module measured: ${r.moduleSource}.`,
    `Host: ${r.host.cpus} × ${r.host.model}, Node ${r.host.node}, ${r.host.qemu}.`,
    `Guest: QEMU **TCG** (no KVM), ${r.guest.smp} vCPUs, ${r.guest.memMiB} MiB; disks dedicated to the benchmark: ${r.guest.disk}. /dev/vda (traced; prefilled once so the host image has no holes) and /dev/vdb (the untracked twin) each hold ext4 (no lazy init) and a ${r.guest.dataMiB ?? 512} MiB data file written once; /dev/vdc, where present, is the volume of the update-img figures.`,
    '',
    '### Method',
    '',
    '- One boot per kernel runs every measurement (`bench/vm/*.vm.ts`), driven by the VM harness\'s library (`test/vm/lib`).',
    '- **raw** = the same fio job on the untracked twin disk /dev/vdb (module loaded; the write hook is registered only while a device is traced, and it never matches vdb); **traced** = on /dev/vda through the driver in the stated mode. The A/A control row (both untracked) shows how much of a ratio is the two disks themselves. For reads, raw = the origin `/dev/vda`, traced = `/dev/datto0`, same bytes (from the data file\'s first block on).',
    `- Every comparison is up to ${r.reps} A/B pairs (at least 3; a case starts no new pair once its time budget is spent), each pair run back to back in one fio process; the order alternates between pairs (A/B, B/A, ...) so that drift cancels. The ratio is taken per pair; tables show the median with min–max. Notes give the medians of fio\'s completion latency, of the fio thread\'s context switches and of its system CPU time per I/O (raw → traced).`,
    '- fio 3.33, psync, iodepth 1, O_DIRECT: time-based 4 KiB runs; size-based first-write / rewrite runs (sequential rewrites repeat the same job; random rewrites replay the random first-write job\'s own I/O log (write_iolog / read_iolog), so they hit exactly the blocks it copied: fio mixes the job\'s position in the batch into its random seed); snapshot first writes on a fresh snapshot; rewrites and reads start once the driver\'s threads are idle (exec_prerun `bench/guest/quiet.sh`, both sides).',
    '- Latency: wall time of the ioctl through `dbd-ioctl` minus the median start-up of `dbd-ioctl get-free`; busy = a buffered sequential fio writer running.',
    '- Memory: `/proc/meminfo` before setup vs in the mode (after `sync`): SUnreclaim + VmallocUsed + memory on no LRU list (MemTotal − MemFree − LRU − Slab − KernelStack − PageTables − Percpu − VmallocUsed). The write storm is 1 MiB O_DIRECT first writes at iodepth 16 (libaio) on a fresh snapshot, sampled every 10 ms; the same storm on the untracked twin is the control, and the figure is the traced peak minus the raw peak.',
    '- **What TCG distorts**: every guest instruction is emulated, so CPU work costs 5–10× more than on hardware while the host\'s page cache / SSD make the virtual disk comparatively fast; driver CPU overhead (hook, bitmap, copying) is therefore *over*-weighted relative to I/O, and absolute MiB/s mean nothing. 4 KiB O_DIRECT I/O is dominated by the emulated interrupt/virtio path (~3k IOPS). Only ratios from the same run are meaningful; min–max shows the noise of a shared 2-core host.',
    '',
    '### Summary (medians; ✓ meets, ✗ misses the goal)',
    '',
    summaryTable(r),
    '',
    ...r.kernels.map((k) => kernelSection(r, k)),
  ].join('\n');
  const keptText = kept.map((s) => s.text.trimEnd() + '\n').join('\n');
  return `${body}\n${keptText ? keptText + '\n' : ''}${collectedSection(r)}`;
}

export function renderConsole(r: BenchResults): string {
  const lines: string[] = [];
  for (const k of r.kernels) {
    lines.push(`\n== ${k.kernel} (${k.kver}), TCG guest`);
    for (const p of k.problems) lines.push(`  problem: ${p.split('\n')[0]}`);
    for (const f of k.figures) {
      const s = f.ratio ?? f.value;
      const v = !s ? 'not measured' : f.ratio ? `ratio ${range(f.ratio, ratioFmt)}` : `${range(f.value)} ${f.unit}`;
      const g = f.verdict === 'meets goal' || f.verdict === 'misses goal' ? `  [${f.verdict} ${f.goal?.op} ${f.goal?.value}]` : '';
      lines.push(`  ${f.title.padEnd(70)} ${v}${g}${!s && f.note ? ` — ${f.note}` : ''}`);
    }
  }
  return lines.join('\n');
}
