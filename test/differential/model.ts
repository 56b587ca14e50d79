// SPDX-License-Identifier: GPL-2.0-only
/**
 * The differential command model shared by the in-process suite (emulator
 * vs the C core) and the VM suite (emulator vs dattobd.ko): the command
 * type, its fast-check arbitraries, the world configuration, and the
 * execution of a command on the emulator.
 *
 * Origin writes go only to a test region at the tail of each volume that
 * the filesystem does not use (the filesystem is smaller than the volume),
 * so the emulator and a real kernel see exactly the same traced writes.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { ERRNO, errnoName } from '../../src/abi/errno.js';
import { DriverError } from '../../src/driver/errors.js';
import { Emulator } from '../../emulator/index.js';

export const MiB = 1048576;
export const BLOCK = 4096;

export interface VolumeConfig {
  /** Block device path, e.g. /dev/loop0. */
  dev: string;
  /** Mount point, e.g. /mnt/l0. */
  mnt: string;
  sizeBytes: number;
  /** Bytes used by the filesystem (mkfs size); the test region follows. */
  fsBytes: number;
  /** Free bytes of the filesystem right after mkfs (emulator capacity). */
  fsFreeBytes: number;
}

export interface WorldConfig {
  vols: VolumeConfig[];
  /** max_snap_devices of the module. */
  maxDevices: number;
  /** Blocks of the test region (starting at fsBytes) that commands write. */
  regionBlocks: number;
  /**
   * Blocks after the region that only `cowFull` writes (all at once): more
   * than any COW file of the model holds, so the device fails with EFBIG on
   * both sides whatever the filesystem's own metadata writes used up.
   */
  overflowBlocks: number;
  /** COW file names the generator picks from (relative to the mount point). */
  cowNames: string[];
  /** -f values (MiB) for setup / transition-to-snapshot. */
  fallocMibs: number[];
}

export type Cmd =
  | { k: 'setup'; minor: number; vol: number; cow: number; mib: number; cache: number }
  | { k: 'reloadSnap' | 'reloadInc'; minor: number; vol: number; cow: number; cache: number }
  | { k: 'destroy' | 'transInc' | 'info' | 'readSnap' | 'open' | 'close'; minor: number }
  | { k: 'transSnap'; minor: number; cow: number; mib: number }
  | { k: 'reconfigure'; minor: number; cache: number }
  | { k: 'getFree' }
  | { k: 'expand'; minor: number; mib: number }
  | { k: 'autoExpand'; minor: number; step: number; reserved: number }
  | { k: 'mount'; vol: number; ro: boolean }
  | { k: 'umount'; vol: number }
  | { k: 'remount'; vol: number; ro: boolean }
  | { k: 'write'; vol: number; block: number; count: number; seed: number }
  | { k: 'discard'; vol: number; block: number; count: number }
  | { k: 'cowFull'; vol: number }
  | { k: 'reboot' };

export type CmdKind = Cmd['k'];

/** Commands a backend can leave out (e.g. not yet supported by the module). */
export interface ModelOptions {
  exclude?: CmdKind[];
  /** Weight of each command kind (default 1, ioctls and writes more). */
  weights?: Partial<Record<CmdKind, number>>;
}

