// SPDX-License-Identifier: GPL-2.0-only
/** One device object of /proc/datto-info (SPEC §4.1), fields in output order. */
export interface ProcDevice {
  minor: number;
  cowFile: string;
  blockDevice: string;
  maxCache: number;
  /** Remembered falloc MiB × 1 MiB; absent for unverified devices. */
  fallocate?: number;
  /** The next three: present only when a COW manager exists (not unverified). */
  cowSizeCurrent?: number;
  seqId?: number;
  /** 32 lowercase hex digits. */
  uuid?: string;
  /** The next two: only if the COW version is > 0. */
  version?: number;
  nrChangedBlocks?: number;
  autoExpand?: { stepSizeMib: number; reservedSpaceMib: number };
  /** Negative errno, present only if the device failed. */
  error?: number;
  state: number;
}

export interface ProcInfo {
  version: string;
  devices: ProcDevice[];
}
