// SPDX-License-Identifier: GPL-2.0-only
/**
 * ioctl numbers, struct sizes and field offsets of the dattobd 0.12 ABI on
 * x86_64. The single source of truth is kernel/include/uapi/dattobd.h; a
 * test compiles a C program from that header and compares every value here.
 */

export const DATTO_IOCTL_MAGIC = 0x91;

export const IOCTL = {
  SETUP_SNAP: 0x40289101,
  RELOAD_SNAP: 0x40209102,
  RELOAD_INC: 0x40209103,
  DESTROY: 0x40049104,
  TRANSITION_INC: 0x40049105,
  TRANSITION_SNAP: 0x40189106,
  RECONFIGURE: 0x40109107,
  DATTOBD_INFO: 0xa0509108,
  GET_FREE: 0x80049109,
  EXPAND_COW_FILE: 0x4010910a,
  RECONFIGURE_AUTO_EXPAND: 0x4018910b,
} as const;

export type IoctlName = keyof typeof IOCTL;

/** sizeof() of each parameter struct, x86_64 LP64. */
export const STRUCT_SIZE = {
  setup_params: 40,
  reload_params: 32,
  transition_snap_params: 24,
  reconfigure_params: 16,
  expand_cow_file_params: 16,
  reconfigure_auto_expand_params: 24,
  dattobd_info: 8272,
  cow_header: 64,
} as const;

/** offsetof() of every field, x86_64 LP64. */
export const FIELD_OFFSET = {
  setup_params: { bdev: 0, cow: 8, fallocated_space: 16, cache_size: 24, minor: 32 },
  reload_params: { bdev: 0, cow: 8, cache_size: 16, minor: 24 },
  transition_snap_params: { cow: 0, fallocated_space: 8, minor: 16 },
  reconfigure_params: { cache_size: 0, minor: 8 },
  expand_cow_file_params: { size: 0, minor: 8 },
  reconfigure_auto_expand_params: { step_size: 0, reserved_space: 8, minor: 16 },
  dattobd_info: {
    minor: 0,
    state: 8,
    error: 16,
    cache_size: 24,
    falloc_size: 32,
    seqid: 40,
    uuid: 48,
    cow: 64,
    bdev: 4160,
    version: 8256,
    nr_changed_blocks: 8264,
  },
  cow_header: {
    magic: 0,
    flags: 4,
    fpos: 8,
    fsize: 16,
    seqid: 24,
    uuid: 32,
    version: 48,
    nr_changed_blocks: 56,
  },
} as const;

/** Longest path string accepted by the driver (PAGE_SIZE - 1 bytes + NUL). */
export const PATH_MAX_DATTO = 4096;
export const MAX_PATH_BYTES = PATH_MAX_DATTO - 1;