export function cmdArb(cfg: WorldConfig, o: ModelOptions = {}): fc.Arbitrary<Cmd> {
  const minor = fc.nat(cfg.maxDevices + 1); // includes out-of-range minors
  const lowMinor = fc.oneof({ weight: 4, arbitrary: fc.nat(Math.min(2, cfg.maxDevices - 1)) }, { weight: 1, arbitrary: minor });
  const vol = fc.nat(cfg.vols.length - 1);
  const cow = fc.nat(cfg.cowNames.length - 1);
  const mib = fc.constantFrom(...cfg.fallocMibs);
  const cache = fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(65536, 1 << 20, 1 << 30) });
  const block = fc.nat(cfg.regionBlocks - 1);
  const count = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 5, max: 96 }) });
  const all: Record<CmdKind, fc.Arbitrary<Cmd>> = {
    setup: fc.record({ k: fc.constant('setup' as const), minor: lowMinor, vol, cow, mib, cache }),
    reloadSnap: fc.record({ k: fc.constant('reloadSnap' as const), minor: lowMinor, vol, cow, cache }),
    reloadInc: fc.record({ k: fc.constant('reloadInc' as const), minor: lowMinor, vol, cow, cache }),
    destroy: fc.record({ k: fc.constant('destroy' as const), minor: lowMinor }),
    transInc: fc.record({ k: fc.constant('transInc' as const), minor: lowMinor }),
    info: fc.record({ k: fc.constant('info' as const), minor: lowMinor }),
    readSnap: fc.record({ k: fc.constant('readSnap' as const), minor: lowMinor }),
    open: fc.record({ k: fc.constant('open' as const), minor: lowMinor }),
    close: fc.record({ k: fc.constant('close' as const), minor: lowMinor }),
    transSnap: fc.record({ k: fc.constant('transSnap' as const), minor: lowMinor, cow, mib }),
    reconfigure: fc.record({ k: fc.constant('reconfigure' as const), minor: lowMinor, cache }),
    getFree: fc.constant({ k: 'getFree' as const }),
    expand: fc.record({ k: fc.constant('expand' as const), minor: lowMinor, mib: fc.constantFrom(0, 1, 2) }),
    autoExpand: fc.record({ k: fc.constant('autoExpand' as const), minor: lowMinor, step: fc.constantFrom(0, 1, 4), reserved: fc.constantFrom(0, 1) }),
    mount: fc.record({ k: fc.constant('mount' as const), vol, ro: fc.boolean() }),
    umount: fc.record({ k: fc.constant('umount' as const), vol }),
    remount: fc.record({ k: fc.constant('remount' as const), vol, ro: fc.boolean() }),
    write: fc.record({ k: fc.constant('write' as const), vol, block, count, seed: fc.nat(0xffff) }),
    discard: fc.record({ k: fc.constant('discard' as const), vol, block, count }),
    cowFull: fc.record({ k: fc.constant('cowFull' as const), vol }),
    reboot: fc.constant({ k: 'reboot' as const }),
  };
  const defaults: Partial<Record<CmdKind, number>> = { setup: 4, write: 5, mount: 2, transInc: 2, transSnap: 2, info: 2, reloadSnap: 2, reloadInc: 2 };
  const excluded = new Set(o.exclude ?? []);
  const entries = (Object.keys(all) as CmdKind[])
    .filter((k) => !excluded.has(k))
    .map((k) => ({ weight: o.weights?.[k] ?? defaults[k] ?? 1, arbitrary: all[k] }));
  return fc.oneof(...entries);
}

export function sequenceArb(cfg: WorldConfig, o: ModelOptions & { minLength?: number; maxLength?: number } = {}): fc.Arbitrary<Cmd[]> {
  return fc.array(cmdArb(cfg, o), { minLength: o.minLength ?? 20, maxLength: o.maxLength ?? 50 });
}

/**
 * Deterministic contents of `count` blocks starting at region block `block`:
 * each block depends only on (seed, its own block number), so any slice of a
 * multi-block write equals writeData(seed, b, 1) for its block b.
 */
export function writeData(seed: number, block: number, count: number): Uint8Array {
  const out = new Uint8Array(count * BLOCK);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    let x = (Math.imul(seed + 1, 2654435761) ^ Math.imul(block + i + 1, 40503)) >>> 0 || 1;
    for (let o = i * BLOCK; o < (i + 1) * BLOCK; o += 4) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      dv.setUint32(o, x, true);
    }
  }
  return out;
}

export function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 16);
}

/** Byte offset of a region block on its volume. */
export function regionOffset(v: VolumeConfig, block: number): number {
  return v.fsBytes + block * BLOCK;
}

/** What cowFull writes: the whole overflow zone. */
export function overflowData(cfg: WorldConfig): Uint8Array {
  return writeData(0xc0f, cfg.regionBlocks, cfg.overflowBlocks);
}

/** Clip a write to the region. */
export function clipCount(cfg: WorldConfig, block: number, count: number): number {
  return Math.max(0, Math.min(count, cfg.regionBlocks - block));
}

/** The errno name of a command's outcome: 'OK' or e.g. 'EINVAL'. */
export type Outcome = string;

export function outcomeOf(f: () => unknown): { outcome: Outcome; value: unknown } {
  try {
    return { outcome: 'OK', value: f() };
  } catch (e) {
    if (e instanceof DriverError) return { outcome: e.code, value: undefined };
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return { outcome: code, value: undefined };
    throw e;
  }
}

export function errnoOutcome(errno: number): Outcome {
  return errno === 0 ? 'OK' : errnoName(errno);
}

/** A seeded random source so that uuids are reproducible in a replay. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** A fresh emulator world: the volumes exist, have a filesystem and are unmounted. */
export function newEmulatorWorld(cfg: WorldConfig, seed = 1): Emulator {
  const e = new Emulator({ maxSnapDevices: cfg.maxDevices, random: seededRandom(seed) });
  for (const v of cfg.vols) e.addVolume({ path: v.dev, sizeBytes: v.sizeBytes, fsFreeBytes: v.fsFreeBytes });
  return e;
}

/**
 * Execute one command on the emulator. Returns the outcome and, for reads
 * of the snapshot device, the hash of the region.
 */
