// SPDX-License-Identifier: GPL-2.0-only
/**
 * The eleven ioctls: parameter checks, minor checks in SPEC's order
 * (range → existence → busy → failed → state) and the state machine
 * (SPEC §1.4, §3). Every method returns 0 or a positive errno; the last
 * failure's message and hint are kept for the throwing wrapper.
 */
import { posix } from 'node:path';
import { State } from '../src/abi/constants.js';
import { ERRNO } from '../src/abi/errno.js';
import { MAX_PATH_BYTES } from '../src/abi/ioctl.js';
import type {
  AutoExpandParams,
  DeviceInfo,
  ExpandParams,
  ReconfigureParams,
  ReloadParams,
  SetupParams,
  TransitionSnapParams,
} from '../src/driver/types.js';
import { cowFileSize, fallocMib, mibBytes } from '../src/format/geometry.js';
import { randomUuid, uuidHex } from '../src/format/header.js';
import { CowManager } from './cow-manager.js';
import { FsError } from './fs-namespace.js';
import { SnapDevice } from './snap-device.js';
import { failDevice } from './tracer.js';
import type { Volume } from './volume.js';
import type { World } from './world.js';

export interface Failure {
  errno: number;
  message: string;
  hint: string;
}

type MinorNeed = 'free' | 'exists' | 'exists-not-busy';

export class Control {
  last: Failure | undefined;

  constructor(private readonly w: World) {}

  private fail(errno: number, message: string, hint = ''): number {
    this.last = { errno, message, hint };
    return errno;
  }

  /** strndup_user: NULL → EINVAL, longer than a page → EINVAL; stops at NUL. */
  private str(s: unknown): string | undefined {
    if (typeof s !== 'string') return undefined;
    const cut = s.includes('\0') ? s.slice(0, s.indexOf('\0')) : s;
    if (Buffer.byteLength(cut, 'utf8') > MAX_PATH_BYTES) return undefined;
    return cut;
  }

  private static ulong(n: unknown): boolean {
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  }

  private checkMinor(minor: unknown, need: MinorNeed): number | SnapDevice {
    const w = this.w;
    if (typeof minor !== 'number' || !Number.isInteger(minor) || minor < 0 || minor >= w.maxSnapDevices) {
      return this.fail(ERRNO.EINVAL, `minor ${String(minor)} is out of range`, `minors are 0..${w.maxSnapDevices - 1}`);
    }
    const dev = w.devices[minor];
    if (need === 'free') {
      if (dev) return this.fail(ERRNO.EBUSY, `minor ${minor} is already in use`, 'destroy it first or pick a free minor (get-free-minor)');
      return 0;
    }
    if (!dev) return this.fail(ERRNO.ENOENT, `minor ${minor} is not set up`, 'set up a snapshot on this minor first');
    if (need === 'exists-not-busy' && dev.refs > 0) {
      return this.fail(ERRNO.EBUSY, `/dev/datto${minor} is open or mounted`, `close or unmount /dev/datto${minor} first`);
    }
    return dev;
  }

  private notFailed(dev: SnapDevice): number {
    if (dev.failed) {
      return this.fail(ERRNO.EINVAL, `device ${dev.minor} has failed (error ${dev.error})`, 'only destroy is possible now; take a new full backup afterwards');
    }
    return 0;
  }

  /** Resolve a block device path for setup/reload. */
  private openBdev(path: string): Volume | 'snapdev' | number {
    if (path === '') return this.fail(ERRNO.ENOENT, 'empty block device path');
    const r = this.w.resolve(path);
    if (r.kind === 'bdev') return r.vol;
    if (r.kind === 'snapdev') return 'snapdev';
    const loc = this.w.fileLocation(r);
    if (!loc || loc.ns.kind(loc.rel) === 'none') return this.fail(ERRNO.ENOENT, `block device ${path} does not exist`, 'check the device path');
    return this.fail(ERRNO.ENOTBLK, `${path} is not a block device`, 'give the block device (e.g. /dev/sda1), not a file or mount point');
  }

  private newUuid(): Uint8Array {
    return randomUuid(this.w.random);
  }

