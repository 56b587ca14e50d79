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
import * as fs from 'node:fs';
import * as os from 'node:os';
import { COW_BLOCK_SIZE, COW_HEADER_SIZE, FLAG_CLEAN, FLAG_INDEX_ONLY, SECTOR_SIZE, STATE_ACTIVE, STATE_SNAPSHOT } from '../abi/constants.js';
import { isDriverError } from '../driver/errors.js';
import type { Backend, BlockFile, DeviceInfo } from '../driver/types.js';
import { decodeEntries, decodeHeader, isFormatError, uuidHex, validateCowFile, type CowHeader } from '../format/index.js';
import type { NativeCopyWindows } from '../native/index.js';
import { CopyPlanner, planWindowAt, planWindows, type CopyWindow, type PlanBatch, type RunSource } from './copy-plan.js';

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
  /**
   * Runs of changed blocks kept from validation for the copy (default
   * 1048576, 16 MiB); an index with more runs is read a second time by the
   * copy instead. 0: always read it again.
   */
  cachedRuns?: number;
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
  /** The lowest failed block numbers (at most 16) with their errno names, in block order. */
  failures: { block: number; code: string }[];
  bytesCopied: number;
  /** Bytes read from the snapshot device (more than bytesCopied when small gaps were read over). */
  bytesRead: number;
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
): UpdateImgValidation & { entriesOf: (first: number, count: number) => Float64Array; runs?: Float64Array } {
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
  /** The raw entries of blocks [first, first + count) (fewer where the file ends). */
  const rawOf = (first: number, count: number): Uint8Array => {
    const bytes = new Uint8Array(count * 8);
    const n = cowFile.read(bytes, COW_HEADER_SIZE + first * 8);
    return bytes.subarray(0, n - (n % 8));
  };
  const decodeAt = (bytes: Uint8Array, first: number, count: number): Float64Array => {
    try {
      return decodeEntries(bytes, count);
    } catch (e) {
      // name the block: the codec counts entries from the start of what it decoded
      const what = isFormatError(e) ? e.message.replace(/^index entry (\d+)/, (_m, i: string) => `index entry of block ${first + Number(i)}`) : String(e);
      throw new UpdateImgError('BAD_COW_FILE', `${opts.cow}: ${what}`, 'the index is corrupted');
    }
  };
  const entriesOf = (first: number, count: number): Float64Array => decodeAt(rawOf(first, count), first, count);
  // Count (and thereby check) every index entry before anything is written, and keep the
  // runs of changed blocks while they are few enough: the copy then needs no second pass.
  const chunk = opts.indexChunkEntries ?? 131072;
  let changedBlocks = 0;
  const cacheMax = opts.cachedRuns ?? CACHED_RUNS_MAX;
  let runs: Float64Array | undefined = new Float64Array(Math.min(1024, 2 * cacheMax));
  let nruns = 0;
  let runEnd = -1;
  const visit = (b: number): void => {
    changedBlocks++;
    if (!runs) return;
    if (b === runEnd) {
      runs[2 * nruns - 1]!++;
      runEnd++;
      return;
    }
    if (nruns === cacheMax) runs = undefined;
    else if (2 * nruns === runs.length) runs = grown(runs, 2 * cacheMax);
    if (!runs) return;
    runs[2 * nruns] = b;
    runs[2 * nruns + 1] = 1;
    nruns++;
    runEnd = b + 1;
  };
  for (let first = 0; first < snapshotBlocks; first += chunk) {
    forEachChanged(rawOf(first, Math.min(chunk, snapshotBlocks - first)), first, decodeAt, visit);
  }
  return { minor, snapshotBytes, snapshotBlocks, changedBlocks, header, info, entriesOf, ...(runs ? { runs: runs.subarray(0, 2 * nruns) } : {}) };
}

const ZEROS = new Uint8Array(4096);

/**
 * visit(block) for every non-zero entry of raw index bytes whose first entry
 * is block `first`, in block order. Most of an index is zeros: all-zero pages
 * (512 entries) and then all-zero granules (64) are skipped with a native
 * comparison, and only the granules holding changed blocks are decoded (and
 * thereby checked) in JavaScript; a loop over every entry costs 10–30 ms per
 * 16384 entries under emulation, before the JIT has compiled it.
 */
