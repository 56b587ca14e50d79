// SPDX-License-Identifier: GPL-2.0-only
/**
 * The update-img engine, reusable on any Backend (kernel or emulator):
 * bring a full image of the previous snapshot up to date by copying, from
 * the current snapshot device, every block the previous COW file marks as
 * changed.
 *
 * Validation comes first and is complete before the image is written:
 * snapshot device name, device state, COW header (magic, clean, index-only,
 * geometry), uuid and seqid against the snapshot, image size, and every index
 * entry. Then runs of adjacent changed blocks are copied with large I/Os.
 */
import { COW_BLOCK_SIZE, COW_HEADER_SIZE, FLAG_CLEAN, FLAG_INDEX_ONLY, SECTOR_SIZE, STATE_ACTIVE, STATE_SNAPSHOT } from '../abi/constants.js';
import { isDriverError } from '../driver/errors.js';
import type { Backend, BlockFile, DeviceInfo } from '../driver/types.js';
import { decodeEntries, decodeHeader, isFormatError, uuidHex, validateCowFile, type CowHeader } from '../format/index.js';

export type UpdateImgErrorCode =
  | 'OPEN_FAILED'
  | 'NOT_SNAPSHOT_DEVICE'
  | 'NO_SUCH_DEVICE'
  | 'NOT_ACTIVE_SNAPSHOT'
  | 'DEVICE_FAILED'
  | 'BAD_MAGIC'
  | 'BAD_COW_FILE'
  | 'UUID_MISMATCH'
  | 'SEQID_MISMATCH'
  | 'NOT_CLEAN'
  | 'NOT_INDEX_ONLY'
  | 'IMAGE_TOO_SMALL'
  | 'IO_ERROR';

/** A validation failure (nothing was written) or a fatal I/O error. */
export class UpdateImgError extends Error {
  constructor(
    readonly code: UpdateImgErrorCode,
    message: string,
    readonly hint = '',
    /** errno name when the cause was a system call, e.g. 'ENOENT'. */
    readonly errnoCode?: string,
  ) {
    super(message);
    this.name = 'UpdateImgError';
  }
}

export interface UpdateImgProgress {
  /** Bytes copied so far / to copy. */
  doneBytes: number;
  totalBytes: number;
  doneBlocks: number;
  totalBlocks: number;
  errorBlocks: number;
}

export interface UpdateImgOptions {
  snapshot: string;
  cow: string;
  image: string;
  /** Largest single read/write, in bytes (multiple of 4096; default 1 MiB). */
  maxIoBytes?: number;
  /** Index entries read per chunk (default 131072 = 1 MiB of index). */
  indexChunkEntries?: number;
  onProgress?: (p: UpdateImgProgress) => void;
  /** Called once validation passed, before the first write. */
  onValidated?: (v: UpdateImgValidation) => void;
}

export interface UpdateImgValidation {
  minor: number;
  snapshotBytes: number;
  /** Blocks of the snapshot (a trailing partial block counts). */
  snapshotBlocks: number;
  changedBlocks: number;
  header: CowHeader;
  info: DeviceInfo;
}

export interface UpdateImgResult extends UpdateImgValidation {
  copiedBlocks: number;
  errorBlocks: number;
  /** First failing block numbers (at most 16) with their errno names. */
  failures: { block: number; code: string }[];
  bytesCopied: number;
  /** Number of read+write pairs issued for the data. */
  ios: number;
  seconds: number;
}

const SNAPSHOT_DEVICE = /^\/dev\/datto(\d+)$/;

function errCode(e: unknown): string {
  if (isDriverError(e)) return e.code;
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : 'EIO';
}

function open(backend: Backend, path: string, what: string, rw: boolean): BlockFile {
  try {
    return rw ? backend.io.openReadWrite(path) : backend.io.openRead(path);
  } catch (e) {
    const code = errCode(e);
    const hint =
      code === 'ENOENT'
        ? what === 'image file'
          ? 'the image must already exist: it is the full copy of the previous snapshot'
          : `check the ${what} path`
        : code === 'EBUSY' && what === 'snapshot device'
          ? 'the device is dormant (its filesystem is unmounted): mount it read-write again'
          : '';
    throw new UpdateImgError('OPEN_FAILED', `cannot open ${what} ${path}: ${code}`, hint, code);
  }
}

