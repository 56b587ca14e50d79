// SPDX-License-Identifier: GPL-2.0-only
/**
 * The I/O path: writes to a traced volume (snapshot COW / incremental
 * marking / dormant queueing), reads of the snapshot device, and the sticky
 * failure state (SPEC §3.4, §5.1–5.4).
 */
import { COW_BLOCK_SIZE } from '../src/abi/constants.js';
import { ERRNO } from '../src/abi/errno.js';
import { mibBytes } from '../src/format/geometry.js';
import { indexEntrySaved } from '../src/format/header.js';
import type { CowManager } from './cow-manager.js';
import { FsError } from './fs-namespace.js';
import type { SnapDevice } from './snap-device.js';
import type { Volume } from './volume.js';
import type { World } from './world.js';

/** Set the fail state (first error wins) and free the COW file (unlinked). */
export function failDevice(dev: SnapDevice, errno: number): void {
  if (dev.error === 0) dev.error = -Math.abs(errno);
  dev.cm?.unlinkAndClose();
  dev.pendingSnap.clear();
  dev.pendingInc.clear();
}

/** The device tracing `vol`, if any (set up, not unverified, not failed). */
export function tracerOf(w: World, vol: Volume): SnapDevice | undefined {
  for (const d of w.devices) if (d && d.vol === vol && d.traced && !d.failed) return d;
  return undefined;
}

/** Auto-expand (SPEC §2.9): grow by step MiB while statfs allows. */
export function autoGrow(dev: SnapDevice): (cm: CowManager) => boolean {
  return (cm) => {
    const ae = dev.autoExpand;
    const vol = dev.vol;
    if (!ae || ae.stepMib === 0 || !vol) return false;
    const st = vol.fs.statfs();
    const need = Math.ceil(mibBytes(ae.stepMib + ae.reservedMib) / st.bsize);
    if (need > st.bavail) return false;
    try {
      cm.expand(mibBytes(ae.stepMib));
      return true;
    } catch (e) {
      failDevice(dev, e instanceof FsError ? e.errno : ERRNO.EIO);
      return false;
    }
  };
}

/** Preserve one block in snapshot mode (append rule). Returns false if the device failed. */
function cowBlock(w: World, dev: SnapDevice, cm: CowManager, vol: Volume, b: number, data?: Uint8Array): boolean {
  if (cm.get(b) !== 0) {
    w.counters.skippedReads++;
    return true;
  }
  let old = data;
  if (!old) {
    try {
      w.faults.take('originRead');
    } catch (e) {
      failDevice(dev, e instanceof FsError ? e.errno : ERRNO.EIO);
      return false;
    }
    old = vol.read(b * COW_BLOCK_SIZE, COW_BLOCK_SIZE);
    w.counters.originReads++;
  }
  const err = cm.appendCow(b, old, autoGrow(dev));
  if (err !== 0) {
    failDevice(dev, err);
    return false;
  }
  return true;
}

/**
 * A write-like request (write, discard, write-zeroes) of [off, off+len) on
 * `vol`. Old data is saved / blocks are marked before `apply` changes the
 * volume. The write itself always happens, even if the device fails.
 */
export function tracedWrite(w: World, vol: Volume, off: number, len: number, apply: () => void): void {
  const dev = len > 0 ? tracerOf(w, vol) : undefined;
  if (dev) {
    w.counters.tracedWrites++;
    const first = Math.floor(off / COW_BLOCK_SIZE);
    const last = Math.ceil((off + len) / COW_BLOCK_SIZE) - 1;
    const cm = dev.cm;
    if (dev.active && cm) {
      if (dev.snapshot) {
        for (let b = first; b <= last; b++) if (!cowBlock(w, dev, cm, vol, b)) break;
      } else {
        for (let b = first; b <= last; b++) cm.markChanged(b);
      }
    } else if (dev.snapshot) {
      for (let b = first; b <= last; b++) {
        if (!dev.pendingSnap.has(b)) {
          dev.pendingSnap.set(b, vol.read(b * COW_BLOCK_SIZE, COW_BLOCK_SIZE));
          w.counters.originReads++;
        }
      }
    } else {
      for (let b = first; b <= last; b++) dev.pendingInc.add(b);
    }
  }
  apply();
}

/** Process writes queued while dormant, after reactivation. */
export function drainPending(w: World, dev: SnapDevice): void {
  const cm = dev.cm;
  const vol = dev.vol;
  if (!cm || !vol) return;
  if (dev.snapshot) {
    const blocks = [...dev.pendingSnap.keys()].sort((a, b) => a - b);
    for (const b of blocks) {
      if (!cowBlock(w, dev, cm, vol, b, dev.pendingSnap.get(b))) break;
    }
  } else {
    for (const b of dev.pendingInc) cm.markChanged(b);
  }
  dev.pendingSnap.clear();
  dev.pendingInc.clear();
}

/**
 * Read /dev/datto<minor>: saved blocks from the COW file, the rest from the
 * live volume. Returns 0 or an errno (EIO failed, EBUSY dormant).
 */
export function snapshotRead(w: World, dev: SnapDevice, off: number, out: Uint8Array): number {
  if (dev.failed) return ERRNO.EIO;
  if (!dev.active) return ERRNO.EBUSY;
  const cm = dev.cm;
  const vol = dev.vol;
  if (!cm || !vol) return ERRNO.EIO;
  const end = Math.min(off + out.length, vol.sizeBytes);
  let pos = off;
  while (pos < end) {
    const b = Math.floor(pos / COW_BLOCK_SIZE);
    const inBlk = pos - b * COW_BLOCK_SIZE;
    const n = Math.min(COW_BLOCK_SIZE - inBlk, end - pos);
    const dst = out.subarray(pos - off, pos - off + n);
    const v = cm.get(b);
    if (v !== 0 && !indexEntrySaved(v, cm.geo, cm.fpos)) {
      // never the header, the index or a block not appended yet
      failDevice(dev, ERRNO.EIO);
      return ERRNO.EIO;
    }
    try {
      if (v !== 0) cm.readData(v, dst, inBlk);
      else vol.readInto(pos, dst);
    } catch (e) {
      const errno = e instanceof FsError ? e.errno : ERRNO.EIO;
      failDevice(dev, errno);
      return ERRNO.EIO;
    }
    w.counters.snapReads++;
    pos += n;
  }
  return 0;
}
