// SPDX-License-Identifier: GPL-2.0-only
/**
 * Command sequences frozen from model-based runs (counterexamples found
 * while developing, and hand-written scenarios) replayed as plain tests.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { newSystem, OpCommand, type Op } from './commands.js';

function replay(ops: Op[]): void {
  fc.modelRun(() => newSystem(1), ops.map((op) => new OpCommand(op)));
}

const V = '/dev/vda';

describe('model regressions', () => {
  it('a block written twice keeps its first saved copy (found by mutating the COW skip rule)', () => {
    replay([
      { t: 'setup', minor: 0, bdev: V, cow: '/mnt/c0', mib: 1, cache: 0 },
      { t: 'write', off: 262900, len: 10532, seed: 0 },
      { t: 'write', off: 258620, len: 8400, seed: 1081137401 },
      { t: 'read', minor: 0, off: 0, len: 524288 },
    ]);
  });

  it('a full backup series: snapshot → incremental → snapshot, twice, with reads', () => {
    replay([
      { t: 'write', off: 0, len: 65536, seed: 3 },
      { t: 'setup', minor: 0, bdev: V, cow: '/mnt/c0', mib: 1, cache: 0 },
      { t: 'write', off: 4000, len: 9000, seed: 4 },
      { t: 'read', minor: 0, off: 0, len: 524288 },
      { t: 'transInc', minor: 0 },
      { t: 'write', off: 100000, len: 5000, seed: 5 },
      { t: 'discard', off: 200704, len: 8192 },
      { t: 'transSnap', minor: 0, cow: '/mnt/c1', mib: 0 },
      { t: 'read', minor: 0, off: 0, len: 524288 },
      { t: 'unlink', path: '/mnt/c0' },
      { t: 'transInc', minor: 0 },
      { t: 'zeroes', off: 1, len: 3 },
      { t: 'transSnap', minor: 0, cow: '/mnt/c2', mib: 1 },
      { t: 'read', minor: 0, off: 0, len: 524288 },
    ]);
  });

  it('dormant across umount, writes queued, reboot and reload', () => {
    replay([
      { t: 'setup', minor: 1, bdev: V, cow: '/mnt/c0', mib: 1, cache: 0 },
      { t: 'write', off: 0, len: 4096, seed: 1 },
      { t: 'umount' },
      { t: 'write', off: 4096, len: 12288, seed: 2 },
      { t: 'read', minor: 1, off: 0, len: 524288 },
      { t: 'mount', ro: false },
      { t: 'read', minor: 1, off: 0, len: 524288 },
      { t: 'reboot' },
      { t: 'reload', snap: true, minor: 2, bdev: V, cow: '/c0' },
      { t: 'mount', ro: false },
      { t: 'read', minor: 2, off: 0, len: 524288 },
      { t: 'crash' },
      { t: 'reload', snap: true, minor: 0, bdev: V, cow: '/c0' },
      { t: 'mount', ro: false },
      { t: 'destroy', minor: 0 },
    ]);
  });

  it('faults and EFBIG', () => {
    replay([
      { t: 'setup', minor: 0, bdev: V, cow: '/mnt/c0', mib: 0, cache: 0 },
      { t: 'autoExpand', minor: 0, step: 1, res: 0 },
      { t: 'write', off: 0, len: 262144, seed: 1 },
      { t: 'fault', kind: 'fallocate', errno: 28 },
      { t: 'write', off: 262144, len: 258560, seed: 2 },
      { t: 'read', minor: 0, off: 0, len: 524288 },
      { t: 'destroy', minor: 0 },
      { t: 'fault', kind: 'cowWrite', errno: 5 },
      { t: 'setup', minor: 0, bdev: V, cow: '/mnt/c1', mib: 1, cache: 0 },
      { t: 'write', off: 0, len: 1, seed: 1 },
      { t: 'expand', minor: 0, mib: 1 },
    ]);
  });
});
