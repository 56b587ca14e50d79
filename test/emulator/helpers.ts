// SPDX-License-Identifier: GPL-2.0-only
import { Emulator } from '../../emulator/index.js';

export const MiB = 1048576;

/** A fresh emulator with one mounted 8 MiB volume /dev/sda1 on /mnt. */
export function world(o: { sizeBytes?: number; offset?: number; free?: number; max?: number } = {}): Emulator {
  const e = new Emulator({ maxSnapDevices: o.max ?? 4 });
  e.addVolume({ path: '/dev/sda1', sizeBytes: o.sizeBytes ?? 8 * MiB, partitionOffsetSectors: o.offset ?? 0, fsFreeBytes: o.free ?? 64 * MiB });
  e.mount('/dev/sda1', '/mnt');
  return e;
}

export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export function errnoOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'OK';
}

export function setup(e: Emulator, cow = '/mnt/cow1', mib = 2, minor = 0): void {
  e.ctl.setupSnapshot({ minor, bdev: '/dev/sda1', cow, fallocatedSpace: mib, cacheSize: 0 });
}

/** Compare byte arrays fast; on mismatch report the first differing offset (no huge diffs). */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

export function expectBytes(actual: Uint8Array, expected: Uint8Array, what = 'bytes'): void {
  const d = firstDiff(actual, expected);
  if (d >= 0) {
    throw new Error(`${what} differ at offset ${d} (lengths ${actual.length}/${expected.length}; got ${actual[d]}, want ${expected[d]})`);
  }
}
