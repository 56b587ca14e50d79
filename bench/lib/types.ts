// SPDX-License-Identifier: GPL-2.0-only
// Shapes shared by the guest cases, the host orchestrator and the report.

/** One measurement taken in the guest. */
export interface Sample {
  kernel: string;
  /** e.g. 'inc.seq4k' (see METRICS in bench/lib/metrics.ts) */
  metric: string;
  /** raw = untracked device / origin, traced = through the driver, value = a plain figure, note = an explanation for the report, skip = not measured (note says why) */
  side: 'raw' | 'traced' | 'value' | 'note' | 'skip';
  /** repetition index; raw and traced with the same rep were run back to back */
  rep: number;
  value: number;
  unit: string;
  note?: string;
  /** free-form details (fio iops, latencies, bytes) */
  extra?: Record<string, number | string>;
}

export interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** One reported figure of one kernel. */
export interface Figure {
  metric: string;
  title: string;
  unit: string;
  /** ratio traced/raw per repetition (pairs), when the metric is a comparison */
  ratio?: Stat;
  raw?: Stat;
  traced?: Stat;
  /** plain value (latency, memory) */
  value?: Stat;
  goal?: { op: '>=' | '<='; value: number; of: 'ratio' | 'value' };
  verdict: 'meets goal' | 'misses goal' | 'no goal' | 'not measured';
  note?: string;
}

export interface KernelReport {
  kernel: string;
  kver: string;
  bootSeconds: number;
  /** guest run problems (failed cases, kernel log problems) */
  problems: string[];
  figures: Figure[];
}

export interface BenchResults {
  date: string;
  host: { cpus: number; model: string; node: string; qemu: string };
  guest: { accel: 'tcg'; smp: number; memMiB: number; disk: string; dataMiB?: number };
  parallelBoots: number;
  reps: number;
  wallSeconds: number;
  /** where the wall time went: seconds per phase (boot per kernel, emulator, update-img) */
  phases?: Record<string, number>;
  kernels: KernelReport[];
  /** which kernel/ sources were built and measured */
  moduleSource: string;
  emulator?: unknown;
  updateImg?: unknown;
  extraNotes: string[];
}
