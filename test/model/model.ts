// SPDX-License-Identifier: GPL-2.0-only
/**
 * An independent reference model of the driver for model-based tests: one
 * volume (/dev/vda mounted on /mnt), its filesystem's files, the minor table,
 * and armed faults. Written from SPEC.md directly, much simpler than the
 * emulator (whole-volume arrays, Maps of saved blocks), so that the two can be
 * compared command by command.
 */
import { posix } from 'node:path';
import { ERRNO } from '../../src/abi/errno.js';

export const MIB = 1048576;
export const BLK = 4096;

/** The world every model run starts from. */
export const CFG = {
  vol: '/dev/vda',
  mnt: '/mnt',
  /** 512 KiB minus 7 sectors: the last 4 KiB block is partial (one sector), SPEC P11/P14. */
  sizeBytes: MIB / 2 - 7 * 512,
  /** The partition starts on an odd sector, so every 4 KiB block straddles two disk pages. */
  partitionOffsetSectors: 63,
  /** Free space of the volume's filesystem when empty. */
  fsBytes: 8 * MIB,
  maxMinors: 4,
  pct: 10,
  /** Geometry (SPEC §2.1): 127 whole blocks + 1 partial, 1 section. */
  dataOffset: 4096 + 32768,
  firstDataBlk: 9,
} as const;

/** Blocks touched by the volume, counting the partial last one. */
export const NBLOCKS = Math.ceil(CFG.sizeBytes / BLK);

export type FaultKind = 'cowWrite' | 'fallocate' | 'originRead';

export interface FileRec {
  /** Allocated bytes (charged against free space). */
  size: number;
  /** fsize as the header will say. */
  fsize: number;
  inUse: boolean;
  clean: boolean;
  indexOnly: boolean;
  /** Snapshot mode: original contents of saved blocks. */
  saved: Map<number, Uint8Array>;
  /** Blocks written since the series' snapshot instant (tracked into this file). */
  changed: Set<number>;
  /** Index entries that are non-zero (nr_changed_blocks counts them). */
  nonzero: Set<number>;
  /** A write happened that this file did not track: its contents no longer describe "since the instant". */
  broken: boolean;
  /**
   * Original contents of every block first written since this file's
   * snapshot instant (whatever the device did with the write): the instant
   * image is these blocks over the live volume.
   */
  orig: Map<number, Uint8Array>;
}

export interface DevRec {
  minor: number;
  state: number;
  error: number;
  refs: number;
  /** File path inside the volume's filesystem (active/dormant) or as given (unverified). */
  cow: string;
  bdev: string;
  fallocMib: number;
  fromIndex: boolean;
  auto: { step: number; res: number } | undefined;
  pendSnap: Map<number, Uint8Array>;
  pendInc: Set<number>;
}

const SNAP = 1;
const ACTIVE = 2;
const UNVERIFIED = 4;

export class Model {
  live = new Uint8Array(CFG.sizeBytes);
  mount: { ro: boolean } | null = { ro: false };
  readonly files = new Map<string, FileRec>();
  readonly dirs = new Set<string>(['/', '/d']);
  devs: (DevRec | undefined)[] = new Array(CFG.maxMinors);
  faults = new Map<FaultKind, number>();
  /** Commands checked so far (the full-volume comparison runs every 16th). */
  checks = 0;
  /** Set when a property check inside a command needs the real system (transition-to-snapshot). */
  lastTransition: { oldPath: string; oldInstant: Uint8Array | null; changed: Set<number> } | undefined;

  free(): number {
    let used = 0;
    for (const f of this.files.values()) used += f.size;
    return CFG.fsBytes - used;
  }

  take(kind: FaultKind): number {
    const e = this.faults.get(kind);
    if (e === undefined) return 0;
    this.faults.delete(kind);
    return e;
  }

  static hasDisk(d: DevRec): boolean {
    return (d.state & SNAP) !== 0 && (d.state & UNVERIFIED) === 0;
  }

  validMinor(m: number): boolean {
    return Number.isInteger(m) && m >= 0 && m < CFG.maxMinors;
  }

