// SPDX-License-Identifier: GPL-2.0-only
/**
 * Index entries (SPEC §2.4): one little-endian u64 per 4 KiB block at file
 * offset 4096 + 8*b. 0 = unchanged, 1 = changed (incremental filler),
 * >= first_data_blk = original data stored at value*4096.
 */
import { COW_HEADER_SIZE } from '../abi/constants.js';
import { FormatError } from './errors.js';

export const INDEX_FILLER = 1;

/** File offset of the index entry of block `b`. */
export function indexEntryOffset(block: number): number {
  if (!Number.isSafeInteger(block) || block < 0) {
    throw new FormatError('BAD_ARGUMENT', `block number must be a non-negative integer, got ${block}`);
  }
  return COW_HEADER_SIZE + 8 * block;
}

/**
 * Read the entry of block `b` from the bytes of a whole file (or of a buffer
 * starting at `base` file offset). Returns 0 for an entry past the end of the
 * bytes (a short read of a truncated file reads as unchanged).
 */
export function readIndexEntry(file: Uint8Array, block: number, base = 0): number {
  const off = indexEntryOffset(block) - base;
  if (off < 0) throw new FormatError('BAD_ARGUMENT', `block ${block} lies before the buffer start`);
  if (off + 8 > file.length) return 0;
  const v = new DataView(file.buffer, file.byteOffset + off, 8).getBigUint64(0, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError('VALUE_TOO_LARGE', `index entry of block ${block} is ${v}, beyond 2^53-1`, 'the index is corrupted');
  }
  return Number(v);
}

/** Write the entry of block `b` into a buffer holding the file from `base`. */
export function writeIndexEntry(file: Uint8Array, block: number, value: number, base = 0): void {
  const off = indexEntryOffset(block) - base;
  if (off < 0 || off + 8 > file.length) {
    throw new FormatError('BAD_ARGUMENT', `index entry of block ${block} lies outside the buffer`);
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new FormatError('BAD_ARGUMENT', `index value must be a non-negative safe integer, got ${value}`);
  }
  new DataView(file.buffer, file.byteOffset + off, 8).setBigUint64(0, BigInt(value), true);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decode `count` consecutive entries from raw index bytes (entry 0 at byte 0). */
export function decodeEntries(indexBytes: Uint8Array, count = Math.floor(indexBytes.length / 8)): Float64Array {
  const out = new Float64Array(count);
  const n = Math.min(count, Math.floor(indexBytes.length / 8));
  if (LITTLE_ENDIAN && indexBytes.byteOffset % 4 === 0) {
    const w = new Uint32Array(indexBytes.buffer, indexBytes.byteOffset, n * 2);
    for (let i = 0; i < n; i++) {
      const hi = w[2 * i + 1] ?? 0;
      if (hi > 0x1fffff) throw new FormatError('VALUE_TOO_LARGE', `index entry ${i} is beyond 2^53-1`, 'the index is corrupted');
      out[i] = hi * 0x100000000 + (w[2 * i] ?? 0);
    }
    return out;
  }
  const dv = new DataView(indexBytes.buffer, indexBytes.byteOffset, n * 8);
  for (let i = 0; i < n; i++) {
    const lo = dv.getUint32(i * 8, true);
    const hi = dv.getUint32(i * 8 + 4, true);
    if (hi > 0x1fffff) {
      throw new FormatError('VALUE_TOO_LARGE', `index entry ${i} is beyond 2^53-1`, 'the index is corrupted');
    }
    out[i] = hi * 0x100000000 + lo;
  }
  return out;
}

/** Encode entries into raw index bytes. */
export function encodeEntries(entries: ArrayLike<number>, out = new Uint8Array(entries.length * 8)): Uint8Array {
  if (out.length < entries.length * 8) throw new FormatError('BAD_ARGUMENT', 'output buffer too small for the entries');
  if (LITTLE_ENDIAN && out.byteOffset % 4 === 0) {
    const w = new Uint32Array(out.buffer, out.byteOffset, entries.length * 2);
    for (let i = 0; i < entries.length; i++) {
      const v = entries[i] ?? 0;
      if (v === 0) {
        w[2 * i] = 0;
        w[2 * i + 1] = 0;
        continue;
      }
      if (!Number.isSafeInteger(v) || v < 0) throw new FormatError('BAD_ARGUMENT', `index value ${i} is invalid: ${v}`);
      w[2 * i] = v % 0x100000000;
      w[2 * i + 1] = Math.floor(v / 0x100000000);
    }
    return out;
  }
  const dv = new DataView(out.buffer, out.byteOffset, entries.length * 8);
  for (let i = 0; i < entries.length; i++) {
    const v = entries[i] ?? 0;
    if (!Number.isSafeInteger(v) || v < 0) throw new FormatError('BAD_ARGUMENT', `index value ${i} is invalid: ${v}`);
    dv.setUint32(i * 8, v % 0x100000000, true);
    dv.setUint32(i * 8 + 4, Math.floor(v / 0x100000000), true);
  }
  return out;
}

/** Blocks whose entry is non-zero (what update-img copies), from whole-file bytes. */
export function changedBlocks(file: Uint8Array, blockCount: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < blockCount; b++) if (readIndexEntry(file, b) !== 0) out.push(b);
  return out;
}
