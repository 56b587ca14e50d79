// SPDX-License-Identifier: GPL-2.0-only
/** The emulated machine: volumes, mounts, the minor table, the host scratch area. */
import { posix } from 'node:path';
import { DEFAULT_CACHE_SIZE, DEFAULT_FALLOCATE_PERCENTAGE, DEFAULT_MAX_SNAP_DEVICES, HARD_MAX_SNAP_DEVICES } from '../src/abi/constants.js';
import { Faults, newCounters, type Counters } from './faults.js';
import { FsNamespace, newMemFs } from './fs-namespace.js';
import type { SnapDevice } from './snap-device.js';
import type { Volume } from './volume.js';

export interface EmulatorOptions {
  maxSnapDevices?: number;
  defaultCacheSize?: number;
  fallocatePercentage?: number;
  /** Random source for uuids (default Math.random); inject for reproducible runs. */
  random?: () => number;
}

export type Resolved =
  | { kind: 'bdev'; path: string; vol: Volume }
  | { kind: 'snapdev'; path: string; dev: SnapDevice }
  | { kind: 'fs'; path: string; vol: Volume; rel: string; mountPoint: string; readOnly: boolean }
  | { kind: 'scratch'; path: string; rel: string };

export class World {
  readonly maxSnapDevices: number;
  readonly defaultCacheSize: number;
  readonly fallocatePercentage: number;
  readonly random: () => number;
  readonly volumes = new Map<string, Volume>();
  devices: (SnapDevice | undefined)[];
  /** One memfs for all namespaces of this machine (host scratch + one per volume). */
  readonly memfs = newMemFs();
  readonly scratch = new FsNamespace(Number.MAX_SAFE_INTEGER, { fs: this.memfs, prefix: '/host' });
  readonly counters: Counters = newCounters();
  readonly faults = new Faults();

  constructor(o: EmulatorOptions = {}) {
    const m = o.maxSnapDevices ?? DEFAULT_MAX_SNAP_DEVICES;
    this.maxSnapDevices = m === 0 ? DEFAULT_MAX_SNAP_DEVICES : Math.min(m, HARD_MAX_SNAP_DEVICES);
    this.defaultCacheSize = o.defaultCacheSize ?? DEFAULT_CACHE_SIZE;
    this.fallocatePercentage = o.fallocatePercentage ?? DEFAULT_FALLOCATE_PERCENTAGE;
    this.random = o.random ?? Math.random;
    this.devices = new Array<SnapDevice | undefined>(this.maxSnapDevices);
  }

  /** A new, empty filesystem namespace for a volume. */
  newFilesystem(freeBytes: number): FsNamespace {
    return new FsNamespace(freeBytes, { fs: this.memfs, prefix: `/vol${this.volumes.size}` });
  }

  static norm(p: string): string {
    return posix.resolve('/', p);
  }

  volumeByMountPoint(mp: string): Volume | undefined {
    const n = World.norm(mp);
    for (const v of this.volumes.values()) if (v.mount?.mountPoint === n) return v;
    return undefined;
  }

  /** Map an absolute path to the object it names in the emulated world. */
  resolve(path: string): Resolved {
    const p = World.norm(path);
    const vol = this.volumes.get(p);
    if (vol) return { kind: 'bdev', path: p, vol };
    const m = /^\/dev\/datto(\d+)$/.exec(p);
    if (m) {
      const dev = this.devices[Number(m[1])];
      if (dev?.hasDisk && String(dev.minor) === m[1]) return { kind: 'snapdev', path: p, dev };
    }
    let best: Volume | undefined;
    for (const v of this.volumes.values()) {
      const mp = v.mount?.mountPoint;
      if (mp === undefined) continue;
      if (p === mp || p.startsWith(mp === '/' ? '/' : mp + '/')) {
        if (!best || mp.length > (best.mount?.mountPoint.length ?? 0)) best = v;
      }
    }
    if (best?.mount) {
      const mp = best.mount.mountPoint;
      const rel = World.norm(mp === '/' ? p : p.slice(mp.length) || '/');
      return { kind: 'fs', path: p, vol: best, rel, mountPoint: mp, readOnly: best.mount.readOnly };
    }
    return { kind: 'scratch', path: p, rel: p };
  }

  /** Namespace and relative path of a file path (fs or scratch), else undefined. */
  fileLocation(r: Resolved): { ns: FsNamespace; rel: string } | undefined {
    if (r.kind === 'fs') return { ns: r.vol.fs, rel: r.rel };
    if (r.kind === 'scratch') return { ns: this.scratch, rel: r.rel };
    return undefined;
  }
}
