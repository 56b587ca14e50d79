// SPDX-License-Identifier: GPL-2.0-only
/**
 * Loader of the kernel-core addon (test/differential/core-addon): the C
 * decision code of dattobd.ko (kernel/core/*.c) compiled for userspace.
 * Builds it with `npm run build:core-addon` when it is missing or older than
 * its sources (a lock directory serialises parallel test workers).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CoreGeometry {
  sizeSectors: bigint;
  nblocks: bigint;
  totalSects: bigint;
  indexBytes: bigint;
  dataOffset: bigint;
  firstDataBlk: bigint;
  memSects: bigint;
}

export interface CoreHeader {
  magic: number;
  flags: number;
  fpos: bigint;
  fsize: bigint;
  seqid: bigint;
  uuid: Uint8Array;
  version: bigint;
  nrChangedBlocks: bigint;
}

export type U64In = number | bigint;

export interface CoreMinorView {
  exists: boolean;
  busy: boolean;
  /** 0 or a negative errno. */
  failCode: number;
  state: number;
}

export interface CoreProcDev {
  minor: number;
  cowFile: string | Uint8Array;
  blockDevice: string | Uint8Array;
  maxCache: U64In;
  unverified: boolean;
  hasCow: boolean;
  fallocateBytes: U64In;
  cowSizeCurrent: U64In;
  seqId: U64In;
  uuid: Uint8Array;
  version: U64In;
  nrChangedBlocks: U64In;
  hasAutoExpand: boolean;
  stepSizeMib: U64In;
  reservedSpaceMib: U64In;
  error: number;
  state: number;
}

export interface Core {
  geometry(sizeSectors: U64In): CoreGeometry;
  defaultCowBytes(sizeSectors: U64In, percent: number): bigint;
  cowFileBytes(sizeSectors: U64In, fallocatedMib: U64In, percent: number): { bytes: bigint; rememberedMib: bigint };
  cacheSectionsAllowed(cacheBytes: U64In, totalSects: U64In): bigint;
  blockRange(startSect: U64In, nrSects: U64In): { rc: number; first: bigint; last: bigint };
  cowAllocBlock(fpos: U64In, fsize: U64In): { rc: number; fpos: bigint; blk: bigint };
  autoExpandAllowed(stepMib: U64In, reservedMib: U64In, statfsOk: boolean, fBsize: U64In, fBavail: U64In): boolean;
  headerEncode(h: { magic: U64In; flags: U64In; fpos: U64In; fsize: U64In; seqid: U64In; uuid: Uint8Array; version: U64In; nrChangedBlocks: U64In }): Buffer;
  headerDecode(bytes: Uint8Array): CoreHeader;
  /** dbd_header_decode + dbd_header_check_reload: 0 or -EINVAL. */
  headerCheckReload(bytes: Uint8Array, indexOnly: boolean): number;
  /** dbd_header_decode + dbd_header_check_layout for a device size and file size: 0 or -EINVAL. */
  headerCheckLayout(bytes: Uint8Array, sizeSectors: U64In, indexOnly: boolean, fileBytes: U64In): number;
  indexEntryEncode(value: U64In): Buffer;
  indexEntryDecode(bytes: Uint8Array): bigint;
  /** dbd_index_entry_saved: first_data_blk <= value < fpos for a device size. */
  indexEntrySaved(value: U64In, sizeSectors: U64In, fpos: U64In): boolean;
  indexEntryOffset(block: U64In): bigint;
  /** 0 or a negative errno. */
  checkCmd(cmd: number, minor: number, maxDevices: number, view: CoreMinorView): number;
  maxDevices(param: number): number;
  stateNext(state: number, event: number): { rc: number; next: number };
  /** `out` holds what fitted into `size` bytes (NUL excluded); `len` the full length. */
  jsonEscape(src: string | Uint8Array, size?: number): { len: number; out: Buffer; guardOk: boolean };
  procHead(): Buffer;
  procTail(): Buffer;
  procDev(d: CoreProcDev, first: boolean): Buffer;
  readonly constants: {
    cmd: Record<CoreCmdName, number>;
    event: Record<CoreEventName, number>;
    errno: { EINVAL: number; EBUSY: number; ENOENT: number; EFBIG: number };
    defaultCacheBytes: number;
    defaultFallocPercent: number;
    defaultMaxDevices: number;
    hardMaxDevices: number;
    cowMagic: number;
  };
}

export type CoreCmdName =
  | 'SETUP_SNAP'
  | 'RELOAD_SNAP'
  | 'RELOAD_INC'
  | 'DESTROY'
  | 'TRANSITION_INC'
  | 'TRANSITION_SNAP'
  | 'RECONFIGURE'
  | 'INFO'
  | 'GET_FREE'
  | 'EXPAND_COW_FILE'
  | 'RECONFIGURE_AUTO_EXPAND';

export type CoreEventName =
  | 'SETUP'
  | 'RELOAD_SNAP'
  | 'RELOAD_INC'
  | 'TRANSITION_INC'
  | 'TRANSITION_SNAP'
  | 'MOUNT_RW'
  | 'UMOUNT'
  | 'UMOUNT_FAILED';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');
const addonDir = join(here, 'core-addon');
const addonPath = join(addonDir, 'build', 'Release', 'dbd_core_addon.node');

function newestSourceMtime(): number {
  const files = [join(addonDir, 'dbd_core_addon.cc'), join(addonDir, 'binding.gyp')];
  const coreDir = join(repoRoot, 'kernel', 'core');
  for (const f of readdirSync(coreDir)) if (/\.[ch]$/.test(f)) files.push(join(coreDir, f));
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

function upToDate(): boolean {
  return existsSync(addonPath) && statSync(addonPath).mtimeMs >= newestSourceMtime();
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Build the addon if it is missing or stale; safe to call from parallel workers. */
export function ensureCoreAddon(): string {
  if (upToDate()) return addonPath;
  const lock = join(addonDir, '.build-lock');
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock} (remove it if no build is running)`);
      sleep(200);
      if (upToDate()) return addonPath;
    }
  }
  try {
    if (upToDate()) return addonPath;
    const r = spawnSync('npm', ['run', '--silent', 'build:core-addon'], { cwd: repoRoot, encoding: 'utf8' });
    if (r.status !== 0 || !existsSync(addonPath)) {
      throw new Error(`npm run build:core-addon failed (status ${r.status}):\n${r.stdout}\n${r.stderr}`);
    }
  } finally {
    rmdirSync(lock);
  }
  return addonPath;
}

let cached: Core | undefined;

/** The compiled kernel core (built on first use). */
export function loadCore(): Core {
  if (!cached) {
    const path = ensureCoreAddon();
    cached = createRequire(import.meta.url)(path) as Core;
  }
  return cached;
}
