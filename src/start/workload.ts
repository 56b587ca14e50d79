// SPDX-License-Identifier: GPL-2.0-only
/** A seeded write workload for the emulated volume (writes, discards, write-zeroes). */
import type { Emulator } from '../../emulator/index.js';

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    // xorshift32
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s / 4294967296;
  }
  int(max: number): number {
    return Math.floor(this.next() * max);
  }
  bytes(n: number): Uint8Array {
    const w = new Uint32Array(Math.ceil(n / 4));
    for (let i = 0; i < w.length; i++) w[i] = this.int(4294967296);
    return new Uint8Array(w.buffer, 0, n);
  }
}

export interface WorkloadStats {
  writes: number;
  discards: number;
  zeroes: number;
  bytes: number;
}

/**
 * Issue `ops` requests on `bdev`: mostly writes of 512 B – maxSectors*512 at any
 * alignment, with a hot region (filesystem metadata-like) and some discards
 * and write-zeroes.
 */
export function runWorkload(emu: Emulator, bdev: string, sizeBytes: number, rng: Rng, ops: number, maxSectors = 32): WorkloadStats {
  const st: WorkloadStats = { writes: 0, discards: 0, zeroes: 0, bytes: 0 };
  for (let i = 0; i < ops; i++) {
    const hot = rng.next() < 0.3;
    const len = 512 * (1 + rng.int(maxSectors));
    const span = hot ? Math.min(sizeBytes, 1 << 20) : sizeBytes;
    const off = Math.min(rng.int(span), sizeBytes - len);
    const kind = rng.next();
    if (kind < 0.9) {
      emu.write(bdev, off, rng.bytes(len));
      st.writes++;
    } else if (kind < 0.95) {
      emu.discard(bdev, off, len);
      st.discards++;
    } else {
      emu.writeZeroes(bdev, off, len);
      st.zeroes++;
    }
    st.bytes += len;
  }
  return st;
}
