// SPDX-License-Identifier: GPL-2.0-only
/**
 * A pure TypeScript emulator of the dattobd-compatible driver. See
 * emulator/README.md. Public API: the Emulator class below.
 */
import { posix } from 'node:path';
import { ERRNO } from '../src/abi/errno.js';
import { DriverError } from '../src/driver/errors.js';
import type { Backend, DeviceInfo, DriverControl, DriverIo } from '../src/driver/types.js';
import { Control } from './control.js';
import type { Counters } from './faults.js';
import { FsError } from './fs-namespace.js';
import { EmulatorIo } from './io.js';
import { onMountWritable, onUnmount } from './mount-hooks.js';
import { procText } from './proc.js';
import { snapshotRead, tracedWrite } from './tracer.js';
import { Volume } from './volume.js';
import { World, type EmulatorOptions } from './world.js';

export type { EmulatorOptions } from './world.js';
export type { Counters } from './faults.js';
export { Control } from './control.js';

function throwing(c: Control, op: string, errno: number): void {
  if (errno === 0) return;
  const f = c.last;
  throw new DriverError(errno, op, f && f.errno === errno ? `${op}: ${f.message}` : undefined, f?.hint ?? '');
}

/** DriverControl over the errno-returning Control: throws DriverError. */
class ThrowingControl implements DriverControl {
  constructor(
    private readonly c: Control,
    private readonly w: World,
  ) {}
  setupSnapshot(p: Parameters<DriverControl['setupSnapshot']>[0]): void {
    throwing(this.c, 'setup-snapshot', this.c.setupSnapshot(p));
  }
  reloadSnapshot(p: Parameters<DriverControl['reloadSnapshot']>[0]): void {
    throwing(this.c, 'reload-snapshot', this.c.reload(p, true));
  }
  reloadIncremental(p: Parameters<DriverControl['reloadIncremental']>[0]): void {
    throwing(this.c, 'reload-incremental', this.c.reload(p, false));
  }
  destroy(minor: number): void {
    throwing(this.c, 'destroy', this.c.destroy(minor));
  }
  transitionToIncremental(minor: number): void {
    throwing(this.c, 'transition-to-incremental', this.c.transitionToIncremental(minor));
  }
  transitionToSnapshot(p: Parameters<DriverControl['transitionToSnapshot']>[0]): void {
    throwing(this.c, 'transition-to-snapshot', this.c.transitionToSnapshot(p));
  }
  reconfigure(p: Parameters<DriverControl['reconfigure']>[0]): void {
    throwing(this.c, 'reconfigure', this.c.reconfigure(p));
  }
  info(minor: number): DeviceInfo {
    const r = this.c.info(minor);
    if (typeof r === 'number') {
      throwing(this.c, 'info', r);
      throw new DriverError(r, 'info');
    }
    return r;
  }
  getFreeMinor(): number {
    const r = this.c.getFreeMinor();
    throwing(this.c, 'get-free-minor', r.errno);
    return r.minor;
  }
  expandCowFile(p: Parameters<DriverControl['expandCowFile']>[0]): void {
    throwing(this.c, 'expand-cow-file', this.c.expandCowFile(p));
  }
  reconfigureAutoExpand(p: Parameters<DriverControl['reconfigureAutoExpand']>[0]): void {
    throwing(this.c, 'reconfigure-auto-expand', this.c.reconfigureAutoExpand(p));
  }
  procInfo(): string {
    return procText(this.w);
  }
}

export class Emulator {
  /** The emulated machine (volumes, devices, namespaces). For tests and tools. */
  readonly world: World;
  /** Errno-returning control (0 = ok); `raw.last` holds message and hint. */
  readonly raw: Control;
  readonly ctl: DriverControl;
  readonly io: DriverIo;
  readonly faults: World['faults'];
  readonly counters: Counters;

  constructor(opts: EmulatorOptions = {}) {
    this.world = new World(opts);
    this.raw = new Control(this.world);
    this.ctl = new ThrowingControl(this.raw, this.world);
    this.io = new EmulatorIo(this.world);
    this.faults = this.world.faults;
    this.counters = this.world.counters;
  }

  backend(): Backend {
    return { name: 'emulator', ctl: this.ctl, io: this.io };
  }

