// SPDX-License-Identifier: GPL-2.0-only
/** Bit-for-bit comparison of a backup image with a snapshot device. */
import type { DriverIo } from '../driver/types.js';

export interface Mismatch {
  /** First differing byte offset, or -1 if identical. */
  firstByte: number;
  /** Number of differing 4 KiB blocks. */
  blocks: number;
}

function diffBlocks(a: Uint8Array, b: Uint8Array, base: number, out: Mismatch): void {
  for (let off = 0; off < a.length; off += 4096) {
    const x = Buffer.from(a.buffer, a.byteOffset + off, Math.min(4096, a.length - off));
    const y = Buffer.from(b.buffer, b.byteOffset + off, Math.min(4096, b.length - off));
    if (!x.equals(y)) {
      out.blocks++;
      if (out.firstByte < 0) {
        let i = 0;
        while (x[i] === y[i]) i++;
        out.firstByte = base + off + i;
      }
    }
  }
}

/** Compare `size` bytes of two paths through DriverIo, 1 MiB at a time. */
export function compareFiles(io: DriverIo, a: string, b: string, size: number): Mismatch {
  const fa = io.openRead(a);
  const fb = io.openRead(b);
  const out: Mismatch = { firstByte: -1, blocks: 0 };
  try {
    const ba = new Uint8Array(1 << 20);
    const bb = new Uint8Array(1 << 20);
    for (let off = 0; off < size; off += ba.length) {
      const n = Math.min(ba.length, size - off);
      fa.read(ba.subarray(0, n), off);
      fb.read(bb.subarray(0, n), off);
      diffBlocks(ba.subarray(0, n), bb.subarray(0, n), off, out);
    }
  } finally {
    fa.close();
    fb.close();
  }
  return out;
}

/** Compare a path with expected bytes. */
export function compareWith(io: DriverIo, path: string, expected: Uint8Array): Mismatch {
  const f = io.openRead(path);
  const out: Mismatch = { firstByte: -1, blocks: 0 };
  try {
    const buf = new Uint8Array(1 << 20);
    for (let off = 0; off < expected.length; off += buf.length) {
      const n = Math.min(buf.length, expected.length - off);
      f.read(buf.subarray(0, n), off);
      diffBlocks(buf.subarray(0, n), expected.subarray(off, off + n), off, out);
    }
  } finally {
    f.close();
  }
  return out;
}

/** dd-style full copy of `src` into an existing `dst`, calling `between` after each chunk. */
export function fullCopy(io: DriverIo, src: string, dst: string, size: number, between?: (doneBytes: number) => void): void {
  const s = io.openRead(src);
  const d = io.openReadWrite(dst);
  try {
    const buf = new Uint8Array(1 << 20);
    for (let off = 0; off < size; off += buf.length) {
      const n = Math.min(buf.length, size - off);
      s.read(buf.subarray(0, n), off);
      d.write(buf.subarray(0, n), off);
      between?.(off + n);
    }
  } finally {
    s.close();
    d.close();
  }
}
