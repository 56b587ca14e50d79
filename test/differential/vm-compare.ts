// SPDX-License-Identifier: GPL-2.0-only
/**
 * Comparison of the emulator and dattobd.ko after each command of a
 * differential sequence: errno, info of every minor, /proc/datto-info
 * (parsed), snapshot-device hashes, and — where the module has closed a COW
 * file clean (old file after transition-to-snapshot, dormant after
 * remount-ro) — deterministic header fields and the set of changed blocks
 * of the test region.
 *
 * Not compared, because the real filesystem writes its own metadata while a
 * device is traced (the emulator's volume has no filesystem): fpos and
 * nr_changed_blocks, and index entries outside the test region. uuids are
 * random on both sides: they are compared through a bijection (one series
 * keeps one uuid on each side).
 *
 * The module saves original data synchronously but writes it to the COW
 * file from a worker thread, so a COW-file-full (EFBIG) or write error is
 * recorded shortly after the origin write returned. settle() waits (bounded)
 * for such a failure before the state is compared; a failure that does not
 * arrive within the bound is a divergence like any other.
 */
import type { Emulator } from '../../emulator/index.js';
import type { DeviceInfo } from '../../src/driver/types.js';
import { decodeHeader, readIndexEntry } from '../../src/format/index.js';
import { parseProcInfo } from '../../src/proc/parse.js';
import type { ProcDevice } from '../../src/proc/types.js';
import { BLOCK, outcomeOf, type Cmd, type WorldConfig } from './model.js';
import type { KernelWorld } from './vm-kernel.js';
import { readWhole } from './vm-world.js';

const ZERO_UUID = '0'.repeat(32);

export class Divergence extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Divergence';
  }
}

export class Comparator {
  /** kernel uuid -> emulator uuid */
  private readonly uuids = new Map<string, string>();
  /** emulator uuid -> kernel uuid */
  private readonly back = new Map<string, string>();

  constructor(private readonly cfg: WorldConfig) {}

  private fail(what: string): never {
    throw new Divergence(what);
  }

  private uuid(k: string | undefined, e: string | undefined, where: string): void {
    if (k === undefined || e === undefined) {
      if (k !== e) this.fail(`${where}: uuid present on one side only (module ${String(k)}, emulator ${String(e)})`);
      return;
    }
    if ((k === ZERO_UUID) !== (e === ZERO_UUID)) this.fail(`${where}: uuid zero on one side only (module ${k}, emulator ${e})`);
    if (k === ZERO_UUID) return;
    const mk = this.uuids.get(k);
    const me = this.back.get(e);
    if (mk === undefined && me === undefined) {
      this.uuids.set(k, e);
      this.back.set(e, k);
    } else if (mk !== e || me !== k) {
      this.fail(`${where}: uuid series differ (module ${k} pairs with ${String(mk)}, emulator ${e} pairs with ${String(me)})`);
    }
  }

  /** Outcome of a command on both sides. */
  outcome(c: Cmd, k: { outcome: string; value?: unknown }, e: { outcome: string; value?: unknown }): void {
    const shellish = c.k === 'mount' || c.k === 'umount' || c.k === 'remount' || c.k === 'discard' || c.k === 'reboot';
    if (shellish ? (k.outcome === 'OK') !== (e.outcome === 'OK') : k.outcome !== e.outcome) {
      this.fail(`outcome: module ${k.outcome}, emulator ${e.outcome}`);
    }
    if (k.outcome !== 'OK') return;
    if (c.k === 'readSnap' && k.value !== e.value) this.fail(`/dev/datto${c.minor} region hash: module ${String(k.value)}, emulator ${String(e.value)}`);
    if (c.k === 'getFree' && k.value !== e.value) this.fail(`get-free-minor: module ${String(k.value)}, emulator ${String(e.value)}`);
  }

  private info(minor: number, k: DeviceInfo, e: DeviceInfo): void {
    const w = `info(${minor})`;
    const pick = (i: DeviceInfo) => ({ state: i.state, error: i.error, cacheSize: i.cacheSize, fallocSize: i.fallocSize, seqid: i.seqid, cow: i.cow, bdev: i.bdev, version: i.version });
    const a = pick(k);
    const b = pick(e);
    for (const f of Object.keys(a) as (keyof typeof a)[]) {
      if (a[f] !== b[f]) this.fail(`${w}.${f}: module ${JSON.stringify(a[f])}, emulator ${JSON.stringify(b[f])}`);
    }
    this.uuid(k.uuid, e.uuid, w);
  }