function forEachChanged(
  bytes: Uint8Array,
  first: number,
  decodeAt: (bytes: Uint8Array, first: number, count: number) => Float64Array,
  visit: (block: number) => void,
): void {
  for (let p = 0; p < bytes.length; p += 4096) {
    const page = bytes.subarray(p, p + 4096);
    if (Buffer.compare(page, ZEROS.subarray(0, page.length)) === 0) continue;
    for (let g = 0; g < page.length; g += 512) {
      const granule = page.subarray(g, g + 512);
      if (Buffer.compare(granule, ZEROS.subarray(0, granule.length)) === 0) continue;
      const base = first + (p + g) / 8;
      const e = decodeAt(granule, base, granule.length / 8);
      for (let i = 0; i < e.length; i++) if (e[i] !== 0) visit(base + i);
    }
  }
}

/** Runs of changed blocks validation keeps for the copy (16 MiB); beyond, the copy reads the index again. */
const CACHED_RUNS_MAX = 1 << 20;

function grown(a: Float64Array, max: number): Float64Array {
  const b = new Float64Array(Math.min(a.length * 2, max));
  b.set(a);
  return b;
}

type Validated = ReturnType<typeof validateUpdate>;

/**
 * Default number of copies in flight (each holds a buffer of up to maxIoBytes):
 * four per CPU, from 4 to 16. A copy is a thread that mostly waits for its read
 * or write, but every I/O also costs CPU time in the kernel, and on a small
 * virtual machine more threads than this only compete for it: in a 2-vCPU guest,
 * 8 copies took less time than 16 in 59 of 88 paired runs (bench/RESULTS.md).
 */
export function defaultParallel(cpus: number = os.availableParallelism()): number {
  return Math.max(4, Math.min(16, 4 * Math.max(1, Math.floor(cpus))));
}
/** defaultParallel() on this machine. */
export const DEFAULT_PARALLEL = defaultParallel();
/** Bound on the buffers of the copies in flight: parallel × maxIoBytes. */
const MAX_INFLIGHT_BYTES = 64 << 20;

/**
 * Positional asynchronous I/O on one open file. read() and write() transfer
 * the whole buffer (read returns less only at end of file).
 */
export interface AsyncBlockFile {
  read(buf: Uint8Array, offset: number): Promise<number>;
  write(buf: Uint8Array, offset: number): Promise<number>;
  sync?(): Promise<void>;
  close(): Promise<void>;
}

/** Opens the snapshot device and the image a second time for the data copy. */
export interface AsyncDataIo {
  openRead(path: string): Promise<AsyncBlockFile>;
  openReadWrite(path: string): Promise<AsyncBlockFile>;
}

export interface UpdateImgAsyncOptions extends UpdateImgOptions {
  /**
   * Copies kept in flight at once (default DEFAULT_PARALLEL). The cost of a scattered
   * 4 KiB block is the latency of its read: several outstanding reads hide it.
   */
  parallel?: number;
  /**
   * Asynchronous access to the same paths (for the kernel backend: node:fs on
   * the libuv thread pool, see nodeAsyncIo). Without it the backend's
   * synchronous files are used, one copy at a time.
   */
  dataIo?: AsyncDataIo;
  /**
   * Unchanged gaps of at most this many bytes between changed runs are read
   * over (default 256 KiB; 0: never): one larger read replaces several small
   * ones, and only the changed blocks are written.
   */
  mergeGapBytes?: number;
  /**
   * Copy with the native engine (src/native copyWindows: one call copies a
   * batch of windows on `parallel` POSIX threads) instead of JavaScript I/O.
   * Windows it fails on are copied again by the JavaScript path (through
   * dataIo or the backend's files), block by block where needed, so the
   * result is the same as without it. Only for backends whose paths are real
   * files (the kernel backend).
   */
  native?: NativeCopyEngine;
}

