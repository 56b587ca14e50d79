// SPDX-License-Identifier: GPL-2.0-only
/**
 * The COW manager: one open `.datto` file, its header fields and the index
 * held in 32 KiB sections with the kernel's caching rules (SPEC §2.4–2.12).
 * All bytes go to a real file in the filesystem namespace, so the file can be
 * handed to the codec and to update-img at any time.
 */
import {
  COW_BLOCK_SIZE,
  COW_HEADER_SIZE,
  COW_MAGIC,
  COW_SECTION_BYTES,
  COW_SECTION_ENTRIES,
  COW_VERSION_CHANGED_BLOCKS,
  DEFAULT_CACHE_SIZE,
  FLAG_CLEAN,
  FLAG_INDEX_ONLY,
} from '../src/abi/constants.js';
import { ERRNO } from '../src/abi/errno.js';
import { decodeEntries, encodeEntries } from '../src/format/cow-index.js';
import { blocksCeil, cacheAllowance, geometry, type Geometry } from '../src/format/geometry.js';
import { decodeHeader, encodeHeader, headerLayoutError, indexEntrySaved, newHeader } from '../src/format/header.js';
import type { Counters, Faults } from './faults.js';
import { FsError, type FsNamespace, type NsFile } from './fs-namespace.js';

interface Section {
  e: Float64Array;
  dirty: boolean;
  usage: number;
}

/** Callback asked for more room when the data area is full (auto-expand). */
export type GrowFn = (cm: CowManager) => boolean;

export class CowManager {
  readonly geo: Geometry;
  /** Sections kept in memory: ceil-based, one more than on disk for P14 devices. */
  readonly memSects: number;
  file: NsFile | null = null;
  ns: FsNamespace;
  /** Path of the file inside its namespace (filesystem-root relative). */
  path: string;
  indexOnly = false;
  fpos: number;
  fsize: number;
  seqid: number;
  uuid: Uint8Array;
  version: number = COW_VERSION_CHANGED_BLOCKS;
  nrChanged = 0;
  cacheSize: number;
  private sections: (Section | undefined)[];
  private onDisk: boolean[];
  private resident = 0;

  private constructor(
    ns: FsNamespace,
    path: string,
    sizeSectors: number,
    o: { fsize: number; seqid: number; uuid: Uint8Array; cacheSize: number },
    private readonly counters: Counters,
    private readonly faults: Faults,
  ) {
    this.ns = ns;
    this.path = path;
    this.geo = geometry(sizeSectors);
    this.memSects = Math.max(this.geo.totalSects, Math.ceil(blocksCeil(sizeSectors) / COW_SECTION_ENTRIES));
    this.sections = new Array<Section | undefined>(this.memSects);
    this.onDisk = new Array<boolean>(this.memSects).fill(false);
    this.fpos = this.geo.firstDataBlk;
    this.fsize = o.fsize;
    this.seqid = o.seqid;
    this.uuid = o.uuid;
    this.cacheSize = o.cacheSize;
  }

  /**
   * Create a new COW file: open O_CREAT|O_TRUNC, preallocate, write the dirty
   * header. Throws FsError; on failure the created file is removed.
   */
  static create(
    ns: FsNamespace,
    path: string,
    sizeSectors: number,
    o: { fsize: number; seqid: number; uuid: Uint8Array; cacheSize: number },
    counters: Counters,
    faults: Faults,
  ): CowManager {
    const cm = new CowManager(ns, path, sizeSectors, o, counters, faults);
    const f = ns.createTrunc(path);
    cm.file = f;
    try {
      faults.take('fallocate');
      if (o.fsize > 0) f.fallocate(0, o.fsize);
      else throw new FsError(ERRNO.EINVAL, 'fallocate: zero-length COW file');
      cm.writeHeader(false);
    } catch (e) {
      f.close();
      cm.file = null;
      ns.forceUnlink(path);
      throw e;
    }
    f.inode.immutable = true;
    return cm;
  }

  /**
   * Reload an existing file (unverified → active, SPEC §2.10): header must
   * have the magic, CLEAN, and the expected INDEX_ONLY bit. Throws FsError.
   */
  static reload(
    ns: FsNamespace,
    path: string,
    sizeSectors: number,
    indexOnly: boolean,
    cacheSize: number,
    counters: Counters,
    faults: Faults,
  ): CowManager {
    const cm = new CowManager(ns, path, sizeSectors, { fsize: 0, seqid: 0, uuid: new Uint8Array(16), cacheSize }, counters, faults);
    cm.indexOnly = indexOnly;
    cm.openAndAdopt(ns, path);
    return cm;
  }

