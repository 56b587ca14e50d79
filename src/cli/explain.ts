// SPDX-License-Identifier: GPL-2.0-only
/**
 * What a driver errno means for the command that got it — one sentence a
 * user can act on. The driver's check order (SPEC §1.4, §3.3) decides which
 * causes are possible for each command.
 */
import { errnoName } from '../abi/errno.js';

export type Command =
  | 'setup-snapshot'
  | 'reload-snapshot'
  | 'reload-incremental'
  | 'destroy'
  | 'transition-to-incremental'
  | 'transition-to-snapshot'
  | 'reconfigure'
  | 'expand-cow-file'
  | 'reconfigure-auto-expand'
  | 'info'
  | 'get-free-minor';

export interface ExplainContext {
  minor?: number;
  bdev?: string;
  cow?: string;
}

const OUT_OF_RANGE = 'the minor is not below the module parameter max_snap_devices (24 unless changed)';

function busyDevice(c: ExplainContext): string {
  const dev = c.minor === undefined ? '/dev/datto<minor>' : `/dev/datto${c.minor}`;
  return `${dev} is still open or mounted: unmount it and stop every program reading it, then retry`;
}

function noDevice(c: ExplainContext): string {
  return `no dattobd device is set up on minor ${c.minor ?? '?'} (see \`dbdctl info\`)`;
}

/** ' <value>' or nothing. */
function sp(v: string | undefined): string {
  return v ? ` ${v}` : '';
}

const PRIVILEGE = 'dattobd control requires root (CAP_SYS_ADMIN): run dbdctl as root';

type Table = Partial<Record<string, (c: ExplainContext) => string>>;

const COMMON: Table = {
  EPERM: () => PRIVILEGE,
  EACCES: () => PRIVILEGE,
  ENOMEM: () => 'the kernel could not allocate memory; try again, or use a smaller index cache (-c)',
  EFAULT: () => 'the driver could not read the request from dbdctl (a bug in the caller or the ABI)',
  ENOTTY: () => '/dev/datto-ctl does not belong to a dattobd driver of this version',
};

