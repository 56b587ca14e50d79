// SPDX-License-Identifier: GPL-2.0-only
/**
 * update-img's read windows, planned once for both copy engines: runs of
 * changed blocks cut at maxRun blocks, a run joining the window before it
 * while the unchanged gap is at most gapBlocks and the window stays within
 * maxRun blocks. CopyPlanner writes them straight into the Float64Array the
 * native engine takes ([first, count, nparts, then first and count of each
 * part] per window), one batch at a time, with a loop over numbers (under
 * emulation, generators of arrays cost more than a scattered copy's
 * planning is worth); planWindows hands the same windows to the JavaScript
 * engine one at a time.
 */
/** Where the runs come from: the runs validation kept (first, count pairs), or an iterator. */
export type RunSource = { runs: Float64Array } | { next: () => IteratorResult<[first: number, count: number]> };

export interface PlanBatch {
  plan: Float64Array;
  /** windows in the plan */
  windows: number;
}

/** One window of a plan, at the offset of its first number. */
/** One read of the snapshot: blocks [first, first+count) covering the changed runs `parts`. */
export interface CopyWindow {
  first: number;
  count: number;
  parts: [first: number, count: number][];
}

export function planWindowAt(plan: Float64Array, at: number): CopyWindow {
  const nparts = plan[at + 2]!;
  const parts: [number, number][] = [];
  for (let k = 0; k < nparts; k++) parts.push([plan[at + 3 + 2 * k]!, plan[at + 4 + 2 * k]!]);
  return { first: plan[at]!, count: plan[at + 1]!, parts };
}

export class CopyPlanner {
  /** What the run source threw; the batch it happened in holds the windows closed before. */
  error: { error: unknown } | undefined;
  private ri = 0;
  private used = 0;
  private held = false;
  private pf = 0;
  private pc = 0;

  constructor(
    private readonly src: RunSource,
    private readonly maxRun: number,
    private readonly gapBlocks: number,
  ) {}

  /** The next piece of a run (at most maxRun blocks) into pf, pc; false at the end. */
  private piece(): boolean {
    if (this.held) {
      this.held = false;
      return true;
    }
    if ('runs' in this.src) {
      const runs = this.src.runs;
      if (this.ri >= runs.length) return false;
      const left = runs[this.ri + 1]! - this.used;
      const take = Math.min(left, this.maxRun);
      this.pf = runs[this.ri]! + this.used;
      this.pc = take;
      if (take === left) {
        this.ri += 2;
        this.used = 0;
      } else this.used += take;
      return true;
    }
    const n = this.src.next();
    if (n.done) return false;
    this.pf = n.value[0];
    this.pc = n.value[1];
    return true;
  }

  /**
   * The next batch: windows until maxWindows of them, or until the plan
   * holds maxNumbers numbers or more; undefined when no run is left.
   */
  next(maxWindows: number, maxNumbers: number): PlanBatch | undefined {
    if (this.error) return undefined;
    let plan = new Float64Array(Math.min(4096, maxNumbers + 2 * this.maxRun + 3));
    let len = 0;
    let windows = 0;
    let hdr = -1;
    let wFirst = 0;
    let wCount = 0;
    let nparts = 0;
    const room = (n: number): void => {
      if (len + n <= plan.length) return;
      const bigger = new Float64Array(Math.max(plan.length * 2, len + n));
      bigger.set(plan.subarray(0, len));
      plan = bigger;
    };
    try {
      while (this.piece()) {
        const f = this.pf;
        const c = this.pc;
        if (hdr >= 0 && f - (wFirst + wCount) <= this.gapBlocks && f + c - wFirst <= this.maxRun) {
          room(2);
          plan[len++] = f;
          plan[len++] = c;
          nparts++;
          wCount = f + c - wFirst;
          continue;
        }
        if (hdr >= 0) {
          plan[hdr + 1] = wCount;
          plan[hdr + 2] = nparts;
          windows++;
          hdr = -1;
          if (windows >= maxWindows || len >= maxNumbers) {
            this.held = true; // this piece starts the next batch
            break;
          }
        }
        room(5);
        hdr = len;
        plan[len] = f;
        plan[len + 3] = f;
        plan[len + 4] = c;
        len += 5;
        nparts = 1;
        wFirst = f;
        wCount = c;
      }
      if (hdr >= 0) {
        plan[hdr + 1] = wCount;
        plan[hdr + 2] = nparts;
        windows++;
      }
    } catch (e) {
      // The index could not be read again: the window being built is dropped.
      this.error = { error: e };
      if (hdr >= 0) len = hdr;
    }
    return windows ? { plan: plan.subarray(0, len), windows } : undefined;
  }
}

/**
 * The windows one at a time (planned a batch of 256 ahead). What the run
 * source threw is thrown after the windows closed before it.
 */
export function* planWindows(src: RunSource, maxRun: number, gapBlocks: number): Generator<CopyWindow> {
  const p = new CopyPlanner(src, maxRun, gapBlocks);
  for (let b = p.next(256, Infinity); b; b = p.next(256, Infinity)) {
    for (let k = 0, at = 0; k < b.windows; k++) {
      const w = planWindowAt(b.plan, at);
      at += 3 + 2 * w.parts.length;
      yield w;
    }
  }
  if (p.error) throw p.error.error;
}
