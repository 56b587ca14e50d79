// SPDX-License-Identifier: GPL-2.0-only
// How the VM suite spreads its cases over guests. Every kernel's cases go
// into one queue, longest first (by the durations of earlier runs); up to
// DBD_VM_BOOTS_PER_KERNEL guests of that kernel claim cases from it while
// they run (test/vm/guest/runner.ts), so the two lanes of a 2-core host stay
// busy until the last case instead of one kernel's boot running alone at the
// end. Durations: $DBD_VM_DIR/case-times.json (written by every run), else
// the copy kept in the repository (test/vm/case-times.json).
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VM_TEST_DIR, vmDir } from './paths.js';
import type { TestFile } from './suite.js';

export interface QueuedCase {
  file: string;
  name: string;
}

/** "file:case" → seconds, the mean over the kernels of the run that measured it */
export type CaseTimes = Record<string, number>;

const REPO_TIMES = join(VM_TEST_DIR, 'case-times.json');
const localTimes = (): string => join(vmDir(), 'case-times.json');

function readTimes(path: string): CaseTimes {
  if (!existsSync(path)) return {};
  try {
    const j = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (!j || typeof j !== 'object') return {};
    const out: CaseTimes = {};
    for (const [k, v] of Object.entries(j as Record<string, unknown>)) if (typeof v === 'number' && v >= 0) out[k] = v;
    return out;
  } catch {
    return {};
  }
}

export function loadCaseTimes(): CaseTimes {
  return { ...readTimes(REPO_TIMES), ...readTimes(localTimes()) };
}

/** Merge this run's measurements (seconds per kernel and case) into $DBD_VM_DIR/case-times.json. */
export function saveCaseTimes(measured: ReadonlyArray<{ name: string; seconds: number }>): string {
  const sums = new Map<string, { s: number; n: number }>();
  for (const m of measured) {
    const e = sums.get(m.name) ?? { s: 0, n: 0 };
    e.s += m.seconds;
    e.n++;
    sums.set(m.name, e);
  }
  const times = readTimes(localTimes());
  for (const [k, e] of sums) times[k] = Math.round((e.s / e.n) * 10) / 10;
  const sorted = Object.fromEntries(Object.entries(times).sort(([a], [b]) => a.localeCompare(b)));
  mkdirSync(vmDir(), { recursive: true });
  writeFileSync(localTimes(), JSON.stringify(sorted, null, 2) + '\n');
  return localTimes();
}

/** A case never measured counts as this long (seconds). */
const UNKNOWN_S = 60;

export function expectedSeconds(times: CaseTimes, c: QueuedCase): number {
  return times[`${c.file}:${c.name}`] ?? UNKNOWN_S;
}

/** The cases of `tests`, longest expected first (ties: file order). */
export function queueOrder(tests: readonly TestFile[], times: CaseTimes): QueuedCase[] {
  const all = tests.flatMap((t) => t.cases.map((name) => ({ file: t.file, name })));
  return all
    .map((c, i) => ({ c, i, s: expectedSeconds(times, c) }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map((x) => x.c);
}

/** The host's side of one kernel's queue directory. */
export class CaseQueue {
  constructor(
    readonly dir: string,
    readonly cases: readonly QueuedCase[],
  ) {
    mkdirSync(dir, { recursive: true });
  }

  /** index → the boot that claimed it ('' while its name is being written) */
  claims(): Map<number, string> {
    const out = new Map<number, string>();
    for (const d of readdirSync(this.dir)) {
      const m = /^claim-(\d+)$/.exec(d);
      if (!m) continue;
      let boot = '';
      try {
        boot = readFileSync(join(this.dir, d, 'boot'), 'utf8').trim();
      } catch {
        // claimed a moment ago
      }
      out.set(Number(m[1]), boot);
    }
    return out;
  }

  unclaimed(): QueuedCase[] {
    const claimed = this.claims();
    return this.cases.filter((_, i) => !claimed.has(i));
  }

  /** the cases the given boot claimed */
  claimedBy(boot: string): QueuedCase[] {
    const out: QueuedCase[] = [];
    for (const [i, b] of this.claims()) if (b === boot && this.cases[i]) out.push(this.cases[i]);
    return out;
  }
}
