// SPDX-License-Identifier: GPL-2.0-only
import type { Stat } from './types.js';

export function stat(xs: readonly number[]): Stat | undefined {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = s.length;
  if (!n) return undefined;
  const median = n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
  return { median, min: s[0] as number, max: s[n - 1] as number, n };
}