  /**
   * Create a COW file for `vol` at `path` (SPEC §1.4 step 6–7): open with
   * O_CREAT|O_TRUNC, preallocate, same-filesystem check.
   */
  private createCow(vol: Volume, path: string, fsize: number, seqid: number, uuid: Uint8Array, cacheSize: number): { cm: CowManager; rel: string; mountPoint: string } | number {
    const w = this.w;
    if (path === '') return this.fail(ERRNO.ENOENT, 'empty COW file path');
    const r = w.resolve(path);
    if (r.kind === 'bdev' || r.kind === 'snapdev') {
      return this.fail(ERRNO.EINVAL, `COW path ${path} is not a regular file`, 'give a file path on the snapshotted filesystem');
    }
    const loc = w.fileLocation(r);
    if (!loc) return this.fail(ERRNO.EINVAL, `COW path ${path} is not a regular file`);
    const { ns, rel } = loc;
    const kind = ns.kind(rel);
    if (kind === 'dir') return this.fail(ERRNO.EISDIR, `COW path ${path} is a directory`, 'give a file name, not a directory');
    const parentKind = ns.kind(posix.dirname(rel));
    if (parentKind === 'none') return this.fail(ERRNO.ENOENT, `directory of ${path} does not exist`, 'create the directory first');
    if (parentKind === 'file') return this.fail(ERRNO.ENOTDIR, `a component of ${path} is not a directory`);
    if (r.kind === 'fs' && r.readOnly) return this.fail(ERRNO.EROFS, `${r.mountPoint} is mounted read-only`, 'remount it read-write');
    if (kind === 'file' && ns.isImmutable(rel)) {
      return this.fail(ERRNO.EPERM, `${path} is an in-use COW file`, 'choose a new COW file name for every snapshot');
    }
    let cm: CowManager;
    try {
      cm = CowManager.create(ns, rel, vol.sizeSectors, { fsize, seqid, uuid, cacheSize: cacheSize || w.defaultCacheSize }, w.counters, w.faults);
    } catch (e) {
      if (e instanceof FsError) {
        const hint = e.errno === ERRNO.ENOSPC ? 'free space on the filesystem or pass a smaller size (-f MiB)' : '';
        return this.fail(e.errno, `creating COW file ${path}: ${e.message}`, hint);
      }
      throw e;
    }
    if (r.kind !== 'fs' || r.vol !== vol) {
      cm.unlinkAndClose();
      return this.fail(ERRNO.EINVAL, `COW file ${path} is not on the filesystem of ${vol.path}`, `put the COW file on the filesystem mounted from ${vol.path}`);
    }
    return { cm, rel, mountPoint: r.mountPoint };
  }

  setupSnapshot(p: SetupParams): number {
    const w = this.w;
    this.last = undefined;
    const bdev = this.str(p.bdev);
    const cow = this.str(p.cow);
    if (bdev === undefined || cow === undefined) return this.fail(ERRNO.EINVAL, 'path missing or longer than 4095 bytes');
    if (!Control.ulong(p.fallocatedSpace) || !Control.ulong(p.cacheSize)) return this.fail(ERRNO.EINVAL, 'sizes must be non-negative integers');
    const m = this.checkMinor(p.minor, 'free');
    if (m !== 0) return m as number;
    const vol = this.openBdev(bdev);
    if (typeof vol === 'number') return vol;
    if (vol === 'snapdev' || !vol.writable) {
      return this.fail(ERRNO.EINVAL, `illegal to perform setup while unmounted: ${bdev} is not mounted read-write`, 'mount the filesystem read-write, or use reload-snapshot/reload-incremental');
    }
    for (const d of w.devices) {
      if (d && !d.unverified && d.vol === vol) {
        return this.fail(ERRNO.EINVAL, `${bdev} is already traced by minor ${d.minor}`, 'only one tracked device per block device');
      }
    }
    const fsize = cowFileSize(vol.sizeSectors, p.fallocatedSpace, w.fallocatePercentage);
    const c = this.createCow(vol, cow, fsize, 1, this.newUuid(), p.cacheSize);
    if (typeof c === 'number') return c;
    const dev = new SnapDevice(p.minor, State.ACTIVE_SNAPSHOT, vol.path, c.rel, p.cacheSize);
    dev.vol = vol;
    dev.cm = c.cm;
    dev.mountPoint = c.mountPoint;
    dev.fallocMib = p.fallocatedSpace > 0 ? p.fallocatedSpace : fallocMib(fsize);
    w.devices[p.minor] = dev;
    return 0;
  }

