// SPDX-License-Identifier: GPL-2.0-only
/**
 * fast-check parameters of the in-process differential suite, from the
 * environment so that CI stays bounded and a failure replays from its log:
 *   DBD_DIFF_FAST_RUNS  runs per property (default 2000)
 *   DBD_DIFF_SEED       fixed seed (default: random, printed on failure)
 *   DBD_DIFF_PATH       replay path printed by fast-check on failure
 */
import type { Parameters } from 'fast-check';

export function fastRuns(defaultRuns = 2000): number {
  const v = Number(process.env.DBD_DIFF_FAST_RUNS);
  return Number.isSafeInteger(v) && v > 0 ? v : defaultRuns;
}

/** numRuns scaled by `factor` (for slower properties), plus seed/path when given. */
export function fcParams<T>(factor = 1): Parameters<T> {
  const p: Parameters<T> = { numRuns: Math.max(1, Math.round(fastRuns() * factor)) };
  const seed = Number(process.env.DBD_DIFF_SEED);
  if (process.env.DBD_DIFF_SEED !== undefined && Number.isSafeInteger(seed)) p.seed = seed;
  if (process.env.DBD_DIFF_PATH) p.path = process.env.DBD_DIFF_PATH;
  return p;
}
