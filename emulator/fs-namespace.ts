// SPDX-License-Identifier: GPL-2.0-only
/**
 * The filesystem namespace in which COW files (and backup images) live.
 * memfs keeps the namespace: directories, file names, lookup, unlink. What
 * memfs cannot model is kept here per inode: the file bytes in a sparse page
 * store (memfs files are one contiguous buffer; a COW file's data area starts
 * after its index, gigabytes into the file on a large volume), preallocated
 * but unwritten space (fallocate), free-space accounting (ENOSPC, statfs for
 * auto-expand) and the in-memory immutable flag the driver puts on an
 * in-use COW file.
 */
import { posix } from 'node:path';
import { Volume as MemVolume } from 'memfs';
import { ERRNO } from '../src/abi/errno.js';
import { BlockStore } from './block-store.js';

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
  writeFileSync(path: string, data: string): void;
  statSync(path: string): { isDirectory(): boolean; isFile(): boolean; size: number };
  existsSync(path: string): boolean;
  mkdirSync(path: string, o?: { recursive?: boolean }): unknown;
  unlinkSync(path: string): void;
}

/** Per-inode state: bytes, size, allocation and the immutable flag. */
interface Inode {
  /** The file's bytes (sparse; never-written ranges read as zero). */
  data: BlockStore;
  /** File size (incl. a preallocated tail). */
  size: number;
  immutable: boolean;
  /** Bytes charged against the filesystem's free space. */
  charged: number;
  unlinked: boolean;
}

/** An open file: positional I/O that keeps working after unlink. */
export class NsFile {
  private open = true;

  constructor(
    private readonly ns: FsNamespace,
    readonly path: string,
    readonly inode: Inode,
  ) {}

  size(): number {
    return this.inode.size;
  }

  /** Read at `pos` (up to the file size). */
  read(buf: Uint8Array, pos: number): number {
    const want = Math.max(0, Math.min(buf.length, this.inode.size - pos));
    if (want === 0) return 0;
    this.inode.data.read(pos, buf.subarray(0, want));
    return want;
  }

  /** Write at `pos` (the driver's own writes; callers check immutability). */
  write(data: Uint8Array, pos: number): number {
    const end = pos + data.length;
    if (end > this.inode.size) {
      if (end > this.ns.maxFileBytes) throw new FsError(ERRNO.EFBIG, 'write beyond the maximum file size');
      this.ns.charge(this.inode, end);
    }
    this.inode.data.write(pos, data);
    if (end > this.inode.size) this.inode.size = end;
    return data.length;
  }

  truncate(len: number): void {
    if (this.inode.size > len) this.inode.data.zero(len, this.inode.size - len);
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
    this.open = false;
  }

  get isOpen(): boolean {
    return this.open;
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
      // a file created in memfs behind our back: empty
      ino = { data: new BlockStore(), size: 0, immutable: false, charged: 0, unlinked: false };
      this.inodes.set(p, ino);
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
      const f = new NsFile(this, p, ino);
      f.truncate(0);
      return f;
    }
    this.fs.writeFileSync(this.m(p), '');
    const ino: Inode = { data: new BlockStore(), size: 0, immutable: false, charged: 0, unlinked: false };
    this.inodes.set(p, ino);
    return new NsFile(this, p, ino);
  }

  /** Open an existing regular file. Errors: ENOENT, EISDIR. */
  open(path: string): NsFile {
    const p = FsNamespace.norm(path);
    const k = this.kind(p);
    if (k === 'none') throw new FsError(ERRNO.ENOENT, `${p} does not exist`);
    if (k === 'dir') throw new FsError(ERRNO.EISDIR, `${p} is a directory`);
    return new NsFile(this, p, this.inodeOf(p));
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
