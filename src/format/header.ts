// SPDX-License-Identifier: GPL-2.0-only
/** struct cow_header: 64 bytes, little-endian (SPEC §2.2–2.3). */
import {
  COW_HEADER_BYTES,
  COW_MAGIC,
  COW_UUID_SIZE,
  COW_VERSION_CHANGED_BLOCKS,
  FLAG_CLEAN,
  FLAG_INDEX_ONLY,
  FLAG_VMALLOC_UPPER,
} from '../abi/constants.js';
import { FIELD_OFFSET } from '../abi/ioctl.js';
import { FormatError } from './errors.js';

export interface CowHeader {
  magic: number;
  flags: number;
  /** Next free data block number. */
  fpos: number;
  /** COW file size in bytes (header + index + data). */
  fsize: number;
  seqid: number;
  /** 16 raw bytes. */
  uuid: Uint8Array;
  version: number;
  nrChangedBlocks: number;
}

const OFF = FIELD_OFFSET.cow_header;

export function isClean(h: CowHeader): boolean {
  return (h.flags & FLAG_CLEAN) !== 0;
}
export function isIndexOnly(h: CowHeader): boolean {
  return (h.flags & FLAG_INDEX_ONLY) !== 0;
}
export function hasVmallocUpper(h: CowHeader): boolean {
  return (h.flags & FLAG_VMALLOC_UPPER) !== 0;
}

/** A fresh header as written at creation (dirty, version 1). */
export function newHeader(o: { fpos: number; fsize: number; seqid: number; uuid: Uint8Array }): CowHeader {
  return {
    magic: COW_MAGIC,
    flags: 0,
    fpos: o.fpos,
    fsize: o.fsize,
    seqid: o.seqid,
    uuid: Uint8Array.from(o.uuid),
    version: COW_VERSION_CHANGED_BLOCKS,
    nrChangedBlocks: 0,
  };
}

function readU64(dv: DataView, off: number, field: string): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError(
      'VALUE_TOO_LARGE',
      `cow header field ${field} is ${v}, beyond 2^53-1`,
      'the file is not a .datto COW file or is corrupted',
    );
  }
  return Number(v);
}

function writeU64(dv: DataView, off: number, v: number, field: string): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new FormatError('BAD_ARGUMENT', `cow header field ${field} must be a non-negative safe integer, got ${v}`);
  }
  dv.setBigUint64(off, BigInt(v), true);
}

