// SPDX-License-Identifier: GPL-2.0-only
// The copy plan (both engines' read windows) makes the windows and batches
// of the straightforward model below (the generator update-img used before),
// from the runs validation kept and from an iterator alike, and drops only
// the window it was building when the run source throws.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CopyPlanner, planWindowAt, planWindows, type CopyWindow } from '../../src/cli/copy-plan.js';
import { changedRuns } from '../../src/cli/update-img-core.js';

/** The model: runs joined into windows, one run at a time. */
function* modelWindows(runs: Iterable<[number, number]>, maxRun: number, gapBlocks: number): Generator<CopyWindow> {
  let w: CopyWindow | undefined;
  for (const [first, count] of runs) {
    if (w && first - (w.first + w.count) <= gapBlocks && first + count - w.first <= maxRun) {
      w.parts.push([first, count]);
      w.count = first + count - w.first;
      continue;
    }
    if (w) yield w;
    w = { first, count, parts: [[first, count]] };
  }
  if (w) yield w;
}

/** Sorted, disjoint, non-adjacent runs of changed blocks from gaps and lengths. */
const runsArb = fc.array(fc.tuple(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 700 })), { maxLength: 60 }).map((xs) => {
  const runs: number[] = [];
  let at = 0;
  for (const [gap, len] of xs) {
    at += gap;
    runs.push(at, len);
    at += len;
  }
  return Float64Array.from(runs);
});

function expected(runs: Float64Array, maxRun: number, gap: number): CopyWindow[] {
  const v = { snapshotBlocks: 0, entriesOf: () => new Float64Array(0), runs };
  return [...modelWindows(changedRuns(v, maxRun, 1), maxRun, gap)];
}

function batches(p: CopyPlanner, maxWindows: number, maxNumbers: number): CopyWindow[][] {
  const out: CopyWindow[][] = [];
  for (let b = p.next(maxWindows, maxNumbers); b; b = p.next(maxWindows, maxNumbers)) {
    const ws: CopyWindow[] = [];
    for (let at = 0; at < b.plan.length; at += 3 + 2 * b.plan[at + 2]!) ws.push(planWindowAt(b.plan, at));
    expect(ws).toHaveLength(b.windows);
    out.push(ws);
  }
  return out;
}

/** The batches the generator path makes: windows until maxWindows, or until maxNumbers numbers or more. */
function expectedBatches(ws: CopyWindow[], maxWindows: number, maxNumbers: number): CopyWindow[][] {
  const out: CopyWindow[][] = [];
  let cur: CopyWindow[] = [];
  let len = 0;
  for (const w of ws) {
    if (cur.length >= maxWindows || len >= maxNumbers) {
      out.push(cur);
      cur = [];
      len = 0;
    }
    cur.push(w);
    len += 3 + 2 * w.parts.length;
  }
  if (cur.length) out.push(cur);
  return out;
}

function iterate(runs: Float64Array, maxRun: number): { next: () => IteratorResult<[number, number]> } {
  return changedRuns({ snapshotBlocks: 0, entriesOf: () => new Float64Array(0), runs }, maxRun, 1);
}

describe('copy plan', () => {
  it('the same windows and batches as the model, from kept runs and from an iterator', () => {
    fc.assert(
      fc.property(runsArb, fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 5, max: 400 }), (runs, maxRun, gap, maxWindows, maxNumbers) => {
        const want = expectedBatches(expected(runs, maxRun, gap), maxWindows, maxNumbers);
        expect(batches(new CopyPlanner({ runs }, maxRun, gap), maxWindows, maxNumbers)).toEqual(want);
        expect(batches(new CopyPlanner(iterate(runs, maxRun), maxRun, gap), maxWindows, maxNumbers)).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });

  it('a run source that throws: the windows closed before are planned, the one being built is dropped, then nothing more', () => {
    const pieces: [number, number][] = [[0, 2], [10, 1], [100, 3], [103, 1]];
    let i = 0;
    const src = {
      next: (): IteratorResult<[number, number]> => {
        if (i === pieces.length) throw new Error('EIO reading the index');
        return { done: false, value: pieces[i++]! };
      },
    };
    const p = new CopyPlanner(src, 256, 8);
    const b = p.next(100, 1000)!;
    expect(b.windows).toBe(1);
    expect(planWindowAt(b.plan, 0)).toEqual({ first: 0, count: 11, parts: [[0, 2], [10, 1]] });
    expect(b.plan).toHaveLength(3 + 4);
    expect((p.error?.error as Error).message).toBe('EIO reading the index');
    expect(p.next(100, 1000)).toBeUndefined();
  });

  it('planWindows hands the JavaScript engine the windows closed before a failing run source, then its error', () => {
    const pieces: [number, number][] = [[0, 2], [10, 1], [100, 3]];
    let i = 0;
    const gen = planWindows(
      {
        next: (): IteratorResult<[number, number]> => {
          if (i === pieces.length) throw new Error('EIO reading the index');
          return { done: false, value: pieces[i++]! };
        },
      },
      256,
      8,
    );
    expect(gen.next().value).toEqual({ first: 0, count: 11, parts: [[0, 2], [10, 1]] });
    expect(() => gen.next()).toThrow('EIO reading the index');
  });
});