  /** range → existence → busy → failed → state; returns the device or an errno. */
  check(minor: number, o: { busy?: boolean; failed?: boolean; state?: number[] }): DevRec | number {
    if (!this.validMinor(minor)) return ERRNO.EINVAL;
    const d = this.devs[minor];
    if (!d) return ERRNO.ENOENT;
    if (o.busy && d.refs > 0) return ERRNO.EBUSY;
    if (o.failed && d.error !== 0) return ERRNO.EINVAL;
    if (o.state && !o.state.includes(d.state)) return ERRNO.EINVAL;
    return d;
  }

  fileOf(d: DevRec): FileRec | undefined {
    return this.files.get(d.cow);
  }

  fail(d: DevRec, errno: number): void {
    if (d.error === 0) d.error = -errno;
    if ((d.state & ACTIVE) !== 0 && (d.state & UNVERIFIED) === 0) {
      const f = this.files.get(d.cow);
      if (f?.inUse) this.files.delete(d.cow);
    }
    d.pendInc.clear();
    d.pendSnap.clear();
  }

  /** The device tracing the volume: set up, not unverified, not failed. */
  tracer(): DevRec | undefined {
    for (const d of this.devs) if (d && (d.state & UNVERIFIED) === 0 && d.error === 0) return d;
    return undefined;
  }

  private tracedByOther(self: DevRec | undefined): boolean {
    return this.devs.some((d) => d && d !== self && (d.state & UNVERIFIED) === 0);
  }

  // ---- the COW append rule with auto-expand and faults ----

  private grow(d: DevRec, f: FileRec): boolean {
    const ae = d.auto;
    if (!ae || ae.step === 0) return false;
    const need = Math.ceil(((ae.step + ae.res) * MIB) / 4096);
    if (need > Math.floor(this.free() / 4096)) return false;
    const fe = this.take('fallocate');
    if (fe) {
      this.fail(d, fe);
      return false;
    }
    const end = f.fsize + ae.step * MIB;
    if (end > f.size) {
      if (end - f.size > this.free()) {
        this.fail(d, ERRNO.ENOSPC);
        return false;
      }
      f.size = end;
    }
    f.fsize = end;
    return true;
  }

  /** Save block b (data = its old contents). Returns false if the device failed. */
  private append(d: DevRec, f: FileRec, b: number, data: Uint8Array): boolean {
    const fpos = CFG.firstDataBlk + f.saved.size;
    while (fpos * BLK >= f.fsize) {
      if (!this.grow(d, f)) {
        this.fail(d, ERRNO.EFBIG);
        return false;
      }
    }
    const we = this.take('cowWrite');
    if (we) {
      this.fail(d, we);
      return false;
    }
    const end = (fpos + 1) * BLK;
    if (end > f.size) {
      if (end - f.size > this.free()) {
        this.fail(d, ERRNO.ENOSPC);
        return false;
      }
      f.size = end;
    }
    f.saved.set(b, data);
    f.nonzero.add(b);
    return true;
  }

  block(b: number): Uint8Array {
    return this.live.slice(b * BLK, (b + 1) * BLK);
  }

  // ---- I/O ----

  /** A write-like request; `apply` changes the live image afterwards. */
  write(off: number, len: number, apply: () => void): void {
    const d = len > 0 ? this.tracer() : undefined;
    const owned = d ? d.cow : undefined;
    for (const [p, f] of this.files) if (p !== owned || !d) f.broken = true;
    if (d && len > 0) {
      const first = Math.floor(off / BLK);
      const last = Math.ceil((off + len) / BLK) - 1;
      const f = this.fileOf(d);
      if (f && !f.broken) for (let b = first; b <= last; b++) if (!f.orig.has(b)) f.orig.set(b, this.block(b));
      const active = (d.state & ACTIVE) !== 0;
      if (f) for (let b = first; b <= last; b++) f.changed.add(b);
      if (active && f) {
        if ((d.state & SNAP) === 0) for (let b = first; b <= last; b++) f.nonzero.add(b);
        if ((d.state & SNAP) !== 0) {
          for (let b = first; b <= last; b++) {
            if (f.saved.has(b)) continue;
            const oe = this.take('originRead');
            if (oe) {
              this.fail(d, oe);
              break;
            }
            if (!this.append(d, f, b, this.block(b))) break;
          }
        }
      } else if ((d.state & SNAP) !== 0) {
        for (let b = first; b <= last; b++) if (!d.pendSnap.has(b)) d.pendSnap.set(b, this.block(b));
      } else {
        for (let b = first; b <= last; b++) d.pendInc.add(b);
      }
    }
    apply();
  }

