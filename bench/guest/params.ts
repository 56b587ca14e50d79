// SPDX-License-Identifier: GPL-2.0-only
// Benchmark parameters, passed by bench/main.ts in the guest config's
// "bench" field.
import type { VmContext } from '../../test/vm/guest/api.js';

export interface BenchParams {
  /** repetitions of every A/B pair */
  reps: number;
  /** seconds of each time-based 4 KiB write run */
  runtimeS: number;
  /** MiB written by each sequential first-write / rewrite run */
  seqMiB: number;
  /** MiB written by each random 4 KiB first-write / rewrite run */
  randMiB: number;
  /** MiB read by each sequential read run */
  readMiB: number;
  /** MiB written by each write-storm run */
  stormMiB: number;
  /** a case starts no new repetition after this many seconds ... */
  caseBudgetS: number;
  /** ... once it has this many */
  minReps: number;
}

export const DEFAULT_PARAMS: BenchParams = {
  reps: 5,
  runtimeS: 1.5,
  seqMiB: 64,
  randMiB: 2,
  readMiB: 128,
  stormMiB: 128,
  caseBudgetS: 25,
  minReps: 3,
};

export function params(t: VmContext): BenchParams {
  const p = (t.config as unknown as { bench?: Partial<BenchParams> }).bench ?? {};
  return { ...DEFAULT_PARAMS, ...p };
}

/**
 * Repetition control: true while another repetition should run. Stops at
 * reps, or early (but not before minReps) once the case has used its time
 * budget, so a slow host still finishes all kernels in time; the report
 * shows the number of repetitions each figure got.
 */
export function repeater(p: BenchParams, reps = p.reps): (rep: number) => boolean {
  const t0 = Date.now();
  return (rep) => rep < reps && (rep < Math.min(p.minReps, reps) || Date.now() - t0 < p.caseBudgetS * 1000);
}