/** update-img's native copy engine and how to drive it. */
export interface NativeCopyEngine {
  copyWindows: NativeCopyWindows;
  /** Rewrites the snapshot and image paths before the engine opens them (tests and benchmarks name a file /dev/datto0). */
  map?: (path: string) => string;
  /** Read the snapshot with O_DIRECT where it accepts it (default false: buffered; the CLI turns it on). */
  direct?: boolean;
  /**
   * Write the image with O_DIRECT where it accepts it (default false:
   * through the page cache; the CLI turns it on). Then the changed runs of a
   * read window that are at most writeGapBytes apart are written as one span,
   * the unchanged blocks between them included: those blocks are the same in
   * the snapshot and in the image (the index lists every block that changed
   * since the image's snapshot), so rewriting them changes no byte, and one
   * large direct write costs less than several small ones.
   */
  directWrite?: boolean;
  /** With directWrite: largest unchanged gap written over (default: mergeGapBytes, i.e. whole windows). */
  writeGapBytes?: number;
  /** Windows per native call (default 16384), so the plan stays small on a large volume. */
  batchWindows?: number;
  /** Progress is reported this often while a batch runs (default 100 ms). */
  progressMs?: number;
}

/** Default of NativeCopyEngine.batchWindows. */
export const NATIVE_BATCH_WINDOWS = 16384;
/** A batch's plan holds at most this many numbers (8 MiB), however many parts its windows have. */
const NATIVE_PLAN_MAX = 1 << 20;

/** Default of mergeGapBytes: below this, reading the gap costs less than one more small read. */
export const DEFAULT_MERGE_GAP = 256 << 10;

/** Writes up to this size are issued directly (fs.writeSync) by nodeAsyncIo. */
const SYNC_WRITE_MAX = 64 << 10;

function promised<T>(f: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => f((err, v) => (err ? reject(err) : resolve(v))));
}

/**
 * AsyncDataIo over node:fs (callback API, run on the libuv thread pool, whose
 * size UV_THREADPOOL_SIZE bounds the I/Os really in flight). `map` rewrites a
 * path before it is opened (benchmarks and tests name a file /dev/datto0).
 */
export function nodeAsyncIo(map: (path: string) => string = (p) => p): AsyncDataIo {
  const openFile = async (path: string, flags: string): Promise<AsyncBlockFile> => {
    const fd = await promised<number>((cb) => fs.open(map(path), flags, cb));
    let closed = false;
    return {
      read: async (buf, offset) => {
        let done = 0;
        while (done < buf.length) {
          const n = await promised<number>((cb) => fs.read(fd, buf, done, buf.length - done, offset + done, cb));
          if (n === 0) break;
          done += n;
        }
        return done;
      },
      write: async (buf, offset) => {
        let done = 0;
        if (buf.length <= SYNC_WRITE_MAX) {
          // A small write only copies into the page cache: one direct system call costs less
          // than a round trip through the thread pool (much less under emulation).
          while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, offset + done);
          return done;
        }
        while (done < buf.length) done += await promised<number>((cb) => fs.write(fd, buf, done, buf.length - done, offset + done, cb));
        return done;
      },
      sync: () => promised<void>((cb) => fs.fdatasync(fd, (e) => cb(e, undefined))),
      close: async () => {
        if (closed) return;
        closed = true;
        await promised<void>((cb) => fs.close(fd, (e) => cb(e, undefined)));
      },
    };
  };
  return { openRead: (p) => openFile(p, 'r'), openReadWrite: (p) => openFile(p, 'r+') };
}

/** A synchronous BlockFile seen through the asynchronous interface (closing stays with its owner). */
function asyncOf(f: BlockFile): AsyncBlockFile {
  const sync = f.sync?.bind(f);
  return {
    read: async (buf, offset) => f.read(buf, offset),
    write: async (buf, offset) => f.write(buf, offset),
    ...(sync ? { sync: async () => sync() } : {}),
    close: async () => {},
  };
}

async function openAsync(io: AsyncDataIo, path: string, what: string, rw: boolean): Promise<AsyncBlockFile> {
  try {
    return await (rw ? io.openReadWrite(path) : io.openRead(path));
  } catch (e) {
    throw new UpdateImgError('OPEN_FAILED', `cannot open ${what} ${path}: ${errCode(e)}`, '', errCode(e));
  }
}

/** Runs of adjacent changed blocks in block order, each at most maxRun blocks long. */
export function* changedRuns(v: Pick<Validated, 'snapshotBlocks' | 'entriesOf' | 'runs'>, maxRun: number, chunk: number): Generator<[first: number, count: number]> {
  if (v.runs) {
    for (let i = 0; i < v.runs.length; i += 2) {
      let first = v.runs[i]!;
      let count = v.runs[i + 1]!;
      for (; count > maxRun; first += maxRun, count -= maxRun) yield [first, maxRun];
      yield [first, count];
    }
    return;
  }
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
      if (runLen > 0) yield [runStart, runLen];
      runStart = b;
      runLen = 1;
    }
  }
  if (runLen > 0) yield [runStart, runLen];
}

