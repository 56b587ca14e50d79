// SPDX-License-Identifier: GPL-2.0-only
/** /proc/datto-info of the emulated driver (SPEC §4.1), rendered by src/proc. */
import { DATTOBD_VERSION, MIB } from '../src/abi/constants.js';
import { uuidHex } from '../src/format/header.js';
import { renderProcInfo } from '../src/proc/render.js';
import type { ProcDevice, ProcInfo } from '../src/proc/types.js';
import type { World } from './world.js';

export function procInfo(w: World): ProcInfo {
  const devices: ProcDevice[] = [];
  for (const dev of w.devices) {
    if (!dev) continue;
    const d: ProcDevice = {
      minor: dev.minor,
      cowFile: dev.cowPath,
      blockDevice: dev.bdevPath,
      maxCache: dev.cacheSize || w.defaultCacheSize,
      state: dev.state,
    };
    const cm = dev.unverified ? undefined : dev.cm;
    if (!dev.unverified) d.fallocate = dev.fallocMib * MIB;
    if (cm) {
      d.cowSizeCurrent = cm.fsize;
      d.seqId = cm.seqid;
      d.uuid = uuidHex(cm.uuid);
      if (cm.version > 0) {
        d.version = cm.version;
        d.nrChangedBlocks = cm.nrChanged;
      }
    }
    if (dev.autoExpand) d.autoExpand = { stepSizeMib: dev.autoExpand.stepMib, reservedSpaceMib: dev.autoExpand.reservedMib };
    if (dev.failed) d.error = dev.error;
    devices.push(d);
  }
  return { version: DATTOBD_VERSION, devices };
}

export function procText(w: World): string {
  return renderProcInfo(procInfo(w));
}
