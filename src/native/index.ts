// SPDX-License-Identifier: GPL-2.0-only
/**
 * Lazy loader for the node-addon-api ioctl binding (src/native/). Nothing
 * imports the compiled addon at module load time: the emulator, the fast
 * tests and `npm start` never need it. Build it with `npm run build:native`.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Numbers are returned as BigInt only when they exceed 2^53 - 1. */
export type U64 = number | bigint;

export interface NativeInfo {
  minor: number;
  state: U64;
  error: number;
  cacheSize: U64;
  fallocSize: U64;
  seqid: U64;
  uuid: string;
  cow: string;
  bdev: string;
  version: U64;
  nrChangedBlocks: U64;
}

/** Error thrown by the binding for a failed syscall. */
export interface NativeErrnoError extends Error {
  errno: number;
  code: string;
  syscall: 'open' | 'ioctl' | 'posix_memalign';
  path: string;
}

/** Options of copyWindows (see src/native/copy_engine.cc). */
export interface NativeCopyOptions {
  /** Copy threads (1..256), each with its own buffer of maxIo bytes. */
  parallel: number;
  /** Largest window in bytes (a multiple of 4096, at most 64 MiB). */
  maxIo: number;
  /** Read the source with O_DIRECT; falls back to buffered reads where the file refuses it (EINVAL). */
  direct: boolean;
  /** Size of the snapshot: windows and parts are clamped to it (the partial last block). */
  snapshotBytes: number;
  /**
   * Write dst with O_DIRECT where it accepts it (default false); a write it
   * refuses (EINVAL) or a partial last block goes through the page cache.
   */
  directWrite?: boolean;
  /**
   * With directWrite: parts of a window at most this many unchanged blocks
   * apart are written as one span, the gap included (default 0: each part
   * on its own).
   */
  writeGap?: number;
}

/** Slots of copyWindows' progress array (a BigInt64Array of `length` entries). */
export interface NativeCopyProgressSlots {
  /** Bytes of changed data written by the windows that completed without error. */
  readonly bytesWritten: 0;
  /** Windows finished, with or without error. */
  readonly windowsDone: 1;
  /** Changed blocks of the windows that completed without error. */
  readonly blocksWritten: 2;
  /** 1 when the reads use O_DIRECT, 0 when buffered. */
  readonly direct: 3;
  readonly length: 4;
}

/**
 * copyWindows(src, dst, plan, opts, progress): copy read windows from src to
 * dst on native threads. `plan` lists windows in 4096-byte blocks:
 * [first, count, nparts, part0first, part0count, ...] repeated; each window
 * is read with one pread, each part (changed run) written with one pwrite
 * (with opts.directWrite: parts at most opts.writeGap blocks apart as one
 * O_DIRECT span, the unchanged blocks between them included).
 * Resolves to one entry per window: 0, or the errno of the failed read or
 * write. Rejects with a NativeErrnoError (syscall 'open') when a file cannot
 * be opened, before anything is written. Never fsyncs. `progress` is updated
 * atomically while it runs (read it with Atomics.load).
 */
export type NativeCopyWindows = (src: string, dst: string, plan: Float64Array, opts: NativeCopyOptions, progress: BigInt64Array) => Promise<Int32Array>;

export interface NativeBinding {
  /** Paths may be null to pass a NULL pointer to the kernel. */
  setupSnap(p: { minor: U64; bdev: string | null; cow: string | null; fallocatedSpace: U64; cacheSize: U64 }): void;
  reloadSnap(p: { minor: U64; bdev: string | null; cow: string | null; cacheSize: U64 }): void;
  reloadInc(p: { minor: U64; bdev: string | null; cow: string | null; cacheSize: U64 }): void;
  destroy(minor: U64): void;
  transitionInc(minor: U64): void;
  transitionSnap(p: { minor: U64; cow: string | null; fallocatedSpace: U64 }): void;
  reconfigure(p: { minor: U64; cacheSize: U64 }): void;
  info(minor: U64): NativeInfo;
  getFree(): number;
  expandCowFile(p: { minor: U64; size: U64 }): void;
  reconfigureAutoExpand(p: { minor: U64; stepSize: U64; reservedSpace: U64 }): void;
  /** Pass the buffer's memory (or NULL) as the ioctl argument; returns ioctl's result. */
  rawIoctl(cmd: U64, buffer: Uint8Array | null): number;
  /** Pass an arbitrary address as the ioctl argument (for fuzzing EFAULT paths). */
  ioctlWithPointer(cmd: U64, address: U64): number;
  /** BLKGETSIZE64 of a block device, in bytes. */
  blockDeviceSize(path: string): U64;
  /** Override the control device path (default /dev/datto-ctl); for tests. */
  setControlPath(path: string): void;
  getControlPath(): string;
  /** update-img's native copy engine (absent from builds older than it). */
  copyWindows?: NativeCopyWindows;
  readonly COPY_PROGRESS?: NativeCopyProgressSlots;
  /** The ABI as the C++ compiler saw kernel/include/uapi/dattobd.h. */
  readonly abi: { ioctl: Record<string, number>; structSize: Record<string, number> };
}

const here = dirname(fileURLToPath(import.meta.url));
const ADDON = join('build', 'Release', 'dattobd_native.node');

/** Where the compiled addon may be: next to this file, or in the source tree when running from dist/. */
export function nativeAddonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const list: string[] = [];
  if (env['DATTOBD_NATIVE']) list.push(resolve(env['DATTOBD_NATIVE']));
  list.push(join(here, ADDON));
  list.push(resolve(here, '..', '..', '..', 'src', 'native', ADDON));
  return list;
}

let cached: NativeBinding | undefined;

export class NativeBindingMissingError extends Error {
  readonly code = 'ENATIVE';
  constructor(readonly searched: string[]) {
    super(
      `the ioctl binding is not built (looked in ${searched.join(', ')}); ` +
        'run `npm run build:native` (needs gcc, g++, make and python3)',
    );
    this.name = 'NativeBindingMissingError';
  }
}

/** Load the addon on first use. Throws NativeBindingMissingError if it is not built. */
export function loadNative(env: NodeJS.ProcessEnv = process.env): NativeBinding {
  if (cached) return cached;
  const candidates = nativeAddonCandidates(env);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new NativeBindingMissingError(candidates);
  const require = createRequire(import.meta.url);
  cached = require(found) as NativeBinding;
  return cached;
}

export function isNativeErrnoError(e: unknown): e is NativeErrnoError {
  return (
    e instanceof Error &&
    typeof (e as Partial<NativeErrnoError>).errno === 'number' &&
    typeof (e as Partial<NativeErrnoError>).code === 'string'
  );
}

/**
 * The native copy engine, or why it is unavailable (binding not built, or
 * built before copyWindows existed).
 */
export function loadNativeCopy(env: NodeJS.ProcessEnv = process.env): { copyWindows: NativeCopyWindows } | { unavailable: string } {
  let b: NativeBinding;
  try {
    b = loadNative(env);
  } catch (e) {
    return { unavailable: e instanceof Error ? e.message : String(e) };
  }
  if (typeof b.copyWindows !== 'function') return { unavailable: 'the native binding predates copyWindows: rebuild it with `npm run build:native`' };
  return { copyWindows: b.copyWindows.bind(b) };
}