/** Everything update-img checks before it writes; throws UpdateImgError. */
export function validateUpdate(
  backend: Backend,
  snap: BlockFile,
  cowFile: BlockFile,
  image: BlockFile,
  opts: UpdateImgOptions,
): UpdateImgValidation & { entriesOf: (first: number, count: number) => Float64Array } {
  let real: string;
  try {
    real = backend.io.realpath(opts.snapshot);
  } catch (e) {
    throw new UpdateImgError('OPEN_FAILED', `cannot resolve ${opts.snapshot}: ${errCode(e)}`, '', errCode(e));
  }
  const m = SNAPSHOT_DEVICE.exec(real);
  if (!m) {
    throw new UpdateImgError(
      'NOT_SNAPSHOT_DEVICE',
      `${opts.snapshot} does not appear to be a dattobd snapshot device (resolves to ${real})`,
      'give the snapshot device, e.g. /dev/datto0, not the original block device',
    );
  }
  const minor = Number(m[1]);
  let info: DeviceInfo;
  try {
    info = backend.ctl.info(minor);
  } catch (e) {
    const detail = isDriverError(e) && e.message !== `${e.op}: ${e.code}` ? e.message : errCode(e);
    const hint = (isDriverError(e) && e.hint) || 'is the dattobd module loaded and the snapshot set up (`dbdctl info`)?';
    throw new UpdateImgError('NO_SUCH_DEVICE', `cannot query dattobd minor ${minor}: ${detail}`, hint, errCode(e));
  }
  if (info.error !== 0) {
    throw new UpdateImgError('DEVICE_FAILED', `dattobd minor ${minor} has failed (error ${info.error}): its snapshot cannot be read`, 'destroy it and take a new full backup');
  }
  if ((info.state & (STATE_SNAPSHOT | STATE_ACTIVE)) !== (STATE_SNAPSHOT | STATE_ACTIVE)) {
    throw new UpdateImgError('NOT_ACTIVE_SNAPSHOT', `dattobd minor ${minor} is not an active snapshot (state ${info.state})`, 'run `dbdctl transition-to-snapshot <new cow file> <minor>` first');
  }

  const head = new Uint8Array(COW_HEADER_SIZE);
  const got = cowFile.read(head, 0);
  let header: CowHeader;
  try {
    header = decodeHeader(head.subarray(0, got));
  } catch (e) {
    throw new UpdateImgError('BAD_COW_FILE', `${opts.cow}: ${e instanceof Error ? e.message : String(e)}`, 'the file is not a .datto COW file');
  }
  const snapshotBytes = snap.size();
  const sizeSectors = Math.floor(snapshotBytes / SECTOR_SIZE);
  const v = validateCowFile(head.subarray(0, got), { sizeSectors, fileLength: cowFile.size() });
  const bad = v.errors.find((e) => e.code === 'BAD_MAGIC');
  if (bad) throw new UpdateImgError('BAD_MAGIC', `invalid magic number from cow file ${opts.cow}`, bad.hint);
  if (uuidHex(header.uuid) !== info.uuid) {
    throw new UpdateImgError(
      'UUID_MISMATCH',
      `cow file uuid does not match snapshot (${uuidHex(header.uuid)} vs ${info.uuid})`,
      'the COW file belongs to another backup series',
    );
  }
  if (header.seqid + 1 !== info.seqid) {
    throw new UpdateImgError(
      'SEQID_MISMATCH',
      `snapshot provided does not immediately follow the snapshot that created the cow file (cow file seqid ${header.seqid}, snapshot seqid ${info.seqid})`,
      `use the COW file with seqid ${info.seqid - 1}, the one replaced by the last transition-to-snapshot`,
    );
  }
  if ((header.flags & FLAG_CLEAN) === 0) {
    throw new UpdateImgError(
      'NOT_CLEAN',
      `cow file ${opts.cow} was not closed cleanly`,
      'it is still in use or the system crashed while it was; a new full backup is needed',
    );
  }
  if ((header.flags & FLAG_INDEX_ONLY) === 0) {
    throw new UpdateImgError(
      'NOT_INDEX_ONLY',
      `cow file ${opts.cow} is a snapshot file, not an incremental (index-only) one`,
      'give the COW file that was in incremental mode before the last transition-to-snapshot',
    );
  }
  const structural = v.errors.find((e) => e.code !== 'UNKNOWN_FLAGS');
  if (structural) throw new UpdateImgError('BAD_COW_FILE', `${opts.cow}: ${structural.message}`, structural.hint);
  if (image.size() < snapshotBytes) {
    throw new UpdateImgError(
      'IMAGE_TOO_SMALL',
      `image ${opts.image} is ${image.size()} bytes, the snapshot is ${snapshotBytes}`,
      'the image must be a full copy of the previous snapshot of this volume',
    );
  }

  const snapshotBlocks = Math.ceil(snapshotBytes / COW_BLOCK_SIZE);
  const entriesOf = (first: number, count: number): Float64Array => {
    const bytes = new Uint8Array(count * 8);
    const n = cowFile.read(bytes, COW_HEADER_SIZE + first * 8);
    try {
      return decodeEntries(bytes.subarray(0, n - (n % 8)), count);
    } catch (e) {
      throw new UpdateImgError('BAD_COW_FILE', `${opts.cow}: ${isFormatError(e) ? e.message : String(e)} (entries from block ${first})`, 'the index is corrupted');
    }
  };
  // Count (and thereby check) every index entry before anything is written.
  const chunk = opts.indexChunkEntries ?? 131072;
  let changedBlocks = 0;
  for (let first = 0; first < snapshotBlocks; first += chunk) {
    const e = entriesOf(first, Math.min(chunk, snapshotBlocks - first));
    for (let i = 0; i < e.length; i++) if (e[i] !== 0) changedBlocks++;
  }
  return { minor, snapshotBytes, snapshotBlocks, changedBlocks, header, info, entriesOf };
}

