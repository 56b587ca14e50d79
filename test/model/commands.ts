// SPDX-License-Identifier: GPL-2.0-only
/**
 * The shared command factory of the model-based tests: operations as plain
 * data (`Op`), fast-check arbitraries that generate them, an executor for any
 * emulator-like system (`applyReal`), one for the reference model
 * (`applyModel`) and the fast-check Command wrapper that runs both and
 * compares. The differential tests reuse `opArb` / `applyReal`.
 */
import fc from 'fast-check';
import { Emulator } from '../../emulator/index.js';
import { ERRNO } from '../../src/abi/errno.js';
import { isDriverError } from '../../src/driver/errors.js';
import { BLK, CFG, Model, type FaultKind } from './model.js';

export type Op =
  | { t: 'setup'; minor: number; bdev: string; cow: string; mib: number; cache: number }
  | { t: 'reload'; snap: boolean; minor: number; bdev: string; cow: string }
  | { t: 'destroy'; minor: number }
  | { t: 'transInc'; minor: number }
  | { t: 'transSnap'; minor: number; cow: string; mib: number }
  | { t: 'reconfigure'; minor: number; cache: number }
  | { t: 'info'; minor: number }
  | { t: 'getFree' }
  | { t: 'expand'; minor: number; mib: number }
  | { t: 'autoExpand'; minor: number; step: number; res: number }
  | { t: 'write'; off: number; len: number; seed: number }
  | { t: 'discard'; off: number; len: number }
  | { t: 'zeroes'; off: number; len: number }
  | { t: 'mount'; ro: boolean }
  | { t: 'umount' }
  | { t: 'remount'; ro: boolean }
  | { t: 'open'; minor: number }
  | { t: 'close'; minor: number }
  | { t: 'read'; minor: number; off: number; len: number }
  | { t: 'reboot' }
  | { t: 'crash' }
  | { t: 'fault'; kind: FaultKind; errno: number }
  | { t: 'unlink'; path: string };

// ---- arbitraries ----

/** Minors: mostly valid, sometimes just out of range or far out. */
export const minorArb = fc.oneof(
  { weight: 12, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.constant(1) },
  { weight: 2, arbitrary: fc.nat({ max: CFG.maxMinors - 1 }) },
  { weight: 1, arbitrary: fc.constantFrom(CFG.maxMinors, 200) },
);
const bdevArb = fc.oneof({ weight: 8, arbitrary: fc.constant(CFG.vol) }, { weight: 1, arbitrary: fc.constantFrom('/dev/nope', '/tmp') });
const cowNameArb = fc.constantFrom('/c0', '/c1', '/c2', '/c3');
const cowArb = fc.oneof(
  { weight: 10, arbitrary: cowNameArb.map((n) => CFG.mnt + n) },
  { weight: 1, arbitrary: fc.constantFrom('/mnt/d', '/mnt/nodir/c', '/tmp/c', CFG.vol, '/mnt') },
);
const mibArb = fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 5, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constantFrom(2, 30) });
const cacheArb = fc.constantFrom(0, 0, 24 + 32768, 1 << 20);

function rangeArb(maxLen: number): fc.Arbitrary<{ off: number; len: number }> {
  return fc
    .tuple(fc.nat({ max: CFG.sizeBytes - 1 }), fc.integer({ min: 1, max: maxLen }), fc.boolean())
    .map(([o, l, aligned]) => {
      const off = aligned ? o - (o % BLK) : o;
      return { off, len: Math.min(l, CFG.sizeBytes - off) };
    });
}

const ioLen = fc.oneof({ weight: 12, arbitrary: fc.constant(3 * BLK) }, { weight: 1, arbitrary: fc.constant(64 * 1024) });

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>): { weight: number; arbitrary: fc.Arbitrary<T> } => ({ weight, arbitrary });

/**
 * Backup cycles only (minor 0, no faults or crashes): setup, transitions
 * both ways, I/O, snapshot reads and unmount/mount (dormant periods) —
 * drives long snapshot → incremental → snapshot chains.
 */