  /** Reopen after dormancy (dormant → active) with the same header checks. */
  reopen(ns: FsNamespace, path: string): void {
    this.openAndAdopt(ns, path, { uuid: this.uuid, seqid: this.seqid });
  }

  /** With `expect`, the file must be that one (same uuid and seqid); only a file that passed every check is marked in use. */
  private openAndAdopt(ns: FsNamespace, path: string, expect?: { uuid: Uint8Array; seqid: number }): void {
    const f = ns.open(path);
    try {
      const hb = new Uint8Array(64);
      f.read(hb, 0);
      const h = decodeHeader(hb);
      if (h.magic !== COW_MAGIC) throw new FsError(ERRNO.EINVAL, 'invalid magic number in cow file');
      if ((h.flags & FLAG_CLEAN) === 0) throw new FsError(ERRNO.EINVAL, 'cow file not left in clean state');
      if (((h.flags & FLAG_INDEX_ONLY) !== 0) !== this.indexOnly) {
        throw new FsError(ERRNO.EINVAL, this.indexOnly ? 'cow file is not index-only' : 'cow file is index-only');
      }
      const layout = headerLayoutError(h, this.geo, this.indexOnly, f.size());
      if (layout) throw new FsError(ERRNO.EINVAL, layout);
      if (expect && (expect.seqid !== h.seqid || !expect.uuid.every((b, i) => b === h.uuid[i]))) {
        throw new FsError(ERRNO.EINVAL, 'cow file was replaced while dormant');
      }
      this.fpos = h.fpos;
      this.fsize = h.fsize;
      this.seqid = h.seqid;
      this.uuid = h.uuid;
      this.version = h.version;
      this.nrChanged = h.nrChangedBlocks;
      this.ns = ns;
      this.path = path;
      this.file = f;
      this.sections = new Array<Section | undefined>(this.memSects);
      this.resident = 0;
      this.onDisk.fill(true);
      this.writeHeader(false);
    } catch (e) {
      if (this.file === f) this.file = null;
      f.close();
      if (e instanceof FsError) throw e;
      throw new FsError(ERRNO.EINVAL, `cow header unreadable: ${String(e)}`);
    }
    f.inode.immutable = true;
  }

  private requireFile(): NsFile {
    if (!this.file) throw new FsError(ERRNO.EIO, 'cow file is not open');
    return this.file;
  }

  writeHeader(clean: boolean): void {
    const h = newHeader({ fpos: this.fpos, fsize: this.fsize, seqid: this.seqid, uuid: this.uuid });
    h.flags = (clean ? FLAG_CLEAN : 0) | (this.indexOnly ? FLAG_INDEX_ONLY : 0);
    h.version = this.version;
    h.nrChangedBlocks = this.nrChanged;
    this.requireFile().write(encodeHeader(h), 0);
  }

  private section(s: number): Section {
    let sec = this.sections[s];
    if (!sec) {
      let e: Float64Array;
      if (this.onDisk[s] && s < this.geo.totalSects && this.file) {
        const raw = new Uint8Array(COW_SECTION_BYTES);
        this.file.read(raw, COW_HEADER_SIZE + s * COW_SECTION_BYTES);
        e = decodeEntries(raw, COW_SECTION_ENTRIES);
        this.counters.indexReads++;
      } else {
        e = new Float64Array(COW_SECTION_ENTRIES);
      }
      sec = { e, dirty: false, usage: 0 };
      this.sections[s] = sec;
      this.resident++;
    }
    sec.usage++;
    return sec;
  }

  get(block: number): number {
    const s = Math.floor(block / COW_SECTION_ENTRIES);
    if (s >= this.memSects) return 0;
    return this.section(s).e[block % COW_SECTION_ENTRIES] ?? 0;
  }

  set(block: number, value: number): void {
    const s = Math.floor(block / COW_SECTION_ENTRIES);
    if (s >= this.memSects) return;
    const sec = this.section(s);
    sec.e[block % COW_SECTION_ENTRIES] = value;
    sec.dirty = true;
  }

  private writeBack(s: number, sec: Section): void {
    if (!sec.dirty || s >= this.geo.totalSects) return;
    this.requireFile().write(encodeEntries(sec.e), COW_HEADER_SIZE + s * COW_SECTION_BYTES);
    this.onDisk[s] = true;
    sec.dirty = false;
    this.counters.indexWrites++;
  }

