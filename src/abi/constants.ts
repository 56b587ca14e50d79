// SPDX-License-Identifier: GPL-2.0-only
/**
 * Format and driver constants shared with C (kernel/include/uapi/dattobd.h
 * and the module's parameters). Checked against the header by a test.
 */

export const DATTOBD_VERSION = '0.12.1';

export const SECTOR_SIZE = 512;
export const COW_UUID_SIZE = 16;
export const COW_BLOCK_LOG_SIZE = 12;
export const COW_BLOCK_SIZE = 4096;
export const COW_HEADER_SIZE = 4096;
/** Bytes of the header page actually used by struct cow_header. */
export const COW_HEADER_BYTES = 64;
export const COW_MAGIC = 4776;
export const SECTORS_PER_BLOCK = COW_BLOCK_SIZE / SECTOR_SIZE;
/** Index entries per section; a section covers 16 MiB of volume. */
export const COW_SECTION_ENTRIES = 4096;
export const COW_SECTION_BYTES = COW_SECTION_ENTRIES * 8;

/** Flag bit numbers of cow_header.flags. */
export const COW_CLEAN = 0;
export const COW_INDEX_ONLY = 1;
export const COW_VMALLOC_UPPER = 2;
/** Flag values (1 << bit). */
export const FLAG_CLEAN = 1 << COW_CLEAN;
export const FLAG_INDEX_ONLY = 1 << COW_INDEX_ONLY;
export const FLAG_VMALLOC_UPPER = 1 << COW_VMALLOC_UPPER;

export const COW_VERSION_0 = 0;
export const COW_VERSION_CHANGED_BLOCKS = 1;

/** State bit numbers (struct dattobd_info.state, /proc "state"). */
export const SNAPSHOT = 0;
export const ACTIVE = 1;
export const UNVERIFIED = 2;
export const STATE_SNAPSHOT = 1 << SNAPSHOT;
export const STATE_ACTIVE = 1 << ACTIVE;
export const STATE_UNVERIFIED = 1 << UNVERIFIED;

/** The six reachable states. */
export const State = {
  DORMANT_INCREMENTAL: 0,
  DORMANT_SNAPSHOT: 1,
  ACTIVE_INCREMENTAL: 2,
  ACTIVE_SNAPSHOT: 3,
  UNVERIFIED_INCREMENTAL: 4,
  UNVERIFIED_SNAPSHOT: 5,
} as const;
export type StateValue = (typeof State)[keyof typeof State];

/** Module parameter defaults (SPEC 4.2). */
export const DEFAULT_CACHE_SIZE = 314572800;
export const DEFAULT_FALLOCATE_PERCENTAGE = 10;
export const DEFAULT_MAX_SNAP_DEVICES = 24;
export const HARD_MAX_SNAP_DEVICES = 255;

export const MIB = 1048576;

export const CTL_DEVICE_PATH = '/dev/datto-ctl';
export const PROC_INFO_PATH = '/proc/datto-info';
export const SNAPSHOT_DEVICE_PREFIX = '/dev/datto';
