// SPDX-License-Identifier: GPL-2.0-only
/** One tracked device (a minor): state bits, failure code, paths and its COW manager. */
import { STATE_ACTIVE, STATE_SNAPSHOT, STATE_UNVERIFIED } from '../src/abi/constants.js';
import type { CowManager } from './cow-manager.js';
import type { Volume } from './volume.js';

export interface AutoExpand {
  stepMib: number;
  reservedMib: number;
}

export class SnapDevice {
  /** State bits (SPEC §3.1). */
  state: number;
  /** 0 or a negative errno; first error wins, never cleared (SPEC §3.4). */
  error = 0;
  /** Open count of /dev/datto<minor> (busy counter). */
  refs = 0;
  /** bdev path as given (unverified) or resolved (active/dormant). */
  bdevPath: string;
  /** COW path: as given while unverified, filesystem-root relative afterwards. */
  cowPath: string;
  /** Configured cache size in bytes (0 = module default). */
  cacheSize: number;
  /** Remembered "falloc MB" (SPEC §2.6). */
  fallocMib = 0;
  /** True when fallocMib was derived from a reloaded index-only file (P9). */
  fallocFromIndex = false;
  vol: Volume | undefined;
  cm: CowManager | undefined;
  /** Mount point through which the COW file is open. */
  mountPoint: string | undefined;
  autoExpand: AutoExpand | undefined;
  /** Writes that arrived while dormant (SPEC §3.1: queued in memory). */
  readonly pendingSnap = new Map<number, Uint8Array>();
  readonly pendingInc = new Set<number>();

  constructor(
    readonly minor: number,
    state: number,
    bdevPath: string,
    cowPath: string,
    cacheSize: number,
  ) {
    this.state = state;
    this.bdevPath = bdevPath;
    this.cowPath = cowPath;
    this.cacheSize = cacheSize;
  }

  get snapshot(): boolean {
    return (this.state & STATE_SNAPSHOT) !== 0;
  }
  get active(): boolean {
    return (this.state & STATE_ACTIVE) !== 0;
  }
  get unverified(): boolean {
    return (this.state & STATE_UNVERIFIED) !== 0;
  }
  get failed(): boolean {
    return this.error !== 0;
  }
  /** Whether /dev/datto<minor> exists (SPEC §3.1 table). */
  get hasDisk(): boolean {
    return this.snapshot && !this.unverified;
  }
  /** Tracing installed: set up and not unverified (SPEC §5.1). */
  get traced(): boolean {
    return !this.unverified;
  }
}