  /** The volume at the file's snapshot instant (null if the file missed writes). */
  instantImage(f: FileRec): Uint8Array | null {
    if (f.broken) return null;
    const img = this.live.slice();
    for (const [b, data] of f.orig) img.set(data, b * BLK);
    return img;
  }

  /** [off, off+len) of the volume at the file's snapshot instant (null if unknown). */
  instantRange(f: FileRec, off: number, len: number): Uint8Array | null {
    return f.broken ? null : this.overlay(f.orig, off, len);
  }

  /** What /dev/datto<minor> must read at [off, off+len): saved blocks over the live volume. */
  snapshotRange(d: DevRec, off: number, len: number): Uint8Array {
    const f = this.fileOf(d);
    return f ? this.overlay(f.saved, off, len) : this.live.slice(off, off + len);
  }

  private overlay(blocks: Map<number, Uint8Array>, off: number, len: number): Uint8Array {
    const out = this.live.slice(off, off + len);
    for (let b = Math.floor(off / BLK); b * BLK < off + len; b++) {
      const data = blocks.get(b);
      if (!data) continue;
      const from = Math.max(off, b * BLK);
      const to = Math.min(off + len, (b + 1) * BLK);
      out.set(data.subarray(from - b * BLK, to - b * BLK), from - off);
    }
    return out;
  }

  // ---- COW file creation (setup / transition-to-snapshot) ----

  private createCow(path: string, fsize: number): { rel: string } | number {
    if (path === CFG.vol) return ERRNO.EINVAL;
    if (!this.mount || !(path === CFG.mnt || path.startsWith(CFG.mnt + '/'))) {
      // host scratch area: only /tmp exists there
      if (posix.dirname(path) !== '/tmp') return ERRNO.ENOENT;
      const fe = this.take('fallocate');
      if (fe) return fe;
      return ERRNO.EINVAL; // not on the snapshotted filesystem
    }
    const rel = posix.resolve('/', path.slice(CFG.mnt.length) || '/');
    if (this.dirs.has(rel)) return ERRNO.EISDIR;
    const parent = posix.dirname(rel);
    if (!this.dirs.has(parent)) return this.files.has(parent) ? ERRNO.ENOTDIR : ERRNO.ENOENT;
    if (this.mount.ro) return ERRNO.EROFS;
    const old = this.files.get(rel);
    if (old?.inUse) return ERRNO.EPERM;
    this.files.delete(rel); // O_TRUNC frees the old blocks
    const fe = this.take('fallocate');
    if (fe) return fe;
    if (fsize > this.free()) return ERRNO.ENOSPC;
    this.files.set(rel, {
      size: fsize,
      fsize,
      inUse: true,
      clean: false,
      indexOnly: false,
      saved: new Map(),
      changed: new Set(),
      nonzero: new Set(),
      broken: false,
      orig: new Map(),
    });
    return { rel };
  }

  private cowSize(mib: number): number {
    return mib > 0 ? mib * MIB : Math.floor((CFG.sizeBytes * CFG.pct) / 100);
  }

  // ---- ioctls: each returns the expected errno (0 = ok) and applies the effect ----

  setup(minor: number, bdev: string, cow: string, mib: number): number {
    if (!this.validMinor(minor)) return ERRNO.EINVAL;
    if (this.devs[minor]) return ERRNO.EBUSY;
    const b = this.bdevKind(bdev);
    if (b) return b;
    if (!this.mount || this.mount.ro) return ERRNO.EINVAL;
    if (this.tracedByOther(undefined)) return ERRNO.EINVAL;
    const fsize = this.cowSize(mib);
    const c = this.createCow(cow, fsize);
    if (typeof c === 'number') return c;
    this.devs[minor] = {
      minor,
      state: 3,
      error: 0,
      refs: 0,
      cow: c.rel,
      bdev: CFG.vol,
      fallocMib: mib > 0 ? mib : Math.floor(fsize / MIB),
      fromIndex: false,
      auto: undefined,
      pendSnap: new Map(),
      pendInc: new Set(),
    };
    return 0;
  }

