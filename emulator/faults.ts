// SPDX-License-Identifier: GPL-2.0-only
/** Fault injection hooks and I/O counters of the emulator. */
import { FsError } from './fs-namespace.js';

export type FaultKind = 'cowWrite' | 'fallocate' | 'originRead' | 'indexSync';

export class Faults {
  private readonly armed = new Map<FaultKind, number>();

  /** The next COW data write fails with `errno` (the device fails). */
  failNextCowWrite(errno: number): void {
    this.armed.set('cowWrite', Math.abs(errno));
  }
  /** The next fallocate (COW creation, expand, auto-expand) fails with `errno`. */
  failNextFallocate(errno: number): void {
    this.armed.set('fallocate', Math.abs(errno));
  }
  /** The next sync of a COW file's index and CLEAN header (closing it) fails with `errno`. */
  failNextIndexSync(errno: number): void {
    this.armed.set('indexSync', Math.abs(errno));
  }
  /** The next read of origin data for a COW copy fails with `errno`. */
  failNextOriginRead(errno: number): void {
    this.armed.set('originRead', Math.abs(errno));
  }

  isArmed(kind: FaultKind): boolean {
    return this.armed.has(kind);
  }

  /** Throw FsError if a fault of this kind is armed (and disarm it). */
  take(kind: FaultKind): void {
    const e = this.armed.get(kind);
    if (e !== undefined) {
      this.armed.delete(kind);
      throw new FsError(e, `injected ${kind} failure`);
    }
  }

  clear(): void {
    this.armed.clear();
  }
}

export interface Counters {
  /** 4 KiB blocks read from the origin to preserve them (COW reads). */
  originReads: number;
  /** 4 KiB data blocks appended to COW files. */
  cowWrites: number;
  /** Writes (incl. discard / write-zeroes) submitted to traced volumes. */
  tracedWrites: number;
  /** Blocks whose write passed through without any read because already saved. */
  skippedReads: number;
  /** 4 KiB blocks served by snapshot devices. */
  snapReads: number;
  /** Index sections written back / read in. */
  indexWrites: number;
  indexReads: number;
}

export function newCounters(): Counters {
  return { originReads: 0, cowWrites: 0, tracedWrites: 0, skippedReads: 0, snapReads: 0, indexWrites: 0, indexReads: 0 };
}