  /** Evict least-used sections when over the cache allowance (SPEC §2.12). */
  maybeEvict(): void {
    if (!this.file) return;
    const allowed = cacheAllowance(this.cacheSize > 0 ? this.cacheSize : DEFAULT_CACHE_SIZE, this.geo.totalSects);
    if (this.resident <= allowed) return;
    const cand: { s: number; sec: Section }[] = [];
    this.sections.forEach((sec, s) => {
      if (sec && s < this.geo.totalSects) cand.push({ s, sec });
    });
    cand.sort((a, b) => a.sec.usage - b.sec.usage);
    const target = Math.floor(allowed / 2);
    for (const { s, sec } of cand) {
      if (this.resident <= target) break;
      this.writeBack(s, sec);
      this.sections[s] = undefined;
      this.resident--;
    }
    for (const sec of this.sections) if (sec) sec.usage = 0;
  }

  flushIndex(): void {
    this.sections.forEach((sec, s) => {
      if (sec) this.writeBack(s, sec);
    });
  }

  /**
   * Sync index + CLEAN header, close, drop the immutable flag. If the sync
   * fails, the file is closed without CLEAN (never a CLEAN header over an
   * index that is not on disk) and the error is thrown.
   */
  closeClean(): void {
    const f = this.requireFile();
    try {
      this.faults.take('indexSync');
      this.flushIndex();
      this.writeHeader(true);
    } catch (e) {
      this.writeHeader(false);
      f.inode.immutable = false;
      f.close();
      this.file = null;
      throw e;
    }
    f.inode.immutable = false;
    f.close();
    this.file = null;
  }

  /** The failure path's "free members": unlink and close the COW file. */
  unlinkAndClose(): void {
    const f = this.file;
    if (!f) return;
    f.inode.immutable = false;
    if (!f.inode.unlinked) this.ns.forceUnlink(f.path);
    f.close();
    this.file = null;
  }

  /**
   * A reloaded snapshot file: the first block (of nblocks) whose index
   * entry does not point at saved data, or -1 (kernel dbd_cow_scan).
   */
  firstBadEntry(nblocks: number): number {
    for (let b = 0; b < nblocks; b++) {
      const v = this.get(b);
      if (v !== 0 && !indexEntrySaved(v, this.geo, this.fpos)) return b;
      if (b % COW_SECTION_ENTRIES === COW_SECTION_ENTRIES - 1) this.maybeEvict();
    }
    return -1;
  }

  /** Read (part of) a saved data block. */
  readData(value: number, out: Uint8Array, inBlock = 0): void {
    const f = this.requireFile();
    const n = f.read(out, value * COW_BLOCK_SIZE + inBlock);
    if (n < out.length) out.fill(0, n);
  }

  /**
   * SPEC §2.5 append rule for one block whose entry is zero. Returns 0 or an
   * errno (EFBIG when full and growth is refused, or the write error).
   */
  appendCow(block: number, data: Uint8Array, grow: GrowFn | undefined): number {
    this.set(block, this.fpos);
    while (this.fpos * COW_BLOCK_SIZE >= this.fsize) {
      if (!grow || !grow(this)) return ERRNO.EFBIG;
    }
    try {
      this.faults.take('cowWrite');
      this.requireFile().write(data, this.fpos * COW_BLOCK_SIZE);
    } catch (e) {
      return e instanceof FsError ? e.errno : ERRNO.EIO;
    }
    this.counters.cowWrites++;
    this.fpos++;
    if (this.version >= COW_VERSION_CHANGED_BLOCKS) this.nrChanged++;
    this.maybeEvict();
    return 0;
  }

  /** Incremental marking: entry := 1 (SPEC §2.4, §5.3). */
  markChanged(block: number): void {
    const prev = this.get(block);
    if (prev === 1) return;
    this.set(block, 1);
    if (prev === 0 && this.version >= COW_VERSION_CHANGED_BLOCKS) this.nrChanged++;
    this.maybeEvict();
  }

  /** Transition to incremental: truncate to the index, INDEX_ONLY (SPEC §2.8). */
  truncateToIndex(): void {
    const f = this.requireFile();
    try {
      f.truncate(this.geo.dataOffset);
    } catch {
      // a failed truncation is only a warning in the driver
    }
    this.fsize = this.geo.dataOffset;
    this.indexOnly = true;
  }

  /** fallocate `bytes` more at the end; throws FsError. */
  expand(bytes: number): void {
    const f = this.requireFile();
    this.faults.take('fallocate');
    f.fallocate(this.fsize, bytes);
    this.fsize += bytes;
  }
}