const BY_COMMAND: Record<Command, Table> = {
  'setup-snapshot': {
    EINVAL: (c) =>
      `${c.bdev ?? 'the block device'} is not mounted read-write, or the COW file is not on that same filesystem ` +
      'or is not a regular file, or the block device is already tracked by another minor, or a path is longer ' +
      `than 4095 bytes, or ${OUT_OF_RANGE}`,
    EBUSY: (c) =>
      `minor ${c.minor ?? '?'} is already in use (pick another with \`dbdctl get-free-minor\` or destroy it), ` +
      'or the filesystem is frozen (fsfreeze -u <mount point>)',
    ENOENT: (c) => `${c.bdev ?? 'the block device'} does not exist, or the directory of the COW file${sp(c.cow)} does not exist`,
    ENOTBLK: (c) => `${c.bdev ?? 'the block device path'} is not a block device`,
    ENXIO: (c) => `${c.bdev ?? 'the block device'} is not available (no such device)`,
    ENODEV: (c) => `${c.bdev ?? 'the block device'} is not available (no such device)`,
    EISDIR: (c) => `the COW file path${sp(c.cow)} is a directory: give the path of a file to create`,
    EPERM: () => `${PRIVILEGE}; or the COW file path names a COW file still in use by another dattobd device`,
    ENOSPC: () => 'the filesystem has not enough free space for the COW file: free space or use a smaller -f',
    EFBIG: () => 'the requested COW file size exceeds the largest file the filesystem allows: use a smaller -f',
    EROFS: () => 'the filesystem holding the COW file is read-only',
  },
  'reload-snapshot': {
    EINVAL: (c) =>
      `${c.bdev ?? 'the block device'} is mounted read-write (reload is for a volume not yet mounted read-write, ` +
      `e.g. early at boot; use setup-snapshot on a mounted volume), or a path is too long, or ${OUT_OF_RANGE}`,
    EBUSY: (c) => `minor ${c.minor ?? '?'} is already in use (destroy it first or pick another minor)`,
    ENOENT: (c) => `${c.bdev ?? 'the block device'} does not exist`,
    ENOTBLK: (c) => `${c.bdev ?? 'the block device path'} is not a block device`,
    ENXIO: (c) => `${c.bdev ?? 'the block device'} is not available (no such device)`,
  },
  'reload-incremental': {},
  destroy: {
    ENOENT: noDevice,
    EBUSY: busyDevice,
    EINVAL: () => OUT_OF_RANGE,
  },
  'transition-to-incremental': {
    ENOENT: noDevice,
    EBUSY: busyDevice,
    EINVAL: (c) =>
      `minor ${c.minor ?? '?'} is not an active snapshot (state 3) or has failed (see \`dbdctl info ${c.minor ?? ''}\`), ` +
      `or ${OUT_OF_RANGE}`,
    EFBIG: () =>
      'the COW file filled up while the transition flushed pending writes: the device is now incremental but failed ' +
      'and its changed-block list is lost; destroy it and take a new full backup (use a larger -f next time)',
  },
  'transition-to-snapshot': {
    ENOENT: (c) => `${noDevice(c)}, or the directory of the new COW file${sp(c.cow)} does not exist`,
    EBUSY: busyDevice,
    EINVAL: (c) =>
      `minor ${c.minor ?? '?'} is not in active incremental mode (state 2) or has failed, or the new COW file is not ` +
      `on the traced filesystem or not a regular file, or ${OUT_OF_RANGE}`,
    EPERM: () =>
      `${PRIVILEGE}; or the new COW file path is the COW file currently in use: give a new path for each snapshot`,
    EISDIR: (c) => `the COW file path${sp(c.cow)} is a directory: give the path of a file to create`,
    ENOSPC: () => 'the filesystem has not enough free space for the new COW file: free space or use a smaller -f',
    EFBIG: () => 'the requested COW file size exceeds the largest file the filesystem allows: use a smaller -f',
    EIO: (c) =>
      `if \`dbdctl info ${c.minor ?? '<minor>'}\` shows state 3, the new snapshot is active but the previous COW file ` +
      'could not be written or closed: its changed-block list is not usable (update-img refuses it), so copy ' +
      `/dev/datto${c.minor ?? '<minor>'} in full; otherwise the new COW file could not be written (disk error)`,
  },
  reconfigure: {
    ENOENT: noDevice,
    EBUSY: busyDevice,
    EINVAL: (c) => `minor ${c.minor ?? '?'} has failed (only destroy is possible now), or ${OUT_OF_RANGE}`,
  },
  'expand-cow-file': {
    ENOENT: noDevice,
    EINVAL: (c) =>
      `minor ${c.minor ?? '?'} is not an active snapshot (state 3) or has failed — only an active snapshot's COW ` +
      `file can grow — or ${OUT_OF_RANGE}`,
    ENOSPC: () => 'the filesystem has not enough free space to grow the COW file; the device may now have failed',
    EFBIG: () => 'the COW file would exceed the largest file the filesystem allows',
  },
  'reconfigure-auto-expand': {
    ENOENT: noDevice,
    EINVAL: (c) =>
      `minor ${c.minor ?? '?'} is not an active snapshot (state 3) or has failed — auto-expand applies only to an ` +
      `active snapshot — or ${OUT_OF_RANGE}`,
  },
  info: {
    ENOENT: noDevice,
    EINVAL: () => OUT_OF_RANGE,
  },
  'get-free-minor': {
    ENOENT: () => 'every minor is in use: destroy a device or load the module with a larger max_snap_devices',
  },
};
BY_COMMAND['reload-incremental'] = BY_COMMAND['reload-snapshot'];

/** One sentence explaining `errno` for `command`; a generic one when nothing specific applies. */
export function explain(command: Command, errno: number, ctx: ExplainContext = {}): string {
  const name = errnoName(errno);
  const f = BY_COMMAND[command][name] ?? COMMON[name];
  if (f) return f(ctx);
  return `the driver refused ${command} with ${name}`;
}
