// SPDX-License-Identifier: GPL-2.0-only
/**
 * The filesystem namespace in which COW files (and backup images) live.
 * Paths, directories and file bytes are kept by memfs; what memfs cannot
 * model is added here: preallocated-but-unwritten space (fallocate), free
 * space accounting (ENOSPC, statfs for auto-expand) and the in-memory
 * immutable flag the driver puts on an in-use COW file.
 */
import { posix } from 'node:path';
import { Volume as MemVolume } from 'memfs';
import { ERRNO } from '../src/abi/errno.js';

/** An errno-carrying failure of a namespace operation. */
export class FsError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = 'FsError';
  }
}

interface MemFs {
  openSync(path: string, flags: string): number;
  closeSync(fd: number): void;
  readSync(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number;
  writeSync(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number;
  ftruncateSync(fd: number, len: number): void;
  fstatSync(fd: number): { size: number };
  statSync(path: string): { isDirectory(): boolean; isFile(): boolean; size: number };
  existsSync(path: string): boolean;
  mkdirSync(path: string, o?: { recursive?: boolean }): unknown;
  unlinkSync(path: string): void;
}

/** Per-inode bookkeeping: allocated size and the immutable flag. */
interface Inode {
  /** Logical size incl. preallocated tail (memfs holds only the written prefix). */
  size: number;
  immutable: boolean;
  /** Bytes charged against the filesystem's free space. */
  charged: number;
  unlinked: boolean;
}

/** An open file: positional I/O that keeps working after unlink. */
export class NsFile {
  constructor(
    private readonly ns: FsNamespace,
    readonly path: string,
    private readonly fd: number,
    readonly inode: Inode,
  ) {}

  size(): number {
    return this.inode.size;
  }

  /** Read at `pos`; bytes past the written prefix but inside the size read as zero. */
  read(buf: Uint8Array, pos: number): number {
    const want = Math.max(0, Math.min(buf.length, this.inode.size - pos));
    if (want === 0) return 0;
    const got = this.ns.fs.readSync(this.fd, buf, 0, want, pos);
    if (got < want) buf.fill(0, got, want);
    return want;
  }

  /** Write at `pos` (the driver's own writes; callers check immutability). */
  write(data: Uint8Array, pos: number): number {
    const end = pos + data.length;
    if (end > this.inode.size) this.ns.charge(this.inode, end);
    this.ns.fs.writeSync(this.fd, data, 0, data.length, pos);
    if (end > this.inode.size) this.inode.size = end;
    return data.length;
  }

  truncate(len: number): void {
    const real = this.ns.fs.fstatSync(this.fd).size;
    if (real > len) this.ns.fs.ftruncateSync(this.fd, len);
    this.inode.size = len;
    this.ns.release(this.inode, len);
  }

  /** fallocate(mode 0) of [offset, offset+len): extends the size, charges the space. */
  fallocate(offset: number, len: number): void {
    if (len <= 0 || offset < 0) throw new FsError(ERRNO.EINVAL, 'fallocate: invalid range');
    const end = offset + len;
    if (end > this.ns.maxFileBytes) throw new FsError(ERRNO.EFBIG, 'fallocate: beyond the maximum file size');
    if (end > this.inode.size) {
      this.ns.charge(this.inode, end);
      this.inode.size = end;
    }
  }

  close(): void {
    this.ns.fs.closeSync(this.fd);
  }
}

/**
 * A fresh memfs volume (its *Sync methods are all we use; creating the
 * volume alone is ~5× cheaper than memfs()). One instance can hold several
 * namespaces, each under its own prefix.
 */
export function newMemFs(): MemFs {
  return new MemVolume() as unknown as MemFs;
}

export class FsNamespace {
  readonly fs: MemFs;
  private readonly inodes = new Map<string, Inode>();
  private used = 0;
  /** Directory of the shared memfs that is this namespace's root ('' = memfs root). */
  private readonly prefix: string;

  /**
   * @param capacityBytes free space of the filesystem when empty
   * @param o.fs a memfs shared with other namespaces (each under its own prefix)
   * @param o.maxFileBytes s_maxbytes (ext4 with 4 KiB blocks: 16 TiB - 4 KiB)
   */
  constructor(
    public capacityBytes: number,
    o: { fs?: MemFs; prefix?: string; maxFileBytes?: number } = {},
  ) {
    this.fs = o.fs ?? newMemFs();
    this.prefix = o.prefix ?? '';
    this.maxFileBytes = o.maxFileBytes ?? 17592186040320;
    if (this.prefix) this.fs.mkdirSync(this.prefix, { recursive: true });
  }

  readonly maxFileBytes: number;

  /** Path inside the shared memfs. */
  private m(p: string): string {
    return this.prefix + p;
  }

  freeBytes(): number {
    return Math.max(0, this.capacityBytes - this.used);
  }

  /** statfs: f_bsize 4096, f_bavail in blocks. */
  statfs(): { bsize: number; bavail: number } {
    return { bsize: 4096, bavail: Math.floor(this.freeBytes() / 4096) };
  }

  charge(inode: Inode, newSize: number): void {
    const need = Math.max(0, newSize - inode.charged);
    if (need > this.freeBytes()) throw new FsError(ERRNO.ENOSPC, 'no space left on the filesystem');
    inode.charged += need;
    this.used += need;
  }

  release(inode: Inode, newSize: number): void {
    if (inode.charged > newSize) {
      this.used -= inode.charged - newSize;
      inode.charged = newSize;
    }
  }

  static norm(p: string): string {
    return posix.resolve('/', p);
  }

  kind(path: string): 'file' | 'dir' | 'none' {
    const p = FsNamespace.norm(path);
    if (!this.fs.existsSync(this.m(p))) return 'none';
    return this.fs.statSync(this.m(p)).isDirectory() ? 'dir' : 'file';
  }

  mkdirp(path: string): void {
    this.fs.mkdirSync(this.m(FsNamespace.norm(path)), { recursive: true });
  }

  private inodeOf(p: string): Inode {
    let ino = this.inodes.get(p);
    if (!ino) {
      const size = this.fs.statSync(this.m(p)).size;
      ino = { size, immutable: false, charged: 0, unlinked: false };
      this.inodes.set(p, ino);
      this.charge(ino, size);
    }
    return ino;
  }

  isImmutable(path: string): boolean {
    return this.inodes.get(FsNamespace.norm(path))?.immutable ?? false;
  }

  /**
   * open(O_CREAT|O_TRUNC|O_RDWR) as the driver does for a new COW file.
   * Errors: ENOENT (no parent), ENOTDIR, EISDIR, EPERM (immutable).
   */
  createTrunc(path: string): NsFile {
    const p = FsNamespace.norm(path);
    const k = this.kind(p);
    if (k === 'dir') throw new FsError(ERRNO.EISDIR, `${p} is a directory`);
    const parent = posix.dirname(p);
    const pk = this.kind(parent);
    if (pk === 'none') throw new FsError(ERRNO.ENOENT, `directory ${parent} does not exist`);
    if (pk === 'file') throw new FsError(ERRNO.ENOTDIR, `${parent} is not a directory`);
    if (k === 'file') {
      const ino = this.inodeOf(p);
      if (ino.immutable) throw new FsError(ERRNO.EPERM, `${p} is an in-use COW file (immutable)`);
      const fd = this.fs.openSync(this.m(p), 'r+');
      const f = new NsFile(this, p, fd, ino);
      f.truncate(0);
      return f;
    }
    const fd = this.fs.openSync(this.m(p), 'w+');
    const ino: Inode = { size: 0, immutable: false, charged: 0, unlinked: false };
    this.inodes.set(p, ino);
    return new NsFile(this, p, fd, ino);
  }

  /** Open an existing regular file. Errors: ENOENT, EISDIR. */
  open(path: string): NsFile {
    const p = FsNamespace.norm(path);
    const k = this.kind(p);
    if (k === 'none') throw new FsError(ERRNO.ENOENT, `${p} does not exist`);
    if (k === 'dir') throw new FsError(ERRNO.EISDIR, `${p} is a directory`);
    return new NsFile(this, p, this.fs.openSync(this.m(p), 'r+'), this.inodeOf(p));
  }

  /** Create a file of `size` bytes (sparse-ish: charged, not materialised). */
  createSized(path: string, size: number): void {
    const p = FsNamespace.norm(path);
    this.mkdirp(posix.dirname(p));
    const f = this.createTrunc(p);
    try {
      if (size > 0) f.fallocate(0, size);
    } finally {
      f.close();
    }
  }

  unlink(path: string): void {
    const p = FsNamespace.norm(path);
    const k = this.kind(p);
    if (k === 'dir') throw new FsError(ERRNO.EISDIR, `${p} is a directory`);
    if (k === 'none') throw new FsError(ERRNO.ENOENT, `${p} does not exist`);
    const ino = this.inodeOf(p);
    if (ino.immutable) throw new FsError(ERRNO.EPERM, `${p} is an in-use COW file (immutable)`);
    this.forceUnlink(p);
  }

  /** Unlink regardless of the immutable flag (the driver's own unlink). */
  forceUnlink(path: string): void {
    const p = FsNamespace.norm(path);
    const ino = this.inodes.get(p);
    this.fs.unlinkSync(this.m(p));
    if (ino) {
      ino.unlinked = true;
      ino.immutable = false;
      this.release(ino, 0);
      this.inodes.delete(p);
    }
  }

  setImmutable(path: string, on: boolean): void {
    const ino = this.inodes.get(FsNamespace.norm(path));
    if (ino) ino.immutable = on;
  }

  /** Whole-file bytes (for the codec, tests and tools). */
  readAll(path: string): Uint8Array {
    const f = this.open(path);
    try {
      const out = new Uint8Array(f.size());
      f.read(out, 0);
      return out;
    } finally {
      f.close();
    }
  }
}