export type { CopyWindow } from './copy-plan.js';

/**
 * Groups runs (in block order) into read windows of at most maxRun blocks,
 * joining a run to the window before it when the unchanged gap between them
 * is at most gapBlocks (the plan of src/cli/copy-plan.ts).
 */
export function copyWindows(runs: Iterable<[number, number]>, maxRun: number, gapBlocks: number): Generator<CopyWindow> {
  const it = runs[Symbol.iterator]();
  return planWindows({ next: () => it.next() }, maxRun, gapBlocks);
}

function checkedMaxIo(opts: UpdateImgOptions): number {
  const maxIo = opts.maxIoBytes ?? 1 << 20;
  if (maxIo < COW_BLOCK_SIZE || maxIo % COW_BLOCK_SIZE !== 0) throw new RangeError('maxIoBytes must be a positive multiple of 4096');
  return maxIo;
}

/** Counters shared by the copies; progress is reported after every run. */
class Tally {
  readonly progress: UpdateImgProgress;
  readonly failures: { block: number; code: string }[] = [];
  copied = 0;
  ios = 0;
  bytesRead = 0;

  constructor(
    v: UpdateImgValidation,
    private readonly onProgress?: (p: UpdateImgProgress) => void,
  ) {
    const totalBytes = Math.min(v.changedBlocks * COW_BLOCK_SIZE, v.snapshotBytes);
    this.progress = { doneBytes: 0, totalBytes, doneBlocks: 0, totalBlocks: v.changedBlocks, errorBlocks: 0 };
  }

  /** Count a failed block; the 16 lowest failed block numbers are kept, whatever order the copies fail in. */
  fail(block: number, code: string): void {
    this.progress.errorBlocks++;
    if (this.failures.length === 16) {
      let max = 0;
      for (let i = 1; i < 16; i++) if (this.failures[i]!.block > this.failures[max]!.block) max = i;
      if (this.failures[max]!.block < block) return;
      this.failures[max] = { block, code };
      return;
    }
    this.failures.push({ block, code });
  }

  runDone(count: number): void {
    this.progress.doneBlocks += count;
    this.onProgress?.({ ...this.progress });
  }

  result(v: Validated, start: number): UpdateImgResult {
    // Failures are listed by block number whatever order the copies completed in.
    this.failures.sort((a, b) => a.block - b.block);
    return {
      ...stripEntries(v),
      copiedBlocks: this.copied,
      errorBlocks: this.progress.errorBlocks,
      failures: this.failures,
      bytesCopied: this.progress.doneBytes,
      bytesRead: this.bytesRead,
      ios: this.ios,
      seconds: (performance.now() - start) / 1000,
    };
  }
}

function flushFailed(opts: UpdateImgOptions, e: unknown): UpdateImgError {
  return new UpdateImgError('IO_ERROR', `flushing image ${opts.image} to disk failed: ${errCode(e)}`, 'the image may be incomplete', errCode(e));
}

/**
 * Open the snapshot device, the COW file and the image (each pushed to
 * `files` for the caller to close) and validate them; no write yet.
 */
function openAndValidate(backend: Backend, opts: UpdateImgOptions, files: BlockFile[]) {
  const snap = open(backend, opts.snapshot, 'snapshot device', false);
  files.push(snap);
  const cowFile = open(backend, opts.cow, 'cow file', false);
  files.push(cowFile);
  const image = open(backend, opts.image, 'image file', true);
  files.push(image);
  return { snap, image, v: validateUpdate(backend, snap, cowFile, image, opts) };
}

/**
 * Validate, then copy every changed block, one I/O at a time, synchronously
 * (for in-process callers on the emulator); throws UpdateImgError if
 * validation fails. The CLI uses updateImgAsync.
 */
