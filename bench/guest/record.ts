// SPDX-License-Identifier: GPL-2.0-only
// Guest side of the benchmark: every measured sample is appended as one
// JSON line to <runDir>/bench.jsonl; the host groups them into figures.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../../test/vm/guest/api.js';
import type { Sample } from '../lib/types.js';

export class Recorder {
  private readonly file: string;

  constructor(private readonly t: VmContext) {
    this.file = join(t.config.runDir, 'bench.jsonl');
  }

  sample(s: Omit<Sample, 'kernel'>): void {
    const line: Sample = { kernel: this.t.kernel.name, ...s };
    appendFileSync(this.file, JSON.stringify(line) + '\n');
    this.t.log(`sample ${JSON.stringify(line)}`);
  }

  /** a figure that could not be measured, with the reason */
  notMeasured(metric: string, reason: string): void {
    this.sample({ metric, side: 'skip', rep: 0, value: Number.NaN, unit: '', note: reason });
  }
}