  private proc(k: ProcDevice, e: ProcDevice): void {
    const w = `/proc device ${k.minor}`;
    const pick = (d: ProcDevice) => ({
      cowFile: d.cowFile,
      blockDevice: d.blockDevice,
      maxCache: d.maxCache,
      fallocate: d.fallocate,
      cowSizeCurrent: d.cowSizeCurrent,
      seqId: d.seqId,
      version: d.version,
      hasNrChanged: d.nrChangedBlocks !== undefined,
      autoExpand: JSON.stringify(d.autoExpand),
      error: d.error,
      state: d.state,
    });
    const a = pick(k);
    const b = pick(e);
    for (const f of Object.keys(a) as (keyof typeof a)[]) {
      if (a[f] !== b[f]) this.fail(`${w} "${f}": module ${JSON.stringify(a[f])}, emulator ${JSON.stringify(b[f])}`);
    }
    this.uuid(k.uuid, e.uuid, w);
  }

  /**
   * Wait up to `ms` for the module to record failures the emulator already
   * has (asynchronous COW writes). Returns the time waited.
   */
  settle(kw: KernelWorld, em: Emulator, ms = 5000): number {
    const t0 = Date.now();
    const pending = (): boolean => {
      for (let m = 0; m < this.cfg.maxDevices; m++) {
        const d = em.world.devices[m];
        if (!d || d.error === 0) continue;
        const k = outcomeOf(() => kw.ctl.info(m));
        if (k.outcome === 'OK' && (k.value as DeviceInfo).error === 0) return true;
      }
      return false;
    };
    while (pending() && Date.now() - t0 < ms) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    return Date.now() - t0;
  }

  /** State of every minor and /proc after a command. */
  state(kw: KernelWorld, em: Emulator): void {
    for (let m = 0; m < this.cfg.maxDevices; m++) {
      const k = outcomeOf(() => kw.ctl.info(m));
      const e = outcomeOf(() => em.ctl.info(m));
      if (k.outcome !== e.outcome) this.fail(`info(${m}): module ${k.outcome}, emulator ${e.outcome}`);
      if (k.outcome === 'OK') this.info(m, k.value as DeviceInfo, e.value as DeviceInfo);
    }
    const ktext = kw.ctl.procInfo();
    let kp;
    try {
      kp = parseProcInfo(ktext);
    } catch (err) {
      this.fail(`the module's /proc/datto-info does not parse: ${(err as Error).message}\n${ktext}`);
    }
    const ep = parseProcInfo(em.ctl.procInfo());
    const km = kp.devices.map((d) => d.minor).join(',');
    const emm = ep.devices.map((d) => d.minor).join(',');
    if (km !== emm) this.fail(`/proc minors: module [${km}], emulator [${emm}]`);
    kp.devices.forEach((d, i) => this.proc(d, ep.devices[i]!));
  }

  /**
   * A COW file both sides have closed clean: deterministic header fields and
   * which blocks of the test region (and overflow zone) are marked changed.
   */
  closedFile(where: string, kernelPath: string, emu: Emulator, emuPath: string, fsBytes: number): void {
    const kb = readWhole(kernelPath);
    const eb = emu.readFile(emuPath);
    const kh = decodeHeader(kb);
    const eh = decodeHeader(eb);
    for (const f of ['magic', 'flags', 'fsize', 'seqid', 'version'] as const) {
      if (kh[f] !== eh[f]) this.fail(`${where} header ${f}: module ${kh[f]}, emulator ${eh[f]}`);
    }
    const first = fsBytes / BLOCK;
    const diff: number[] = [];
    for (let b = 0; b < this.cfg.regionBlocks + this.cfg.overflowBlocks; b++) {
      if ((readIndexEntry(kb, first + b) !== 0) !== (readIndexEntry(eb, first + b) !== 0)) diff.push(b);
    }
    if (diff.length) this.fail(`${where}: changed-block sets of the test region differ at region blocks ${diff.slice(0, 20).join(',')}${diff.length > 20 ? ', ...' : ''}`);
  }
}