  reload(p: ReloadParams, snapshot: boolean): number {
    this.last = undefined;
    const bdev = this.str(p.bdev);
    const cow = this.str(p.cow);
    if (bdev === undefined || cow === undefined) return this.fail(ERRNO.EINVAL, 'path missing or longer than 4095 bytes');
    if (!Control.ulong(p.cacheSize)) return this.fail(ERRNO.EINVAL, 'cache size must be a non-negative integer');
    const m = this.checkMinor(p.minor, 'free');
    if (m !== 0) return m as number;
    const vol = this.openBdev(bdev);
    if (typeof vol === 'number') return vol;
    if (vol !== 'snapdev' && vol.writable) {
      return this.fail(ERRNO.EINVAL, `illegal to perform reload while mounted: ${bdev} is mounted read-write`, 'reload before the filesystem is mounted read-write (e.g. from the initramfs)');
    }
    const state = snapshot ? State.UNVERIFIED_SNAPSHOT : State.UNVERIFIED_INCREMENTAL;
    this.w.devices[p.minor] = new SnapDevice(p.minor, state, bdev, cow, p.cacheSize);
    return 0;
  }

  destroy(minor: number): number {
    this.last = undefined;
    const dev = this.checkMinor(minor, 'exists-not-busy');
    if (typeof dev === 'number') return dev;
    if (!dev.unverified && !dev.failed && dev.active) dev.cm?.unlinkAndClose();
    dev.pendingInc.clear();
    dev.pendingSnap.clear();
    this.w.devices[minor] = undefined;
    return 0;
  }

  transitionToIncremental(minor: number): number {
    this.last = undefined;
    const dev = this.checkMinor(minor, 'exists-not-busy');
    if (typeof dev === 'number') return dev;
    const f = this.notFailed(dev);
    if (f) return f;
    if (dev.state !== State.ACTIVE_SNAPSHOT || !dev.cm) {
      return this.fail(ERRNO.EINVAL, `device ${minor} is not an active snapshot (state ${dev.state})`, 'transition-to-incremental needs state 3');
    }
    dev.cm.truncateToIndex();
    dev.state = State.ACTIVE_INCREMENTAL;
    dev.autoExpand = undefined;
    dev.refs = 0;
    return 0;
  }

  transitionToSnapshot(p: TransitionSnapParams): number {
    const w = this.w;
    this.last = undefined;
    const cow = this.str(p.cow);
    if (cow === undefined) return this.fail(ERRNO.EINVAL, 'path missing or longer than 4095 bytes');
    if (!Control.ulong(p.fallocatedSpace)) return this.fail(ERRNO.EINVAL, 'size must be a non-negative integer');
    const dev = this.checkMinor(p.minor, 'exists-not-busy');
    if (typeof dev === 'number') return dev;
    const f = this.notFailed(dev);
    if (f) return f;
    const old = dev.cm;
    const vol = dev.vol;
    if (dev.state !== State.ACTIVE_INCREMENTAL || !old || !vol) {
      return this.fail(ERRNO.EINVAL, `device ${p.minor} is not in active incremental mode (state ${dev.state})`, 'transition-to-snapshot needs state 2');
    }
    // P9 fix: a falloc size remembered from a reloaded index is not a real size.
    const mib = p.fallocatedSpace > 0 ? p.fallocatedSpace : dev.fallocFromIndex ? 0 : dev.fallocMib;
    const fsize = cowFileSize(vol.sizeSectors, mib, w.fallocatePercentage);
    const c = this.createCow(vol, cow, fsize, old.seqid + 1, old.uuid, 0);
    if (typeof c === 'number') return c;
    // the old file could not be synced: the new snapshot is valid all the same, but the
    // old file's changed-block list is not; it is left unclean (update-img refuses it)
    let closeError: unknown;
    try {
      old.closeClean();
    } catch (e) {
      closeError = e;
    }
    dev.cm = c.cm;
    dev.cowPath = c.rel;
    dev.mountPoint = c.mountPoint;
    dev.cacheSize = 0;
    dev.fallocMib = mib > 0 ? mib : fallocMib(fsize);
    dev.fallocFromIndex = false;
    dev.autoExpand = undefined;
    dev.state = State.ACTIVE_SNAPSHOT;
    dev.refs = 0;
    if (closeError !== undefined) {
      return this.fail(
        ERRNO.EIO,
        `the new snapshot is active, but the previous COW file could not be closed (${(closeError as Error).message})`,
        'its changed-block list is not usable (update-img refuses the file): take a full copy of the snapshot device',
      );
    }
    return 0;
  }