export function cycleOpArb(): fc.Arbitrary<Op> {
  const cow = cowNameArb.map((n) => CFG.mnt + n);
  return fc.oneof(
    w(2, fc.record({ t: fc.constant('setup' as const), minor: fc.constant(0), bdev: fc.constant(CFG.vol), cow, mib: fc.constant(1), cache: cacheArb })),
    w(4, fc.record({ t: fc.constant('transInc' as const), minor: fc.constant(0) })),
    w(4, fc.record({ t: fc.constant('transSnap' as const), minor: fc.constant(0), cow, mib: fc.constantFrom(0, 1) })),
    w(12, fc.tuple(rangeArb(3 * BLK), fc.nat()).map(([r, seed]) => ({ t: 'write' as const, ...r, seed }))),
    w(1, rangeArb(3 * BLK).map((r) => ({ t: 'discard' as const, ...r }))),
    w(1, rangeArb(3 * BLK).map((r) => ({ t: 'zeroes' as const, ...r }))),
    w(3, rangeArb(64 * 1024).map((r) => ({ t: 'read' as const, minor: 0, ...r }))),
    w(1, fc.record({ t: fc.constant('unlink' as const), path: fc.constantFrom('/mnt/c0', '/mnt/c1', '/mnt/c2', '/mnt/c3') })),
    w(1, fc.constant({ t: 'umount' as const })),
    w(1, fc.constant({ t: 'mount' as const, ro: false })),
    w(1, fc.record({ t: fc.constant('remount' as const), ro: fc.boolean() })),
  );
}

/** Every operation, weighted towards the interesting ones. */
export function opArb(): fc.Arbitrary<Op> {
  return fc.oneof(
    w(6, fc.record({ t: fc.constant('setup' as const), minor: minorArb, bdev: bdevArb, cow: cowArb, mib: mibArb, cache: cacheArb })),
    w(2, fc.record({ t: fc.constant('reload' as const), snap: fc.boolean(), minor: minorArb, bdev: bdevArb, cow: fc.oneof(cowNameArb, fc.constantFrom('/d', '/nofile')) })),
    w(1, fc.record({ t: fc.constant('destroy' as const), minor: minorArb })),
    w(6, fc.record({ t: fc.constant('transInc' as const), minor: minorArb })),
    w(6, fc.record({ t: fc.constant('transSnap' as const), minor: minorArb, cow: cowArb, mib: mibArb })),
    w(1, fc.record({ t: fc.constant('reconfigure' as const), minor: minorArb, cache: cacheArb })),
    w(1, fc.record({ t: fc.constant('info' as const), minor: minorArb })),
    w(1, fc.constant({ t: 'getFree' as const })),
    w(1, fc.record({ t: fc.constant('expand' as const), minor: minorArb, mib: fc.constantFrom(0, 1, 1, 2, 10) })),
    w(1, fc.record({ t: fc.constant('autoExpand' as const), minor: minorArb, step: fc.constantFrom(0, 1, 1), res: fc.constantFrom(0, 1, 8) })),
    w(16, fc.tuple(ioLen.chain(rangeArb), fc.nat()).map(([r, seed]) => ({ t: 'write' as const, ...r, seed }))),
    w(2, ioLen.chain(rangeArb).map((r) => ({ t: 'discard' as const, ...r }))),
    w(2, ioLen.chain(rangeArb).map((r) => ({ t: 'zeroes' as const, ...r }))),
    w(1, fc.record({ t: fc.constant('mount' as const), ro: fc.boolean() })),
    w(1, fc.constant({ t: 'umount' as const })),
    w(1, fc.record({ t: fc.constant('remount' as const), ro: fc.boolean() })),
    w(1, fc.record({ t: fc.constant('open' as const), minor: minorArb })),
    w(1, fc.record({ t: fc.constant('close' as const), minor: minorArb })),
    w(4, fc.tuple(minorArb, rangeArb(64 * 1024)).map(([minor, r]) => ({ t: 'read' as const, minor, ...r }))),
    w(1, fc.constant({ t: 'reboot' as const })),
    w(1, fc.constant({ t: 'crash' as const })),
    w(1, fc.record({ t: fc.constant('fault' as const), kind: fc.constantFrom<FaultKind>('cowWrite', 'fallocate', 'originRead'), errno: fc.constantFrom(ERRNO.EIO, ERRNO.ENOSPC, ERRNO.ENOMEM) })),
    w(1, fc.record({ t: fc.constant('unlink' as const), path: fc.constantFrom('/mnt/c0', '/mnt/c1', '/mnt/c2', '/mnt/d') })),
  );
}