/** Validate, then copy every changed block; throws UpdateImgError if validation fails. */
export function updateImg(backend: Backend, opts: UpdateImgOptions): UpdateImgResult {
  const maxIo = opts.maxIoBytes ?? 1 << 20;
  if (maxIo < COW_BLOCK_SIZE || maxIo % COW_BLOCK_SIZE !== 0) throw new RangeError('maxIoBytes must be a positive multiple of 4096');
  const maxRun = maxIo / COW_BLOCK_SIZE;
  const files: BlockFile[] = [];
  try {
    const snap = open(backend, opts.snapshot, 'snapshot device', false);
    files.push(snap);
    const cowFile = open(backend, opts.cow, 'cow file', false);
    files.push(cowFile);
    const image = open(backend, opts.image, 'image file', true);
    files.push(image);

    const v = validateUpdate(backend, snap, cowFile, image, opts);
    opts.onValidated?.(v);
    const start = performance.now();
    const totalBytes = Math.min(v.changedBlocks * COW_BLOCK_SIZE, v.snapshotBytes);
    const progress: UpdateImgProgress = { doneBytes: 0, totalBytes, doneBlocks: 0, totalBlocks: v.changedBlocks, errorBlocks: 0 };
    const failures: { block: number; code: string }[] = [];
    const buf = new Uint8Array(maxIo);
    let copied = 0;
    let ios = 0;

    const failBlock = (block: number, code: string) => {
      progress.errorBlocks++;
      if (failures.length < 16) failures.push({ block, code });
    };

    /** Copy blocks [first, first+count) with one read and one write; false on error. */
    const copyRange = (first: number, count: number): string | undefined => {
      const off = first * COW_BLOCK_SIZE;
      const len = Math.min(count * COW_BLOCK_SIZE, v.snapshotBytes - off);
      const view = buf.subarray(0, len);
      ios++;
      try {
        const n = snap.read(view, off);
        if (n !== len) return 'EIO';
        image.write(view, off);
      } catch (e) {
        return errCode(e);
      }
      progress.doneBytes += len;
      return undefined;
    };

    const copyRun = (first: number, count: number) => {
      const err = copyRange(first, count);
      if (err === undefined) {
        copied += count;
      } else if (count === 1) {
        failBlock(first, err);
      } else {
        // Isolate the failing blocks.
        for (let b = first; b < first + count; b++) {
          const e = copyRange(b, 1);
          if (e === undefined) copied++;
          else failBlock(b, e);
        }
      }
      progress.doneBlocks += count;
      opts.onProgress?.({ ...progress });
    };

    const chunk = opts.indexChunkEntries ?? 131072;
    let runStart = -1;
    let runLen = 0;
    for (let first = 0; first < v.snapshotBlocks; first += chunk) {
      const e = v.entriesOf(first, Math.min(chunk, v.snapshotBlocks - first));
      for (let i = 0; i < e.length; i++) {
        if (e[i] === 0) continue;
        const b = first + i;
        if (runLen > 0 && b === runStart + runLen && runLen < maxRun) {
          runLen++;
          continue;
        }
        if (runLen > 0) copyRun(runStart, runLen);
    if (ios > 0 && image.sync) {
      try {
        image.sync();
      } catch (e) {
        throw new UpdateImgError('IO_ERROR', `flushing image ${opts.image} to disk failed: ${errCode(e)}`, 'the image may be incomplete', errCode(e));
      }
    }
        runStart = b;
        runLen = 1;
      }
    }
    if (runLen > 0) copyRun(runStart, runLen);
    if (ios > 0 && image.sync) {
      try {
        image.sync();
      } catch (e) {
        throw new UpdateImgError('IO_ERROR', `flushing image ${opts.image} to disk failed: ${errCode(e)}`, 'the image may be incomplete', errCode(e));
      }
    }

    return {
      ...stripEntries(v),
      copiedBlocks: copied,
      errorBlocks: progress.errorBlocks,
      failures,
      bytesCopied: progress.doneBytes,
      ios,
      seconds: (performance.now() - start) / 1000,
    };
  } finally {
    for (const f of files.reverse()) f.close();
  }
}

function stripEntries(v: UpdateImgValidation & { entriesOf?: unknown }): UpdateImgValidation {
  const { entriesOf: _drop, ...rest } = v;
  return rest;
}