export function updateImg(backend: Backend, opts: UpdateImgOptions): UpdateImgResult {
  const maxIo = checkedMaxIo(opts);
  const files: BlockFile[] = [];
  try {
    const { snap, image, v } = openAndValidate(backend, opts, files);
    opts.onValidated?.(v);
    const start = performance.now();
    const t = new Tally(v, opts.onProgress);
    const buf = new Uint8Array(maxIo);

    /** Copy blocks [first, first+count) with one read and one write; the errno name on error. */
    const copyRange = (first: number, count: number): string | undefined => {
      const off = first * COW_BLOCK_SIZE;
      const len = Math.min(count * COW_BLOCK_SIZE, v.snapshotBytes - off);
      const view = buf.subarray(0, len);
      t.ios++;
      try {
        const n = snap.read(view, off);
        t.bytesRead += n;
        if (n !== len) return 'EIO';
        image.write(view, off);
      } catch (e) {
        return errCode(e);
      }
      t.progress.doneBytes += len;
      return undefined;
    };

    for (const [first, count] of changedRuns(v, maxIo / COW_BLOCK_SIZE, opts.indexChunkEntries ?? 131072)) {
      const err = copyRange(first, count);
      if (err === undefined) t.copied += count;
      else if (count === 1) t.fail(first, err);
      else {
        // Isolate the failing blocks.
        for (let b = first; b < first + count; b++) {
          const e = copyRange(b, 1);
          if (e === undefined) t.copied++;
          else t.fail(b, e);
        }
      }
      t.runDone(count);
    }
    if (t.ios > 0 && image.sync) {
      try {
        image.sync();
      } catch (e) {
        throw flushFailed(opts, e);
      }
    }
    return t.result(v, start);
  } finally {
    for (const f of files.reverse()) f.close();
  }
}

/**
 * Validate, then copy every changed block with up to `parallel` copies in
 * flight: each copy reads one window (changed runs and the small unchanged
 * gaps between them, at most maxIoBytes) from the snapshot device and writes
 * its changed runs to the image as soon as the read completed. A window that
 * fails is retried run by run, then block by block, so only the failing
 * blocks are reported and every other block is still copied. With
 * `native`, the windows are copied in batches by the native engine's
 * threads and only the windows it failed on take the JavaScript path; the
 * result is the same. Nothing is written before validation passed; the image
 * is flushed (fdatasync) once at the end. Throws UpdateImgError if validation or
 * the flush fails.
 */