// ---- executors ----

let lastFill: { len: number; seed: number; data: Uint8Array } | undefined;

/**
 * Deterministic pseudo-random bytes: one 4 KiB page from the seed, repeated
 * with the page number stamped into each copy (so misplaced blocks differ).
 * Cached: the model and the emulator ask for the same data in turn (callers
 * must not modify the returned array).
 */
export function fill(len: number, seed: number): Uint8Array {
  if (lastFill && lastFill.len === len && lastFill.seed === seed) return lastFill.data;
  const page = new Uint32Array(1024);
  let x = (seed * 2654435761 + 7) >>> 0;
  for (let i = 0; i < page.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    page[i] = x ^ (x >>> 15);
  }
  const pageBytes = new Uint8Array(page.buffer);
  const data = new Uint8Array(len);
  for (let off = 0, n = 0; off < len; off += 4096, n++) {
    data.set(pageBytes.subarray(0, Math.min(4096, len - off)), off);
    data[off] = (data[off] ?? 0) ^ (n & 0xff);
    if (off + 1 < len) data[off + 1] = (data[off + 1] ?? 0) ^ (n >> 8);
  }
  lastFill = { len, seed, data };
  return data;
}

/** A fresh emulated world matching the model's initial state. */
export function makeReal(seed = 1): Emulator {
  let s = seed >>> 0 || 1;
  const random = (): number => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const emu = new Emulator({ maxSnapDevices: CFG.maxMinors, fallocatePercentage: CFG.pct, random });
  emu.addVolume({ path: CFG.vol, sizeBytes: CFG.sizeBytes, partitionOffsetSectors: CFG.partitionOffsetSectors, fsFreeBytes: CFG.fsBytes });
  emu.mount(CFG.vol, CFG.mnt);
  emu.mkdir('/mnt/d');
  emu.mkdir('/tmp');
  return emu;
}

export interface RealResult {
  errno: number;
  minor?: number;
  data?: Uint8Array;
}

function caught(f: () => void): number {
  try {
    f();
    return 0;
  } catch (e) {
    if (isDriverError(e)) return e.errno;
    throw e;
  }
}

/** Run one op against an Emulator; ioctls use the errno form (`emu.raw`), as a C caller sees them. */
export function applyReal(emu: Emulator, op: Op): RealResult {
  const c = emu.raw;
  switch (op.t) {
    case 'setup':
      return { errno: c.setupSnapshot({ minor: op.minor, bdev: op.bdev, cow: op.cow, fallocatedSpace: op.mib, cacheSize: op.cache }) };
    case 'reload':
      return { errno: c.reload({ minor: op.minor, bdev: op.bdev, cow: op.cow, cacheSize: 0 }, op.snap) };
    case 'destroy':
      return { errno: c.destroy(op.minor) };
    case 'transInc':
      return { errno: c.transitionToIncremental(op.minor) };
    case 'transSnap':
      return { errno: c.transitionToSnapshot({ minor: op.minor, cow: op.cow, fallocatedSpace: op.mib }) };
    case 'reconfigure':
      return { errno: c.reconfigure({ minor: op.minor, cacheSize: op.cache }) };
    case 'info': {
      const r = c.info(op.minor);
      return { errno: typeof r === 'number' ? r : 0 };
    }
    case 'getFree': {
      const r = c.getFreeMinor();
      return { errno: r.errno, minor: r.minor };
    }
    case 'expand':
      return { errno: c.expandCowFile({ minor: op.minor, size: op.mib }) };
    case 'autoExpand':
      return { errno: c.reconfigureAutoExpand({ minor: op.minor, stepSize: op.step, reservedSpace: op.res }) };
    case 'write':
      return { errno: caught(() => emu.write(CFG.vol, op.off, fill(op.len, op.seed))) };
    case 'discard':
      return { errno: caught(() => emu.discard(CFG.vol, op.off, op.len)) };
    case 'zeroes':
      return { errno: caught(() => emu.writeZeroes(CFG.vol, op.off, op.len)) };
    case 'mount':
      return { errno: caught(() => emu.mount(CFG.vol, CFG.mnt, { readOnly: op.ro })) };
    case 'umount':
      return { errno: caught(() => emu.umount(CFG.mnt)) };
    case 'remount':
      return { errno: caught(() => emu.remount(CFG.mnt, { readOnly: op.ro })) };
    case 'open':
      return { errno: caught(() => emu.openSnapshot(op.minor)) };
    case 'close':
      return { errno: caught(() => emu.closeSnapshot(op.minor)) };
    case 'read': {
      let data: Uint8Array | undefined;
      const errno = caught(() => {
        data = emu.readSnapshot(op.minor, op.off, op.len);
      });
      return data ? { errno, data } : { errno };
    }
    case 'reboot':
      emu.reboot();
      return { errno: 0 };
    case 'crash':
      emu.crash();
      return { errno: 0 };
    case 'fault': {
      const f = emu.faults;
      if (op.kind === 'cowWrite') f.failNextCowWrite(op.errno);
      else if (op.kind === 'fallocate') f.failNextFallocate(op.errno);
      else f.failNextOriginRead(op.errno);
      return { errno: 0 };
    }
    case 'unlink':
      return { errno: caught(() => emu.unlink(op.path)) };
  }
}