  addVolume(o: { path: string; sizeBytes: number; partitionOffsetSectors?: number; fsFreeBytes?: number }): void {
    const p = World.norm(o.path);
    if (this.world.volumes.has(p)) throw new DriverError(ERRNO.EEXIST, 'add-volume', `${p} already exists`);
    if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes <= 0 || o.sizeBytes % 512 !== 0) {
      throw new DriverError(ERRNO.EINVAL, 'add-volume', `volume size must be a positive multiple of 512 bytes, got ${o.sizeBytes}`);
    }
    this.world.volumes.set(p, new Volume(p, o.sizeBytes, o.partitionOffsetSectors ?? 0, this.world.newFilesystem(o.fsFreeBytes ?? o.sizeBytes)));
  }

  private volume(bdev: string, op: string): Volume {
    const r = this.world.resolve(bdev);
    if (r.kind === 'bdev') return r.vol;
    if (r.kind === 'snapdev') throw new DriverError(ERRNO.EOPNOTSUPP, op, `${r.path} is a read-only snapshot device`);
    throw new DriverError(ERRNO.ENOENT, op, `no emulated block device at ${bdev}`, 'add it with addVolume()');
  }

  mount(bdev: string, mountPoint: string, o: { readOnly?: boolean } = {}): void {
    const vol = this.volume(bdev, 'mount');
    const mp = World.norm(mountPoint);
    if (vol.mount) throw new DriverError(ERRNO.EBUSY, 'mount', `${vol.path} is already mounted on ${vol.mount.mountPoint}`);
    if (this.world.volumeByMountPoint(mp)) throw new DriverError(ERRNO.EBUSY, 'mount', `${mp} is already a mount point`);
    vol.mount = { mountPoint: mp, readOnly: o.readOnly ?? false };
    if (!vol.mount.readOnly) onMountWritable(this.world, vol, mp);
  }

  umount(mountPoint: string): void {
    const mp = World.norm(mountPoint);
    const vol = this.world.volumeByMountPoint(mp);
    if (!vol) throw new DriverError(ERRNO.EINVAL, 'umount', `${mp} is not a mount point`);
    onUnmount(this.world, vol, mp);
    vol.mount = null;
  }

  remount(mountPoint: string, o: { readOnly: boolean }): void {
    const mp = World.norm(mountPoint);
    const vol = this.world.volumeByMountPoint(mp);
    if (!vol?.mount) throw new DriverError(ERRNO.EINVAL, 'remount', `${mp} is not a mount point`);
    if (o.readOnly && !vol.mount.readOnly) {
      onUnmount(this.world, vol, mp);
      vol.mount.readOnly = true;
    } else if (!o.readOnly && vol.mount.readOnly) {
      vol.mount.readOnly = false;
      onMountWritable(this.world, vol, mp);
    }
  }

  private range(vol: Volume, op: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new DriverError(ERRNO.EINVAL, op, `invalid range ${offset}+${length}`);
    }
    if (offset + length > vol.sizeBytes) throw new DriverError(ERRNO.ENOSPC, op, `range ${offset}+${length} past the end of ${vol.path} (${vol.sizeBytes} bytes)`);
  }

  /** A write to the live block device (any alignment); traced. */
  write(bdev: string, offsetBytes: number, data: Uint8Array): void {
    const vol = this.volume(bdev, 'write');
    this.range(vol, 'write', offsetBytes, data.length);
    tracedWrite(this.world, vol, offsetBytes, data.length, () => vol.write(offsetBytes, data));
  }

  /** Discard: old data is saved first (snapshot) / blocks are marked (incremental); reads back as zeros. */
  discard(bdev: string, offsetBytes: number, length: number): void {
    const vol = this.volume(bdev, 'discard');
    this.range(vol, 'discard', offsetBytes, length);
    tracedWrite(this.world, vol, offsetBytes, length, () => vol.zero(offsetBytes, length));
  }

  /** Write-zeroes (with or without NOUNMAP): traced like a write. */
  writeZeroes(bdev: string, offsetBytes: number, length: number): void {
    const vol = this.volume(bdev, 'write-zeroes');
    this.range(vol, 'write-zeroes', offsetBytes, length);
    tracedWrite(this.world, vol, offsetBytes, length, () => vol.zero(offsetBytes, length));
  }

  /** Read the live volume. */
  read(bdev: string, offsetBytes: number, length: number): Uint8Array {
    const vol = this.volume(bdev, 'read');
    this.range(vol, 'read', offsetBytes, length);
    return vol.read(offsetBytes, length);
  }

  /** Read /dev/datto<minor> (without opening it). Throws DriverError (ENOENT, EIO, EBUSY). */
  readSnapshot(minor: number, offsetBytes: number, length: number): Uint8Array {
    const dev = this.world.devices[minor];
    if (!dev?.hasDisk) throw new DriverError(ERRNO.ENOENT, 'read', `/dev/datto${minor} does not exist`);
    const out = new Uint8Array(Math.max(0, Math.min(length, (dev.vol?.sizeBytes ?? 0) - offsetBytes)));
    const err = snapshotRead(this.world, dev, offsetBytes, out);
    if (err !== 0) throw new DriverError(err, 'read', `reading /dev/datto${minor}`);
    return out;
  }

  /** Create a file of `sizeBytes` in the scratch area (or on a mounted volume), parents included. */
  createFile(path: string, sizeBytes: number): void {
    const r = this.world.resolve(path);
    const loc = this.world.fileLocation(r);
    if (!loc) throw new DriverError(ERRNO.EEXIST, 'create', `${path} is a device`);
    if (r.kind === 'fs' && r.readOnly) throw new DriverError(ERRNO.EROFS, 'create', `${path} is on a read-only filesystem`);
    try {
      loc.ns.createSized(loc.rel, sizeBytes);
    } catch (e) {
      if (e instanceof FsError) throw new DriverError(e.errno, 'create', `${path}: ${e.message}`);
      throw e;
    }
  }

  /** mkdir -p in the scratch area or on a mounted volume. */
  mkdir(path: string): void {
    const loc = this.world.fileLocation(this.world.resolve(path));
    if (!loc) throw new DriverError(ERRNO.EEXIST, 'mkdir', `${path} is a device`);
    loc.ns.mkdirp(loc.rel);
  }

  /** unlink(2) of a file (EPERM for an in-use COW file). */
  unlink(path: string): void {
    const r = this.world.resolve(path);
    const loc = this.world.fileLocation(r);
    if (!loc) throw new DriverError(ERRNO.EPERM, 'unlink', `${path} is a device node`);
    if (r.kind === 'fs' && r.readOnly) throw new DriverError(ERRNO.EROFS, 'unlink', `${path} is on a read-only filesystem`);
    try {
      loc.ns.unlink(loc.rel);
    } catch (e) {
      if (e instanceof FsError) throw new DriverError(e.errno, 'unlink', `${path}: ${e.message}`);
      throw e;
    }
  }

  /** Whole-file bytes of a file (e.g. a COW file for the codec). */
  readFile(path: string): Uint8Array {
    const loc = this.world.fileLocation(this.world.resolve(path));
    if (!loc) throw new DriverError(ERRNO.EISDIR, 'read', `${path} is a device`);
    try {
      return loc.ns.readAll(loc.rel);
    } catch (e) {
      if (e instanceof FsError) throw new DriverError(e.errno, 'read', `${path}: ${e.message}`);
      throw e;
    }
  }

  /** Free bytes of the filesystem on `bdev`. */
  fsFreeBytes(bdev: string): number {
    return this.volume(bdev, 'statfs').fs.freeBytes();
  }

  openSnapshot(minor: number): void {
    const dev = this.world.devices[minor];
    if (!dev?.hasDisk) throw new DriverError(ERRNO.ENOENT, 'open', `/dev/datto${minor} does not exist`);
    dev.refs++;
  }

  closeSnapshot(minor: number): void {
    const dev = this.world.devices[minor];
    if (!dev || dev.refs === 0) throw new DriverError(ERRNO.EBADF, 'close', `/dev/datto${minor} is not open`);
    dev.refs--;
  }

  /** Clean reboot: unmount everything (active devices go dormant, files closed CLEAN), then forget devices. */
  reboot(): void {
    for (const vol of this.world.volumes.values()) {
      if (vol.mount) this.umount(vol.mount.mountPoint);
    }
    this.forgetDevices();
  }

  /** Crash: devices vanish without flushing; files keep only what was written; mounts are gone. */
  crash(): void {
    for (const dev of this.world.devices) {
      const f = dev?.cm?.file;
      if (f) {
        f.inode.immutable = false;
        f.close();
      }
    }
    for (const vol of this.world.volumes.values()) vol.mount = null;
    this.forgetDevices();
  }

  private forgetDevices(): void {
    this.world.devices = new Array(this.world.maxSnapDevices);
    this.world.faults.clear();
  }

  /** Mount point of a volume, if mounted. */
  mountPointOf(bdev: string): string | undefined {
    return this.volume(bdev, 'stat').mount?.mountPoint;
  }

  /** Join a mount point and a filesystem-relative path. */
  static join(mountPoint: string, rel: string): string {
    return posix.join(mountPoint, rel);
  }
}