export function runOnEmulator(e: Emulator, cfg: WorldConfig, c: Cmd): { outcome: Outcome; value?: unknown } {
  const V = (i: number): VolumeConfig => cfg.vols[i]!;
  switch (c.k) {
    case 'setup': {
      const v = V(c.vol);
      return outcomeOf(() => e.ctl.setupSnapshot({ minor: c.minor, bdev: v.dev, cow: `${v.mnt}/${cfg.cowNames[c.cow]}`, fallocatedSpace: c.mib, cacheSize: c.cache }));
    }
    case 'reloadSnap':
    case 'reloadInc': {
      const v = V(c.vol);
      const p = { minor: c.minor, bdev: v.dev, cow: `/${cfg.cowNames[c.cow]}`, cacheSize: c.cache };
      return outcomeOf(() => (c.k === 'reloadSnap' ? e.ctl.reloadSnapshot(p) : e.ctl.reloadIncremental(p)));
    }
    case 'destroy':
      return outcomeOf(() => e.ctl.destroy(c.minor));
    case 'transInc':
      return outcomeOf(() => e.ctl.transitionToIncremental(c.minor));
    case 'info':
      return outcomeOf(() => e.ctl.info(c.minor));
    case 'transSnap': {
      const dev = e.world.devices[c.minor];
      const v = cfg.vols.find((x) => x.dev === dev?.vol?.path) ?? V(0);
      return outcomeOf(() => e.ctl.transitionToSnapshot({ minor: c.minor, cow: `${v.mnt}/${cfg.cowNames[c.cow]}`, fallocatedSpace: c.mib }));
    }
    case 'reconfigure':
      return outcomeOf(() => e.ctl.reconfigure({ minor: c.minor, cacheSize: c.cache }));
    case 'getFree':
      return outcomeOf(() => e.ctl.getFreeMinor());
    case 'expand':
      return outcomeOf(() => e.ctl.expandCowFile({ minor: c.minor, size: c.mib }));
    case 'autoExpand':
      return outcomeOf(() => e.ctl.reconfigureAutoExpand({ minor: c.minor, stepSize: c.step, reservedSpace: c.reserved }));
    case 'mount': {
      const v = V(c.vol);
      if (e.mountPointOf(v.dev) !== undefined) return { outcome: 'EBUSY' };
      return outcomeOf(() => e.mount(v.dev, v.mnt, { readOnly: c.ro }));
    }
    case 'umount': {
      const v = V(c.vol);
      if (e.mountPointOf(v.dev) === undefined) return { outcome: 'EINVAL' };
      return outcomeOf(() => e.umount(v.mnt));
    }
    case 'remount': {
      const v = V(c.vol);
      if (e.mountPointOf(v.dev) === undefined) return { outcome: 'EINVAL' };
      return outcomeOf(() => e.remount(v.mnt, { readOnly: c.ro }));
    }
    case 'write': {
      const v = V(c.vol);
      const n = clipCount(cfg, c.block, c.count);
      return outcomeOf(() => e.write(v.dev, regionOffset(v, c.block), writeData(c.seed, c.block, n)));
    }
    case 'discard': {
      const v = V(c.vol);
      const n = clipCount(cfg, c.block, c.count);
      return outcomeOf(() => e.discard(v.dev, regionOffset(v, c.block), n * BLOCK));
    }
    case 'cowFull': {
      const v = V(c.vol);
      return outcomeOf(() => e.write(v.dev, regionOffset(v, cfg.regionBlocks), overflowData(cfg)));
    }
    case 'readSnap':
      return outcomeOf(() => {
        const dev = e.world.devices[c.minor];
        const v = cfg.vols.find((x) => x.dev === dev?.vol?.path);
        if (c.minor >= cfg.maxDevices || !dev?.hasDisk || !v) throw new DriverError(ERRNO.ENOENT, 'read', 'no snapshot device');
        return sha(e.readSnapshot(c.minor, regionOffset(v, 0), cfg.regionBlocks * BLOCK));
      });
    case 'open':
      return outcomeOf(() => {
        if (c.minor >= cfg.maxDevices) throw new DriverError(ERRNO.ENOENT, 'open');
        e.openSnapshot(c.minor);
      });
    case 'close':
      return outcomeOf(() => {
        if (c.minor >= cfg.maxDevices) throw new DriverError(ERRNO.EBADF, 'close');
        e.closeSnapshot(c.minor);
      });
    case 'reboot':
      return outcomeOf(() => e.reboot());
  }
}

/** A one-line rendering of a command for failure reports. */
export function showCmd(cfg: WorldConfig, c: Cmd): string {
  const parts = Object.entries(c)
    .filter(([k]) => k !== 'k')
    .map(([k, v]) => (k === 'cow' ? `cow=${JSON.stringify(cfg.cowNames[v as number])}` : `${k}=${String(v)}`));
  return `${c.k}(${parts.join(', ')})`;
}
