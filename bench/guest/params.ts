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
}

export const DEFAULT_PARAMS: BenchParams = {
  reps: 5,
  runtimeS: 1.5,
  seqMiB: 128,
  randMiB: 4,
  readMiB: 256,
  stormMiB: 256,
};

export function params(t: VmContext): BenchParams {
  const p = (t.config as unknown as { bench?: Partial<BenchParams> }).bench ?? {};
  return { ...DEFAULT_PARAMS, ...p };
}
