// SPDX-License-Identifier: GPL-2.0-only
/**
 * An emulated block device (a partition or whole disk): a sparse block store,
 * a partition offset, a mount state and the filesystem that lives on it.
 *
 * Simplification: the filesystem's files (COW files) are kept in their own
 * namespace, not inside the volume's blocks; the block contents are what
 * `write()`/`discard()`/`writeZeroes()` put there. Tracing concerns the blocks.
 */
import { SECTOR_SIZE } from '../src/abi/constants.js';
import { BlockStore } from './block-store.js';
import type { FsNamespace } from './fs-namespace.js';

export type MountState = { mountPoint: string; readOnly: boolean } | null;

export class Volume {
  readonly store = new BlockStore();
  mount: MountState = null;

  constructor(
    readonly path: string,
    readonly sizeBytes: number,
    readonly partitionOffsetSectors: number,
    /** The filesystem on this volume. */
    readonly fs: FsNamespace,
  ) {}

  get sizeSectors(): number {
    return Math.floor(this.sizeBytes / SECTOR_SIZE);
  }

  private get base(): number {
    return this.partitionOffsetSectors * SECTOR_SIZE;
  }

  /** Read partition-relative bytes; beyond the end reads zeros. */
  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    const n = Math.max(0, Math.min(length, this.sizeBytes - offset));
    if (n > 0) this.store.read(this.base + offset, out.subarray(0, n));
    return out;
  }

  readInto(offset: number, out: Uint8Array): void {
    const n = Math.max(0, Math.min(out.length, this.sizeBytes - offset));
    if (n > 0) this.store.read(this.base + offset, out.subarray(0, n));
    if (n < out.length) out.fill(0, Math.max(n, 0));
  }

  /** First index where the volume differs from `expected` (read at `offset`), or -1. */
  compare(offset: number, expected: Uint8Array): number {
    if (offset + expected.length > this.sizeBytes) return Math.max(0, this.sizeBytes - offset);
    return this.store.compare(this.base + offset, expected);
  }

  write(offset: number, data: Uint8Array): void {
    this.store.write(this.base + offset, data);
  }

  zero(offset: number, length: number): void {
    this.store.zero(this.base + offset, length);
  }

  get writable(): boolean {
    return this.mount !== null && !this.mount.readOnly;
  }
}
