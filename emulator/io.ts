// SPDX-License-Identifier: GPL-2.0-only
/**
 * DriverIo of the emulated world: /dev/datto<N> (read-only snapshot device,
 * counts as open while the handle lives), volumes as raw block devices (writes
 * are traced), files on mounted volumes, and the host scratch area.
 */
import { CTL_DEVICE_PATH, PROC_INFO_PATH } from '../src/abi/constants.js';
import { ERRNO } from '../src/abi/errno.js';
import { DriverError } from '../src/driver/errors.js';
import type { BlockFile, DriverIo } from '../src/driver/types.js';
import { FsError, type NsFile } from './fs-namespace.js';
import { procText } from './proc.js';
import { snapshotRead, tracedWrite } from './tracer.js';
import { World } from './world.js';

function fsErr(e: unknown, op: string, path: string): never {
  if (e instanceof FsError) throw new DriverError(e.errno, op, `${op} ${path}: ${e.message}`);
  throw e;
}

function fileHandle(f: NsFile, path: string, writable: boolean, readOnlyMount: boolean): BlockFile {
  let open = true;
  const live = (): void => {
    if (!open) throw new DriverError(ERRNO.EBADF, 'io', `${path} is closed`);
  };
  return {
    size: () => f.size(),
    read: (buf, offset) => {
      live();
      return f.read(buf, offset);
    },
    write: (buf, offset) => {
      live();
      if (!writable) throw new DriverError(ERRNO.EBADF, 'write', `${path} is open read-only`);
      if (readOnlyMount) throw new DriverError(ERRNO.EROFS, 'write', `${path} is on a read-only filesystem`);
      if (f.inode.immutable) throw new DriverError(ERRNO.EPERM, 'write', `${path} is an in-use COW file`, 'the driver owns this file until it is closed cleanly');
      try {
        return f.write(buf, offset);
      } catch (e) {
        return fsErr(e, 'write', path);
      }
    },
    close: () => {
      if (open) f.close();
      open = false;
    },
  };
}

export class EmulatorIo implements DriverIo {
  constructor(private readonly w: World) {}

  private open(path: string, writable: boolean): BlockFile {
    const w = this.w;
    const norm = World.norm(path);
    if (norm === PROC_INFO_PATH) {
      if (writable) throw new DriverError(ERRNO.EACCES, 'open', `${PROC_INFO_PATH} is read-only`);
      const text = new TextEncoder().encode(procText(w)); // a snapshot taken at open, like seq_file
      return {
        size: () => text.length,
        read: (buf, offset) => {
          const n = Math.max(0, Math.min(buf.length, text.length - offset));
          if (n > 0) buf.set(text.subarray(offset, offset + n));
          return n;
        },
        write: () => {
          throw new DriverError(ERRNO.EBADF, 'write', `${PROC_INFO_PATH} is open read-only`);
        },
        close: () => undefined,
      };
    }
    if (norm === CTL_DEVICE_PATH) {
      throw new DriverError(ERRNO.EINVAL, 'open', `${CTL_DEVICE_PATH} only takes ioctls`, 'use the ctl interface of the backend');
    }
    const r = w.resolve(path);
    if (r.kind === 'snapdev') {
      if (writable) throw new DriverError(ERRNO.EROFS, 'open', `${r.path} is a read-only snapshot device`);
      const dev = r.dev;
      dev.refs++;
      let open = true;
      const size = dev.vol?.sizeBytes ?? 0;
      return {
        size: () => size,
        read: (buf, offset) => {
          if (!open) throw new DriverError(ERRNO.EBADF, 'read', `${r.path} is closed`);
          const n = Math.max(0, Math.min(buf.length, size - offset));
          if (n === 0) return 0;
          const err = snapshotRead(w, dev, offset, buf.subarray(0, n));
          if (err !== 0) {
            throw new DriverError(err, 'read', `reading ${r.path} at ${offset}: ${err === ERRNO.EBUSY ? 'snapshot is dormant' : 'snapshot has failed'}`,
              err === ERRNO.EBUSY ? 'mount the origin filesystem read-write again' : 'destroy the device and take a new full backup');
          }
          return n;
        },
        write: () => {
          throw new DriverError(ERRNO.EOPNOTSUPP, 'write', `${r.path} is read-only`);
        },
        close: () => {
          if (open) dev.refs--;
          open = false;
        },
      };
    }
    if (r.kind === 'bdev') {
      const vol = r.vol;
      return {
        size: () => vol.sizeBytes,
        read: (buf, offset) => {
          const n = Math.max(0, Math.min(buf.length, vol.sizeBytes - offset));
          if (n > 0) vol.readInto(offset, buf.subarray(0, n));
          return n;
        },
        write: (buf, offset) => {
          if (!writable) throw new DriverError(ERRNO.EBADF, 'write', `${r.path} is open read-only`);
          if (offset < 0 || offset + buf.length > vol.sizeBytes) throw new DriverError(ERRNO.ENOSPC, 'write', `write past the end of ${r.path}`);
          tracedWrite(w, vol, offset, buf.length, () => vol.write(offset, buf));
          return buf.length;
        },
        close: () => undefined,
      };
    }
    const loc = w.fileLocation(r);
    if (!loc) throw new DriverError(ERRNO.ENOENT, 'open', `${path} does not exist`);
    let f: NsFile;
    try {
      f = loc.ns.open(loc.rel);
    } catch (e) {
      return fsErr(e, 'open', path);
    }
    const ro = r.kind === 'fs' && r.readOnly;
    if (writable && ro) {
      f.close();
      throw new DriverError(ERRNO.EROFS, 'open', `${path} is on a read-only filesystem`);
    }
    if (writable && f.inode.immutable) {
      f.close();
      throw new DriverError(ERRNO.EPERM, 'open', `${path} is an in-use COW file`, 'the driver owns this file until it is closed cleanly');
    }
    return fileHandle(f, path, writable, ro);
  }

  openRead(path: string): BlockFile {
    return this.open(path, false);
  }

  openReadWrite(path: string): BlockFile {
    return this.open(path, true);
  }

  realpath(path: string): string {
    if (!this.exists(path)) throw new DriverError(ERRNO.ENOENT, 'realpath', `${path} does not exist`);
    return this.w.resolve(path).path;
  }

  exists(path: string): boolean {
    const norm = World.norm(path);
    if (norm === CTL_DEVICE_PATH || norm === PROC_INFO_PATH) return true; // the driver is loaded
    const r = this.w.resolve(path);
    if (r.kind === 'bdev' || r.kind === 'snapdev') return true;
    const loc = this.w.fileLocation(r);
    return loc !== undefined && loc.ns.kind(loc.rel) !== 'none';
  }
}
