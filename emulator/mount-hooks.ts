// SPDX-License-Identifier: GPL-2.0-only
/**
 * Mount, umount and remount events and the transitions they drive
 * (SPEC §3.2, §3.5): unverified → active and dormant → active on a
 * read-write mount; active → dormant on umount / remount-ro of the mount
 * through which the COW file is open.
 */

import { STATE_ACTIVE, STATE_UNVERIFIED, State } from '../src/abi/constants.js';
import { ERRNO } from '../src/abi/errno.js';
import { blocksCeil, fallocMib } from '../src/format/geometry.js';
import { CowManager } from './cow-manager.js';
import { FsError } from './fs-namespace.js';
import type { SnapDevice } from './snap-device.js';
import { drainPending, failDevice } from './tracer.js';
import type { Volume } from './volume.js';
import { World } from './world.js';

function errnoOf(e: unknown): number {
  if (e instanceof FsError) return e.errno;
  throw e;
}

function activateUnverified(w: World, dev: SnapDevice, vol: Volume, mountPoint: string): void {
  for (const d of w.devices) {
    if (d && d !== dev && !d.unverified && d.vol === vol) {
      dev.error = -ERRNO.EINVAL;
      return;
    }
  }
  const rel = World.norm(dev.cowPath);
  const snapshot = dev.snapshot;
  let cm: CowManager;
  try {
    cm = CowManager.reload(vol.fs, rel, vol.sizeSectors, !snapshot, dev.cacheSize || w.defaultCacheSize, w.counters, w.faults);
  } catch (e) {
    dev.error = -errnoOf(e);
    return;
  }
  // a snapshot's entries must point at saved data (kernel dbd_cow_scan);
  // the refused file is left clean, as it was
  if (snapshot && cm.firstBadEntry(blocksCeil(vol.sizeSectors)) >= 0) {
    try {
      cm.closeClean();
    } catch {
      // the kernel warns and keeps the error below
    }
    dev.error = -ERRNO.EINVAL;
    return;
  }
  dev.vol = vol;
  dev.cm = cm;
  dev.bdevPath = vol.path;
  dev.cowPath = rel;
  dev.mountPoint = mountPoint;
  dev.fallocMib = fallocMib(cm.fsize);
  dev.fallocFromIndex = !snapshot;
  dev.state = snapshot ? State.ACTIVE_SNAPSHOT : State.ACTIVE_INCREMENTAL;
  dev.state &= ~STATE_UNVERIFIED;
}

function reactivateDormant(w: World, dev: SnapDevice, mountPoint: string): void {
  const cm = dev.cm;
  const vol = dev.vol;
  if (!cm || !vol) return;
  try {
    cm.reopen(vol.fs, dev.cowPath);
  } catch (e) {
    failDevice(dev, errnoOf(e));
    return;
  }
  dev.mountPoint = mountPoint;
  dev.state |= STATE_ACTIVE;
  drainPending(w, dev);
}

/** A new read-write mount or a remount-rw of `vol` at `mountPoint`. */
export function onMountWritable(w: World, vol: Volume, mountPoint: string): void {
  for (const dev of w.devices) {
    if (!dev || dev.active || dev.failed) continue;
    if (dev.unverified) {
      const r = w.resolve(dev.bdevPath);
      if (r.kind === 'bdev' && r.vol === vol) activateUnverified(w, dev, vol, mountPoint);
    } else if (dev.vol === vol) {
      reactivateDormant(w, dev, mountPoint);
    }
  }
}

/** Before an umount or remount-ro of `mountPoint`: active → dormant. */
export function onUnmount(w: World, vol: Volume, mountPoint: string): void {
  for (const dev of w.devices) {
    if (!dev || !dev.active || dev.failed || dev.vol !== vol || dev.mountPoint !== mountPoint) continue;
    try {
      dev.cm?.closeClean();
    } catch (e) {
      failDevice(dev, errnoOf(e));
      continue;
    }
    dev.state &= ~STATE_ACTIVE;
    dev.mountPoint = undefined;
  }
}