export async function updateImgAsync(backend: Backend, opts: UpdateImgAsyncOptions): Promise<UpdateImgResult> {
  const maxIo = checkedMaxIo(opts);
  const requested = opts.parallel ?? DEFAULT_PARALLEL;
  if (!Number.isInteger(requested) || requested < 1) throw new RangeError('parallel must be a positive integer');
  const parallel = Math.max(1, Math.min(requested, Math.floor(MAX_INFLIGHT_BYTES / maxIo)));
  const gapBytes = opts.mergeGapBytes ?? DEFAULT_MERGE_GAP;
  if (!Number.isSafeInteger(gapBytes) || gapBytes < 0) throw new RangeError('mergeGapBytes must be a non-negative integer');
  const files: BlockFile[] = [];
  const asyncFiles: AsyncBlockFile[] = [];
  try {
    const { snap, image, v } = openAndValidate(backend, opts, files);
    // The files the JavaScript path copies with: opened here for the JavaScript engine; with
    // the native engine (which opens its own) only when a window falls back to this path.
    let src = asyncOf(snap);
    let dst = asyncOf(image);
    let dataFiles: Promise<void> | undefined;
    const openDataFiles = (): Promise<void> =>
      (dataFiles ??= (async () => {
        if (!opts.dataIo) return;
        src = await openAsync(opts.dataIo, opts.snapshot, 'snapshot device', false);
        asyncFiles.push(src);
        dst = await openAsync(opts.dataIo, opts.image, 'image file', true);
        asyncFiles.push(dst);
      })());
    if (!opts.native) await openDataFiles();
    opts.onValidated?.(v);
    const start = performance.now();
    const t = new Tally(v, opts.onProgress);
    const maxRun = maxIo / COW_BLOCK_SIZE;
    const gapBlocks = Math.floor(gapBytes / COW_BLOCK_SIZE);
    const runSource = (): RunSource => (v.runs ? { runs: v.runs } : changedRuns(v, maxRun, opts.indexChunkEntries ?? 131072));
    const windows = planWindows(runSource(), maxRun, gapBlocks);
    let fatal: { error: unknown } | undefined;

    const span = (first: number, count: number): { off: number; len: number } => {
      const off = first * COW_BLOCK_SIZE;
      return { off, len: Math.min(count * COW_BLOCK_SIZE, v.snapshotBytes - off) };
    };

    /** Read blocks [first, first+count) into buf; the errno name on error. */
    const readRange = async (buf: Uint8Array, first: number, count: number): Promise<string | undefined> => {
      const { off, len } = span(first, count);
      t.ios++;
      try {
        const n = await src.read(buf.subarray(0, len), off);
        t.bytesRead += n;
        return n === len ? undefined : 'EIO';
      } catch (e) {
        return errCode(e);
      }
    };

    /** Write blocks [first, first+count) from buf, which holds the blocks from `base` on. */
    const writeRange = async (buf: Uint8Array, base: number, first: number, count: number): Promise<string | undefined> => {
      const { off, len } = span(first, count);
      const at = (first - base) * COW_BLOCK_SIZE;
      try {
        await dst.write(buf.subarray(at, at + len), off);
      } catch (e) {
        return errCode(e);
      }
      t.progress.doneBytes += len;
      return undefined;
    };

    /** One read and one write; on failure each block again on its own, so only failing blocks are lost. */
    const copyRun = async (buf: Uint8Array, first: number, count: number): Promise<void> => {
      const err = (await readRange(buf, first, count)) ?? (await writeRange(buf, first, first, count));
      if (err === undefined) t.copied += count;
      else if (count === 1) t.fail(first, err);
      else {
        for (let b = first; b < first + count; b++) {
          const e = (await readRange(buf, b, 1)) ?? (await writeRange(buf, b, b, 1));
          if (e === undefined) t.copied++;
          else t.fail(b, e);
        }
      }
    };

    const copyWindow = async (buf: Uint8Array, w: CopyWindow): Promise<void> => {
      if (w.parts.length === 1) return copyRun(buf, w.first, w.count);
      if ((await readRange(buf, w.first, w.count)) !== undefined) {
        // The window (gaps included) could not be read: copy its changed runs alone.
        for (const [first, count] of w.parts) await copyRun(buf, first, count);
        return;
      }
      const failed = await Promise.all(w.parts.map(([first, count]) => writeRange(buf, w.first, first, count)));
      for (let i = 0; i < w.parts.length; i++) {
        const [first, count] = w.parts[i]!;
        if (failed[i] === undefined) t.copied += count;
        else for (let b = first; b < first + count; b++) {
          const e = (await readRange(buf, b, 1)) ?? (await writeRange(buf, b, b, 1));
          if (e === undefined) t.copied++;
          else t.fail(b, e);
        }
      }
    };

    /** Copy the windows on native threads, batch by batch; windows the engine failed on go through copyWindow. */
    const copyNative = async (nat: NativeCopyEngine): Promise<void> => {
      const map = nat.map ?? ((p: string) => p);
      const batchMax = nat.batchWindows ?? NATIVE_BATCH_WINDOWS;
      if (!Number.isInteger(batchMax) || batchMax < 1) throw new RangeError('batchWindows must be a positive integer');
      const writeGap = nat.writeGapBytes ?? gapBytes;
      if (!Number.isSafeInteger(writeGap) || writeGap < 0) throw new RangeError('writeGapBytes must be a non-negative integer');
      const nativeOpts = {
        parallel,
        maxIo,
        direct: nat.direct ?? false,
        snapshotBytes: v.snapshotBytes,
        directWrite: nat.directWrite ?? false,
        writeGap: Math.floor(writeGap / COW_BLOCK_SIZE),
      };
      const progress = new BigInt64Array(4);
      let buf: Uint8Array | undefined;
      const planner = new CopyPlanner(runSource(), maxRun, gapBlocks);
      const nextBatch = (): PlanBatch | undefined => {
        const b = planner.next(batchMax, NATIVE_PLAN_MAX);
        // The index could not be read again: copy what was planned, then stop.
        if (planner.error) fatal = planner.error;
        return b;
      };
      let batch = nextBatch();
      for (let nth = 0; batch; nth++) {
        const { plan, windows: nwin } = batch;
        progress.fill(0n);
        const base = { doneBytes: t.progress.doneBytes, doneBlocks: t.progress.doneBlocks };
        const report = (): void => {
          t.progress.doneBytes = base.doneBytes + Number(Atomics.load(progress, 0));
          t.progress.doneBlocks = base.doneBlocks + Number(Atomics.load(progress, 2));
          opts.onProgress?.({ ...t.progress });
        };
        const running = nat.copyWindows(map(opts.snapshot), map(opts.image), plan, nativeOpts, progress);
        const timer = opts.onProgress ? setInterval(report, nat.progressMs ?? 100) : undefined;
        // Plan the next batch while this one is copied.
        const next = fatal ? undefined : nextBatch();
        let results: Int32Array;
        try {
          results = await running;
        } catch (e) {
          const code = errCode(e);
          if (typeof (e as { errno?: unknown })?.errno !== 'number') throw e;
          // The first batch opens the files before anything is written.
          if (nth === 0) throw new UpdateImgError('OPEN_FAILED', `native copy: ${e instanceof Error ? e.message : String(e)}`, '', code);
          throw new UpdateImgError('IO_ERROR', `native copy stopped: ${e instanceof Error ? e.message : String(e)}`, 'the image is incomplete', code);
        } finally {
          if (timer) clearInterval(timer);
        }
        t.progress.doneBytes = base.doneBytes;
        t.progress.doneBlocks = base.doneBlocks;
        const failed: CopyWindow[] = [];
        for (let k = 0, at = 0; k < nwin; k++) {
          const nparts = plan[at + 2]!;
          if (results[k] !== 0) {
            failed.push(planWindowAt(plan, at));
            at += 3 + 2 * nparts;
            continue;
          }
          // What the JavaScript path counts for a window copied without error.
          t.ios++;
          t.bytesRead += span(plan[at]!, plan[at + 1]!).len;
          for (let p = at + 3; p < at + 3 + 2 * nparts; p += 2) {
            const count = plan[p + 1]!;
            t.copied += count;
            t.progress.doneBytes += span(plan[p]!, count).len;
            t.progress.doneBlocks += count;
          }
          at += 3 + 2 * nparts;
        }
        opts.onProgress?.({ ...t.progress });
        if (failed.length) await openDataFiles();
        for (const w of failed) {
          buf ??= new Uint8Array(maxIo);
          await copyWindow(buf, w);
          t.runDone(w.parts.reduce((a, [, c]) => a + c, 0));
        }
        batch = next;
      }
    };

    const worker = async (): Promise<void> => {
      let buf = new Uint8Array(0);
      for (;;) {
        if (fatal) return;
        let next: IteratorResult<CopyWindow>;
        try {
          next = windows.next();
        } catch (e) {
          // The index could not be read again: stop starting copies, let the others finish.
          fatal = { error: e };
          return;
        }
        if (next.done) return;
        const w = next.value;
        if (buf.length < w.count * COW_BLOCK_SIZE) buf = new Uint8Array(w.count === 1 ? COW_BLOCK_SIZE : maxIo);
        await copyWindow(buf, w);
        t.runDone(w.parts.reduce((a, [, c]) => a + c, 0));
      }
    };
    if (opts.native) await copyNative(opts.native);
    else await Promise.all(Array.from({ length: parallel }, worker));
    if (fatal) {
      const e = fatal.error;
      if (e instanceof UpdateImgError) throw new UpdateImgError('IO_ERROR', `${e.message}; the copy stopped`, 'the image is incomplete', e.errnoCode);
      throw new UpdateImgError('IO_ERROR', `reading the index of ${opts.cow} again failed: ${errCode(e)}`, 'the image is incomplete', errCode(e));
    }
    if (t.ios > 0 && opts.native && !opts.native.map && image.sync) {
      // The native engine wrote the very file validation opened: flush it through that descriptor.
      try {
        image.sync();
      } catch (e) {
        throw flushFailed(opts, e);
      }
    } else if (t.ios > 0) {
      await openDataFiles();
      try {
        await dst.sync?.();
      } catch (e) {
        throw flushFailed(opts, e);
      }
    }
    return t.result(v, start);
  } finally {
    for (const f of asyncFiles.reverse()) await f.close();
    for (const f of files.reverse()) f.close();
  }
}

function stripEntries(v: UpdateImgValidation & { entriesOf?: unknown; runs?: unknown }): UpdateImgValidation {
  const { entriesOf: _drop, runs: _runs, ...rest } = v;
  return rest;
}
