// SPDX-License-Identifier: GPL-2.0-only
/**
 * BlockFile and DriverIo over node:fs, for the kernel backend: regular files
 * and block devices (whose size comes from sysfs, or BLKGETSIZE64 through
 * the native binding when sysfs does not know the device).
 */
import * as fs from 'node:fs';
import { errnoNumber } from '../abi/errno.js';
import { DriverError } from './errors.js';
import type { BlockFile, DriverIo } from './types.js';

/** Convert a node:fs error into a DriverError with the same errno. */
export function fsError(e: unknown, op: string, path: string): DriverError {
  const err = e as NodeJS.ErrnoException;
  const code = typeof err?.code === 'string' ? err.code : 'EIO';
  const errno = errnoNumber(code) ?? (typeof err?.errno === 'number' ? Math.abs(err.errno) : 5);
  return new DriverError(errno, op, `${op} ${path}: ${code}${err?.message ? ` (${err.message.replace(/^[A-Z]+: /, '')})` : ''}`);
}

/** Major and minor number of a dev_t as Node reports it (glibc encoding). */
export function devMajorMinor(rdev: number): { major: number; minor: number } {
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  return { major, minor };
}

export type BlockSizeProbe = (path: string) => number;

/** Size of a block device in bytes from /sys/dev/block/<maj>:<min>/size (sectors). */
export function sysfsBlockDeviceSize(rdev: number, sysRoot = '/sys'): number | undefined {
  const { major, minor } = devMajorMinor(rdev);
  try {
    const sectors = Number(fs.readFileSync(`${sysRoot}/dev/block/${major}:${minor}/size`, 'utf8').trim());
    return Number.isSafeInteger(sectors) ? sectors * 512 : undefined;
  } catch {
    return undefined;
  }
}

class NodeBlockFile implements BlockFile {
  private fd: number | undefined;
  private readonly sizeBytes: number;

  constructor(
    private readonly path: string,
    flags: 'r' | 'r+',
    probe: BlockSizeProbe | undefined,
  ) {
    try {
      this.fd = fs.openSync(path, flags);
    } catch (e) {
      throw fsError(e, 'open', path);
    }
    const st = fs.fstatSync(this.fd);
    if (st.isBlockDevice()) {
      const s = sysfsBlockDeviceSize(st.rdev) ?? probe?.(path);
      if (s === undefined) {
        this.close();
        throw new DriverError(5, 'size', `cannot determine the size of block device ${path}`, 'is /sys mounted?');
      }
      this.sizeBytes = s;
    } else {
      this.sizeBytes = st.size;
    }
  }

  private handle(): number {
    if (this.fd === undefined) throw new DriverError(9, 'io', `${this.path} is closed`);
    return this.fd;
  }

  size(): number {
    return this.sizeBytes;
  }

  read(buf: Uint8Array, offset: number): number {
    const fd = this.handle();
    let done = 0;
    try {
      while (done < buf.length) {
        const n = fs.readSync(fd, buf, done, buf.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw fsError(e, 'read', this.path);
    }
    return done;
  }

  write(buf: Uint8Array, offset: number): number {
    const fd = this.handle();
    let done = 0;
    try {
      while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, offset + done);
    } catch (e) {
      throw fsError(e, 'write', this.path);
    }
    return done;
  }

  sync(): void {
    try {
      fs.fdatasyncSync(this.handle());
    } catch (e) {
      throw fsError(e, 'fdatasync', this.path);
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
  }
}

/** DriverIo on the host's real filesystem. */
export function nodeIo(probe?: BlockSizeProbe): DriverIo {
  return {
    openRead: (path) => new NodeBlockFile(path, 'r', probe),
    openReadWrite: (path) => new NodeBlockFile(path, 'r+', probe),
    realpath: (path) => {
      try {
        return fs.realpathSync.native(path);
      } catch (e) {
        throw fsError(e, 'realpath', path);
      }
    },
    exists: (path) => fs.existsSync(path),
  };
}
