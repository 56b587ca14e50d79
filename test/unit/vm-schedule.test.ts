// SPDX-License-Identifier: GPL-2.0-only
// The VM harness's schedule: the order of a kernel's queue, and claims that
// hand every case to exactly one guest even when guests claim at once.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CaseQueue, queueOrder } from '../vm/lib/schedule.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'dbd-sched-'));
  dirs.push(d);
  return d;
}

const tests = [
  { file: 'a.vm.ts', cases: ['quick', 'slow', 'unknown'] },
  { file: 'b.vm.ts', cases: ['medium', 'alsoQuick'] },
];

describe('VM case queue', () => {
  it('puts the longest expected cases first, unmeasured ones as 60 s, ties in file order', () => {
    const times = { 'a.vm.ts:quick': 1, 'a.vm.ts:slow': 300, 'b.vm.ts:medium': 60, 'b.vm.ts:alsoQuick': 1 };
    expect(queueOrder(tests, times).map((c) => `${c.file}:${c.name}`)).toEqual([
      'a.vm.ts:slow', 'a.vm.ts:unknown', 'b.vm.ts:medium', 'a.vm.ts:quick', 'b.vm.ts:alsoQuick',
    ]);
  });

  it('gives every case to exactly one of several guests claiming at once', async () => {
    const n = 60;
    const cases = Array.from({ length: n }, (_, i) => ({ file: 'x.vm.ts', name: `c${i}` }));
    const q = new CaseQueue(join(tmp(), 'queue'), cases);
    // the guest runner's claim: mkdir claim-<i>, then the boot's name in it
    const claimer = `
      const { mkdirSync, writeFileSync } = require('node:fs');
      const [dir, boot, n] = process.argv.slice(1);
      let got = 0;
      for (let i = 0; i < Number(n); i++) {
        try { mkdirSync(dir + '/claim-' + i); } catch (e) { if (e.code === 'EEXIST') continue; throw e; }
        writeFileSync(dir + '/claim-' + i + '/boot', boot);
        got++;
      }
      process.stdout.write(String(got));`;
    const counts = await Promise.all(['k/boot1', 'k/boot2', 'k/boot3'].map((boot) => new Promise<number>((resolve, reject) => {
      const c = spawn(process.execPath, ['-e', claimer, q.dir, boot, String(n)]);
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.on('error', reject);
      c.on('exit', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`claimer exited ${code}`))));
    })));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(n);
    expect(q.unclaimed()).toEqual([]);
    const by = ['k/boot1', 'k/boot2', 'k/boot3'].map((b) => q.claimedBy(b).map((c) => c.name));
    expect(by.map((x) => x.length)).toEqual(counts);
    expect(new Set(by.flat()).size).toBe(n);
  });

  it('lists what no guest has claimed yet', () => {
    const q = new CaseQueue(join(tmp(), 'queue'), queueOrder(tests, {}));
    expect(q.unclaimed()).toHaveLength(5);
    expect(q.claims().size).toBe(0);
  });
});
