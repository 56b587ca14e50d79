// SPDX-License-Identifier: GPL-2.0-only
/**
 * Validation of a `.datto` file: the checks the driver makes on reload
 * (SPEC §2.10) plus structural checks that tools (update-img) want.
 * Returns every problem found as a typed FormatError; never throws anything
 * else, whatever the bytes.
 */
import {
  COW_BLOCK_SIZE,
  COW_MAGIC,
  COW_VERSION_CHANGED_BLOCKS,
  FLAG_CLEAN,
  FLAG_INDEX_ONLY,
  FLAG_VMALLOC_UPPER,
} from '../abi/constants.js';
import { readIndexEntry } from './cow-index.js';
import { FormatError, isFormatError } from './errors.js';
import { geometry } from './geometry.js';
import { decodeHeader, type CowHeader } from './header.js';

export interface ValidateOptions {
  /** Size of the traced partition in sectors; enables geometry checks. */
  sizeSectors?: number;
  /** Expected mode: snapshot files have INDEX_ONLY clear, incremental ones set. */
  expect?: 'snapshot' | 'incremental';
  /** Require the CLEAN flag (reload, update-img). */
  requireClean?: boolean;
  /** Real length of the file, if `bytes` holds only a prefix. Default: bytes.length. */
  fileLength?: number;
  /** Check every index entry present in `bytes` (needs sizeSectors). */
  checkIndex?: boolean;
}

export interface ValidateResult {
  header: CowHeader | undefined;
  errors: FormatError[];
  ok: boolean;
}

const KNOWN_FLAGS = FLAG_CLEAN | FLAG_INDEX_ONLY | FLAG_VMALLOC_UPPER;

function wrapUnexpected(e: unknown): FormatError {
  if (isFormatError(e)) return e;
  return new FormatError('BAD_ARGUMENT', `validator failed: ${String(e)}`);
}

export function validateCowFile(bytes: Uint8Array, opts: ValidateOptions = {}): ValidateResult {
  const errors: FormatError[] = [];
  let header: CowHeader | undefined;
  try {
    header = decodeHeader(bytes);
  } catch (e) {
    errors.push(wrapUnexpected(e));
    return { header: undefined, errors, ok: false };
  }
  try {
    checkHeader(header, bytes, opts, errors);
  } catch (e) {
    errors.push(wrapUnexpected(e));
  }
  return { header, errors, ok: errors.length === 0 };
}

function checkHeader(h: CowHeader, bytes: Uint8Array, opts: ValidateOptions, errors: FormatError[]): void {
  const push = (code: ConstructorParameters<typeof FormatError>[0], msg: string, hint: string): void => {
    errors.push(new FormatError(code, msg, hint));
  };
  if (h.magic !== COW_MAGIC) {
    push('BAD_MAGIC', `invalid magic number ${h.magic} (expected ${COW_MAGIC})`, 'the file is not a .datto COW file');
    return; // nothing else is meaningful
  }
  if (h.version > COW_VERSION_CHANGED_BLOCKS) {
    push('UNKNOWN_VERSION', `unknown COW format version ${h.version}`, 'the file was written by a newer driver');
  }
  if ((h.flags & ~KNOWN_FLAGS) !== 0) {
    push('UNKNOWN_FLAGS', `unknown flag bits 0x${(h.flags & ~KNOWN_FLAGS).toString(16)}`, 'the header is corrupted');
  }
  if (opts.requireClean && (h.flags & FLAG_CLEAN) === 0) {
    push(
      'NOT_CLEAN',
      'cow file not left in clean state',
      'the file was in use when the system stopped (crash or unclean shutdown); take a new full backup',
    );
  }
  const indexOnly = (h.flags & FLAG_INDEX_ONLY) !== 0;
  if (opts.expect === 'snapshot' && indexOnly) {
    push('MODE_MISMATCH', 'cow file is index-only (incremental) but a snapshot file was expected', 'use reload-incremental for this file');
  }
  if (opts.expect === 'incremental' && !indexOnly) {
    push('MODE_MISMATCH', 'cow file is a snapshot file but an index-only (incremental) file was expected', 'use reload-snapshot for this file');
  }
  const fileLength = opts.fileLength ?? bytes.length;
  if (h.fsize > fileLength) {
    push('TRUNCATED', `header says the file is ${h.fsize} bytes, it has ${fileLength}`, 'the file was truncated or copied incompletely');
  }
  if (opts.sizeSectors === undefined) {
    if (h.fpos > Math.ceil(h.fsize / COW_BLOCK_SIZE) && !indexOnly) {
      push('FPOS_BEYOND_FSIZE', `next data block ${h.fpos} lies beyond the file size ${h.fsize}`, 'the header is corrupted');
    }
    return;
  }
  const g = geometry(opts.sizeSectors);
  if (h.fsize < g.dataOffset) {
    push('FSIZE_BEFORE_DATA', `file size ${h.fsize} is smaller than the index end ${g.dataOffset}`, 'the file does not belong to a device of this size');
  }
  if (h.fpos < g.firstDataBlk) {
    push('FPOS_BEFORE_DATA', `next data block ${h.fpos} lies inside the index (first data block ${g.firstDataBlk})`, 'the header is corrupted or the device was resized');
  }
  if (indexOnly) {
    if (h.fsize > g.dataOffset) {
      push('INDEX_ONLY_WITH_DATA', `index-only file has ${h.fsize - g.dataOffset} bytes of data area`, 'the transition to incremental did not truncate the file');
    }
  } else if (h.fpos > Math.ceil(h.fsize / COW_BLOCK_SIZE)) {
    push('FPOS_BEYOND_FSIZE', `next data block ${h.fpos} lies beyond the file size ${h.fsize}`, 'the header is corrupted');
  }
  if (opts.checkIndex) {
    const blocks = Math.ceil(opts.sizeSectors / 8);
    let bad = 0;
    let first = -1;
    for (let b = 0; b < blocks; b++) {
      const v = readIndexEntry(bytes, b);
      if (v === 0 || v === 1) continue;
      const invalid = indexOnly ? v < g.firstDataBlk : v < g.firstDataBlk || v >= h.fpos;
      if (invalid) {
        bad++;
        if (first < 0) first = b;
      }
    }
    if (bad > 0) {
      push('INDEX_ENTRY_INVALID', `${bad} index entries point outside the data area (first: block ${first})`, 'the index is corrupted');
    }
  }
}

/** Throw the first problem found, or return the header. */
export function assertValidCowFile(bytes: Uint8Array, opts: ValidateOptions = {}): CowHeader {
  const r = validateCowFile(bytes, opts);
  const first = r.errors[0];
  if (first) throw first;
  if (!r.header) throw new FormatError('TRUNCATED', 'no header');
  return r.header;
}