/** Decode the first 64 bytes. Throws FormatError (TRUNCATED, VALUE_TOO_LARGE) only. */
export function decodeHeader(bytes: Uint8Array): CowHeader {
  if (bytes.length < COW_HEADER_BYTES) {
    throw new FormatError(
      'TRUNCATED',
      `cow header needs ${COW_HEADER_BYTES} bytes, got ${bytes.length}`,
      'the file is too short to be a .datto COW file',
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, COW_HEADER_BYTES);
  return {
    magic: dv.getUint32(OFF.magic, true),
    flags: dv.getUint32(OFF.flags, true),
    fpos: readU64(dv, OFF.fpos, 'fpos'),
    fsize: readU64(dv, OFF.fsize, 'fsize'),
    seqid: readU64(dv, OFF.seqid, 'seqid'),
    uuid: bytes.slice(OFF.uuid, OFF.uuid + COW_UUID_SIZE),
    version: readU64(dv, OFF.version, 'version'),
    nrChangedBlocks: readU64(dv, OFF.nr_changed_blocks, 'nr_changed_blocks'),
  };
}

/** Encode into a new 64-byte buffer (or into `out` at offset 0). */
export function encodeHeader(h: CowHeader, out?: Uint8Array): Uint8Array {
  const buf = out ?? new Uint8Array(COW_HEADER_BYTES);
  if (buf.length < COW_HEADER_BYTES) {
    throw new FormatError('BAD_ARGUMENT', `output buffer must hold ${COW_HEADER_BYTES} bytes`);
  }
  if (h.uuid.length !== COW_UUID_SIZE) {
    throw new FormatError('BAD_ARGUMENT', `uuid must be ${COW_UUID_SIZE} bytes, got ${h.uuid.length}`);
  }
  for (const [name, v] of [['magic', h.magic], ['flags', h.flags]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new FormatError('BAD_ARGUMENT', `cow header field ${name} must be a u32, got ${v}`);
    }
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, COW_HEADER_BYTES);
  dv.setUint32(OFF.magic, h.magic, true);
  dv.setUint32(OFF.flags, h.flags, true);
  writeU64(dv, OFF.fpos, h.fpos, 'fpos');
  writeU64(dv, OFF.fsize, h.fsize, 'fsize');
  writeU64(dv, OFF.seqid, h.seqid, 'seqid');
  buf.set(h.uuid, OFF.uuid);
  writeU64(dv, OFF.version, h.version, 'version');
  writeU64(dv, OFF.nr_changed_blocks, h.nrChangedBlocks, 'nr_changed_blocks');
  return buf;
}

/** 32 lowercase hex digits, no dashes (as /proc prints it). */
export function uuidHex(uuid: Uint8Array): string {
  let s = '';
  for (const b of uuid) s += b.toString(16).padStart(2, '0');
  return s;
}

export function uuidFromHex(hex: string): Uint8Array {
  if (!/^[0-9a-f]{32}$/.test(hex)) {
    throw new FormatError('BAD_ARGUMENT', `uuid must be 32 lowercase hex digits, got ${JSON.stringify(hex)}`);
  }
  const out = new Uint8Array(COW_UUID_SIZE);
  for (let i = 0; i < COW_UUID_SIZE; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A random RFC-4122 version-4 uuid, as generate_random_uuid makes. */
export function randomUuid(rand: () => number = Math.random): Uint8Array {
  const u = new Uint8Array(COW_UUID_SIZE);
  for (let i = 0; i < COW_UUID_SIZE; i++) u[i] = Math.floor(rand() * 256) & 0xff;
  u[6] = ((u[6] ?? 0) & 0x0f) | 0x40;
  u[8] = ((u[8] ?? 0) & 0x3f) | 0x80;
  return u;
}

/**
 * Does a snapshot file's non-zero index entry point at saved data
 * (kernel/core dbd_index_entry_saved)? firstDataBlk <= value < fpos; any
 * other entry would read the header, the index or later data as the block.
 */
export function indexEntrySaved(value: number, geo: { firstDataBlk: number }, fpos: number): boolean {
  return value >= geo.firstDataBlk && value < fpos;
}

/**
 * Reload / reopen: does the header fit the device geometry and the file's
 * size? (kernel/core dbd_header_check_layout.) Returns why not, or null.
 * The index must be in the file; for a snapshot file appends must not land
 * on the header or the index and every saved block must be in the file:
 * firstDataBlk <= fpos <= ceil(fsize / 4096) and fpos * 4096 <= fileBytes.
 */
export function headerLayoutError(
  h: CowHeader,
  geo: { dataOffset: number; firstDataBlk: number },
  indexOnly: boolean,
  fileBytes: number,
): string | null {
  if (fileBytes < geo.dataOffset) return `cow file is ${fileBytes} bytes, shorter than its index (${geo.dataOffset})`;
  if (indexOnly) return null;
  if (h.fpos < geo.firstDataBlk) return `cow file's next data block ${h.fpos} lies in its index (first data block ${geo.firstDataBlk})`;
  if (h.fpos > Math.ceil(h.fsize / 4096)) return `cow file's next data block ${h.fpos} is past its size ${h.fsize}`;
  if (h.fpos > Math.floor(fileBytes / 4096)) return `cow file's saved data (${h.fpos} blocks) is past its end (${fileBytes} bytes)`;
  return null;
}