  private bdevKind(bdev: string): number {
    if (bdev === CFG.vol) return 0;
    if (bdev === '/tmp') return ERRNO.ENOTBLK;
    return ERRNO.ENOENT;
  }

  reload(minor: number, bdev: string, cow: string, snap: boolean): number {
    if (!this.validMinor(minor)) return ERRNO.EINVAL;
    if (this.devs[minor]) return ERRNO.EBUSY;
    const b = this.bdevKind(bdev);
    if (b) return b;
    if (this.mount && !this.mount.ro) return ERRNO.EINVAL;
    this.devs[minor] = {
      minor,
      state: snap ? 5 : 4,
      error: 0,
      refs: 0,
      cow,
      bdev,
      fallocMib: 0,
      fromIndex: false,
      auto: undefined,
      pendSnap: new Map(),
      pendInc: new Set(),
    };
    return 0;
  }

  destroy(minor: number): number {
    const d = this.check(minor, { busy: true });
    if (typeof d === 'number') return d;
    if ((d.state & UNVERIFIED) === 0 && d.error === 0 && (d.state & ACTIVE) !== 0) this.files.delete(d.cow);
    this.devs[minor] = undefined;
    return 0;
  }

  transitionInc(minor: number): number {
    const d = this.check(minor, { busy: true, failed: true, state: [3] });
    if (typeof d === 'number') return d;
    const f = this.fileOf(d);
    if (f) {
      f.size = Math.min(f.size, CFG.dataOffset);
      f.fsize = CFG.dataOffset;
      f.indexOnly = true;
    }
    d.state = 2;
    d.auto = undefined;
    return 0;
  }

  transitionSnap(minor: number, cow: string, mib: number): number {
    const d = this.check(minor, { busy: true, failed: true, state: [2] });
    if (typeof d === 'number') return d;
    const useMib = mib > 0 ? mib : d.fromIndex ? 0 : d.fallocMib;
    const fsize = this.cowSize(useMib);
    const oldPath = d.cow;
    const old = this.files.get(oldPath);
    const c = this.createCow(cow, fsize);
    if (typeof c === 'number') return c;
    if (old) {
      old.clean = true;
      old.inUse = false;
      this.lastTransition = { oldPath, oldInstant: this.instantImage(old), changed: new Set(old.changed) };
    }
    d.cow = c.rel;
    d.fallocMib = useMib > 0 ? useMib : Math.floor(fsize / MIB);
    d.fromIndex = false;
    d.auto = undefined;
    d.state = 3;
    return 0;
  }

  reconfigure(minor: number): number {
    const d = this.check(minor, { busy: true, failed: true });
    return typeof d === 'number' ? d : 0;
  }

  info(minor: number): number {
    const d = this.check(minor, {});
    return typeof d === 'number' ? d : 0;
  }

  getFree(): number {
    for (let i = 0; i < CFG.maxMinors; i++) if (!this.devs[i]) return -i;
    return ERRNO.ENOENT;
  }

  expand(minor: number, mib: number): number {
    const d = this.check(minor, { failed: true, state: [3] });
    if (typeof d === 'number') return d;
    const f = this.fileOf(d);
    if (!f) return ERRNO.EINVAL;
    const fe = this.take('fallocate');
    let err = fe;
    if (!err && mib === 0) err = ERRNO.EINVAL;
    if (!err) {
      const end = f.fsize + mib * MIB;
      if (end > f.size && end - f.size > this.free()) err = ERRNO.ENOSPC;
      else {
        f.size = Math.max(f.size, end);
        f.fsize = end;
      }
    }
    if (err) this.fail(d, err);
    return err;
  }

  autoExpand(minor: number, step: number, res: number): number {
    const d = this.check(minor, { failed: true, state: [3] });
    if (typeof d === 'number') return d;
    d.auto = { step, res };
    return 0;
  }

  // ---- snapshot device handles ----

  open(minor: number): number {
    const d = this.devs[minor];
    if (!d || !Model.hasDisk(d)) return ERRNO.ENOENT;
    d.refs++;
    return 0;
  }