  reconfigure(p: ReconfigureParams): number {
    this.last = undefined;
    if (!Control.ulong(p.cacheSize)) return this.fail(ERRNO.EINVAL, 'cache size must be a non-negative integer');
    const dev = this.checkMinor(p.minor, 'exists-not-busy');
    if (typeof dev === 'number') return dev;
    const f = this.notFailed(dev);
    if (f) return f;
    dev.cacheSize = p.cacheSize;
    if (dev.active && dev.cm) {
      dev.cm.cacheSize = p.cacheSize || this.w.defaultCacheSize;
      dev.cm.maybeEvict();
    }
    return 0;
  }

  info(minor: number): DeviceInfo | number {
    this.last = undefined;
    const dev = this.checkMinor(minor, 'exists');
    if (typeof dev === 'number') return dev;
    const cm = dev.unverified ? undefined : dev.cm;
    return {
      minor,
      state: dev.state,
      error: dev.error,
      cacheSize: dev.cacheSize || this.w.defaultCacheSize,
      fallocSize: cm ? cm.fsize : 0,
      seqid: cm ? cm.seqid : 0,
      uuid: cm ? uuidHex(cm.uuid) : '0'.repeat(32),
      cow: dev.cowPath,
      bdev: dev.bdevPath,
      version: cm ? cm.version : 0,
      nrChangedBlocks: cm ? cm.nrChanged : 0,
    };
  }

  /** The lowest free minor, or an errno (ENOENT when all are in use). */
  getFreeMinor(): { errno: number; minor: number } {
    this.last = undefined;
    for (let i = 0; i < this.w.maxSnapDevices; i++) if (!this.w.devices[i]) return { errno: 0, minor: i };
    return { errno: this.fail(ERRNO.ENOENT, 'no free minor', 'destroy an unused device'), minor: -1 };
  }

  private activeSnapshot(minor: number): SnapDevice | number {
    const dev = this.checkMinor(minor, 'exists');
    if (typeof dev === 'number') return dev;
    const f = this.notFailed(dev);
    if (f) return f;
    if (dev.state !== State.ACTIVE_SNAPSHOT || !dev.cm) {
      return this.fail(ERRNO.EINVAL, `device ${minor} is not an active snapshot (state ${dev.state})`, 'only an active snapshot has a COW data area');
    }
    return dev;
  }

  expandCowFile(p: ExpandParams): number {
    this.last = undefined;
    if (!Control.ulong(p.size)) return this.fail(ERRNO.EINVAL, 'size must be a non-negative integer');
    const dev = this.activeSnapshot(p.minor);
    if (typeof dev === 'number') return dev;
    const cm = dev.cm;
    if (!cm) return this.fail(ERRNO.EINVAL, 'no COW file');
    try {
      cm.expand(mibBytes(p.size));
    } catch (e) {
      const errno = e instanceof FsError ? e.errno : ERRNO.EIO;
      failDevice(dev, errno);
      return this.fail(errno, `expanding the COW file by ${p.size} MiB failed: ${(e as Error).message}`, 'the snapshot has failed; destroy it and start a new backup series');
    }
    return 0;
  }

  reconfigureAutoExpand(p: AutoExpandParams): number {
    this.last = undefined;
    if (!Control.ulong(p.stepSize) || !Control.ulong(p.reservedSpace)) return this.fail(ERRNO.EINVAL, 'sizes must be non-negative integers');
    const dev = this.activeSnapshot(p.minor);
    if (typeof dev === 'number') return dev;
    dev.autoExpand = { stepMib: p.stepSize, reservedMib: p.reservedSpace };
    return 0;
  }
}
