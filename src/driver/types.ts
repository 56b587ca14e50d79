// SPDX-License-Identifier: GPL-2.0-only
/**
 * The driver interface. Two backends implement it: the kernel module (via the
 * node-addon-api ioctl binding, /proc/datto-info and /dev/datto<N>) and the
 * pure TypeScript emulator. dbdctl and update-img are written against it.
 *
 * Control calls mirror the eleven ioctls one to one, with the same
 * parameters and units. They are synchronous (an ioctl is a blocking
 * syscall) and throw DriverError carrying the errno on failure.
 */

export interface SetupParams {
  minor: number;
  bdev: string;
  cow: string;
  /** COW file size in MiB; 0 = module default (a percentage of the volume). */
  fallocatedSpace: number;
  /** Index cache limit in bytes; 0 = module default. */
  cacheSize: number;
}

export interface ReloadParams {
  minor: number;
  bdev: string;
  /** COW path relative to the mount point of the future mount, e.g. '/.datto'. */
  cow: string;
  cacheSize: number;
}

export interface TransitionSnapParams {
  minor: number;
  cow: string;
  /** MiB; 0 = reuse the previous size. */
  fallocatedSpace: number;
}

export interface ReconfigureParams {
  minor: number;
  cacheSize: number;
}

export interface ExpandParams {
  minor: number;
  /** MiB to add. */
  size: number;
}

export interface AutoExpandParams {
  minor: number;
  /** MiB; 0 disables growth. */
  stepSize: number;
  /** MiB kept free on the filesystem. */
  reservedSpace: number;
}

/** struct dattobd_info, decoded. */
export interface DeviceInfo {
  minor: number;
  /** State bits: SNAPSHOT 1, ACTIVE 2, UNVERIFIED 4. */
  state: number;
  /** 0 or a negative errno (sticky failure code). */
  error: number;
  cacheSize: number;
  /** Current COW file size in bytes (0 if unverified). */
  fallocSize: number;
  seqid: number;
  /** 32 lowercase hex digits (all zero if unverified). */
  uuid: string;
  cow: string;
  bdev: string;
  version: number;
  nrChangedBlocks: number;
}

export interface DriverControl {
  setupSnapshot(p: SetupParams): void;
  reloadSnapshot(p: ReloadParams): void;
  reloadIncremental(p: ReloadParams): void;
  destroy(minor: number): void;
  transitionToIncremental(minor: number): void;
  transitionToSnapshot(p: TransitionSnapParams): void;
  reconfigure(p: ReconfigureParams): void;
  info(minor: number): DeviceInfo;
  getFreeMinor(): number;
  expandCowFile(p: ExpandParams): void;
  reconfigureAutoExpand(p: AutoExpandParams): void;
  /** The text of /proc/datto-info. */
  procInfo(): string;
}

/** A file or block device opened for positional I/O. */
export interface BlockFile {
  /** Size in bytes (for a block device: its capacity). */
  size(): number;
  /** Read up to buf.length bytes at offset; returns bytes read (0 at EOF). */
  read(buf: Uint8Array, offset: number): number;
  /** Write buf at offset; returns bytes written. Throws on a read-only file. */
  write(buf: Uint8Array, offset: number): number;
  /**
   * Flush written data to stable storage (fdatasync: the data and the
   * metadata needed to read it back, not the timestamps); optional: a
   * backend without durability omits it.
   */
  sync?(): void;
  close(): void;
}

/**
 * File access as the tools see it. For the kernel backend this is node:fs;
 * for the emulator, paths resolve into the emulated world (/dev/datto<N>,
 * COW files on the emulated volume, image files on the host or in memory).
 */
export interface DriverIo {
  openRead(path: string): BlockFile;
  /** Open an existing file for reading and writing. */
  openReadWrite(path: string): BlockFile;
  /** Resolve symlinks, like realpath(3). Throws DriverError (ENOENT, ...). */
  realpath(path: string): string;
  exists(path: string): boolean;
}

export interface Backend {
  readonly name: 'kernel' | 'emulator';
  readonly ctl: DriverControl;
  readonly io: DriverIo;
}