  close(minor: number): number {
    const d = this.devs[minor];
    if (!d || d.refs === 0) return ERRNO.EBADF;
    d.refs--;
    return 0;
  }

  /** Expected errno of reading /dev/datto<minor>. */
  readErrno(minor: number): number {
    const d = this.devs[minor];
    if (!d || !Model.hasDisk(d)) return ERRNO.ENOENT;
    if (d.error !== 0) return ERRNO.EIO;
    if ((d.state & ACTIVE) === 0) return ERRNO.EBUSY;
    return 0;
  }

  // ---- mounts ----

  private drain(d: DevRec, f: FileRec): void {
    if ((d.state & SNAP) !== 0) {
      for (const b of [...d.pendSnap.keys()].sort((x, y) => x - y)) {
        if (f.saved.has(b)) continue;
        const data = d.pendSnap.get(b);
        if (data && !this.append(d, f, b, data)) break;
      }
    } else {
      for (const b of d.pendInc) f.nonzero.add(b);
    }
    d.pendSnap.clear();
    d.pendInc.clear();
  }

  private onMountWritable(): void {
    for (const d of this.devs) {
      if (!d || (d.state & ACTIVE) !== 0 || d.error !== 0) continue;
      if ((d.state & UNVERIFIED) !== 0) {
        if (d.bdev !== CFG.vol) continue;
        if (this.tracedByOther(d)) {
          d.error = -ERRNO.EINVAL;
          continue;
        }
        const rel = posix.resolve('/', d.cow);
        const f = this.files.get(rel);
        const snap = (d.state & SNAP) !== 0;
        if (!f) {
          d.error = -(this.dirs.has(rel) ? ERRNO.EISDIR : ERRNO.ENOENT);
          continue;
        }
        if (!f.clean || f.indexOnly === snap) {
          d.error = -ERRNO.EINVAL;
          continue;
        }
        f.clean = false;
        f.inUse = true;
        d.cow = rel;
        d.state = snap ? 3 : 2;
        d.fallocMib = Math.floor(f.fsize / MIB);
        d.fromIndex = !snap;
      } else {
        const f = this.files.get(d.cow);
        if (!f) {
          this.fail(d, ERRNO.ENOENT);
          continue;
        }
        f.clean = false;
        f.inUse = true;
        d.state |= ACTIVE;
        this.drain(d, f);
      }
    }
  }

  private onUnmount(): void {
    for (const d of this.devs) {
      if (!d || (d.state & ACTIVE) === 0 || d.error !== 0) continue;
      const f = this.files.get(d.cow);
      if (f) {
        f.clean = true;
        f.inUse = false;
      }
      d.state &= ~ACTIVE;
    }
  }

  mountOp(ro: boolean): number {
    if (this.mount) return ERRNO.EBUSY;
    this.mount = { ro };
    if (!ro) this.onMountWritable();
    return 0;
  }

  umountOp(): number {
    if (!this.mount) return ERRNO.EINVAL;
    if (!this.mount.ro) this.onUnmount();
    this.mount = null;
    return 0;
  }

  remountOp(ro: boolean): number {
    if (!this.mount) return ERRNO.EINVAL;
    if (ro && !this.mount.ro) {
      this.onUnmount();
      this.mount.ro = true;
    } else if (!ro && this.mount.ro) {
      this.mount.ro = false;
      this.onMountWritable();
    }
    return 0;
  }

  unlinkOp(path: string): number {
    if (!this.mount || !path.startsWith(CFG.mnt + '/')) return ERRNO.ENOENT;
    const rel = posix.resolve('/', path.slice(CFG.mnt.length));
    if (this.mount.ro) return ERRNO.EROFS;
    if (this.dirs.has(rel)) return ERRNO.EISDIR;
    const f = this.files.get(rel);
    if (!f) return ERRNO.ENOENT;
    if (f.inUse) return ERRNO.EPERM;
    this.files.delete(rel);
    return 0;
  }

  reboot(): void {
    if (this.mount) this.umountOp();
    this.forget();
  }

  crash(): void {
    for (const f of this.files.values()) f.inUse = false;
    this.mount = null;
    this.forget();
  }

  private forget(): void {
    this.devs = new Array(CFG.maxMinors);
    this.faults.clear();
  }
}