/** Run one op against the model; returns the expected errno (and minor for getFree). */
export function applyModel(m: Model, op: Op): { errno: number; minor?: number } {
  m.lastTransition = undefined;
  switch (op.t) {
    case 'setup':
      return { errno: m.setup(op.minor, op.bdev, op.cow, op.mib) };
    case 'reload':
      return { errno: m.reload(op.minor, op.bdev, op.cow, op.snap) };
    case 'destroy':
      return { errno: m.destroy(op.minor) };
    case 'transInc':
      return { errno: m.transitionInc(op.minor) };
    case 'transSnap':
      return { errno: m.transitionSnap(op.minor, op.cow, op.mib) };
    case 'reconfigure':
      return { errno: m.reconfigure(op.minor) };
    case 'info':
      return { errno: m.info(op.minor) };
    case 'getFree': {
      const r = m.getFree();
      return r <= 0 ? { errno: 0, minor: -r } : { errno: r, minor: -1 };
    }
    case 'expand':
      return { errno: m.expand(op.minor, op.mib) };
    case 'autoExpand':
      return { errno: m.autoExpand(op.minor, op.step, op.res) };
    case 'write': {
      const data = fill(op.len, op.seed);
      m.write(op.off, op.len, () => m.live.set(data, op.off));
      return { errno: 0 };
    }
    case 'discard':
    case 'zeroes':
      m.write(op.off, op.len, () => m.live.fill(0, op.off, op.off + op.len));
      return { errno: 0 };
    case 'mount':
      return { errno: m.mountOp(op.ro) };
    case 'umount':
      return { errno: m.umountOp() };
    case 'remount':
      return { errno: m.remountOp(op.ro) };
    case 'open':
      return { errno: m.open(op.minor) };
    case 'close':
      return { errno: m.close(op.minor) };
    case 'read':
      return { errno: m.readErrno(op.minor) };
    case 'reboot':
      m.reboot();
      return { errno: 0 };
    case 'crash':
      m.crash();
      return { errno: 0 };
    case 'fault':
      m.faults.set(op.kind, op.errno);
      return { errno: 0 };
    case 'unlink':
      return { errno: m.unlinkOp(op.path) };
  }
}

export function describeOp(op: Op): string {
  const { t, ...rest } = op;
  return `${t}(${Object.entries(rest)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(' ')})`;
}

// ---- fast-check commands ----

import { checkCommand } from './checks.js';

export interface System {
  model: Model;
  real: Emulator;
}

export class OpCommand implements fc.Command<Model, Emulator> {
  constructor(readonly op: Op) {}
  check(): boolean {
    return true;
  }
  run(m: Model, emu: Emulator): void {
    const procBefore = emu.ctl.procInfo();
    const exp = applyModel(m, this.op);
    const real = applyReal(emu, this.op);
    checkCommand(m, emu, this.op, real, exp, procBefore);
  }
  toString(): string {
    return describeOp(this.op);
  }
}

export function commandArb(kind: 'all' | 'cycle' = 'all'): fc.Arbitrary<fc.Command<Model, Emulator>> {
  return (kind === 'cycle' ? cycleOpArb() : opArb()).map((op) => new OpCommand(op));
}

export function newSystem(seed = 1): { model: Model; real: Emulator } {
  return { model: new Model(), real: makeReal(seed) };
}
