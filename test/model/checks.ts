// SPDX-License-Identifier: GPL-2.0-only
/** Properties checked after every command of a model run. */
import type { Emulator } from '../../emulator/index.js';
import { errnoName } from '../../src/abi/errno.js';
import { readIndexEntry } from '../../src/format/index.js';
import { parseProcInfo } from '../../src/proc/index.js';
import type { Op, RealResult } from './commands.js';
import { BLK, CFG, Model, NBLOCKS } from './model.js';

export class PropertyError extends Error {
  override name = 'PropertyError';
}

function fail(msg: string): never {
  throw new PropertyError(msg);
}

function sameBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const en = (n: number): string => (n === 0 ? 'OK' : errnoName(n));

/** Ops whose failure is allowed to change device state (SPEC: failed expansion ⇒ fail state). */
/** Ops after which the whole live volume is compared (besides every 32nd command). */
const FULL_VOLUME_OPS = new Set<Op['t']>(['crash', 'reboot']);
const IO_OPS = new Set<Op['t']>(['write', 'discard', 'zeroes', 'read']);

const FAILURE_MAY_CHANGE = new Set<Op['t']>(['expand']);

export function checkCommand(m: Model, emu: Emulator, op: Op, real: RealResult, exp: { errno: number; minor?: number }, procBefore: string): void {
  if (real.errno !== exp.errno) fail(`errno: emulator ${en(real.errno)}, SPEC/model ${en(exp.errno)}`);
  if (op.t === 'getFree' && real.minor !== exp.minor) fail(`get-free-minor: emulator ${real.minor}, model ${exp.minor}`);
  const procAfter = emu.ctl.procInfo();
  if (real.errno !== 0 && !FAILURE_MAY_CHANGE.has(op.t) && op.t !== 'mount' && op.t !== 'remount') {
    if (procAfter !== procBefore) fail(`a failed ${op.t} changed /proc/datto-info:\n${procBefore}\n---\n${procAfter}`);
  }
  // device table: existence, state, error — through info, and through /proc after
  // every non-I/O command (I/O changes no state bits without changing info too)
  const parseProc = !IO_OPS.has(op.t) || real.errno !== 0;
  const procByMinor = parseProc ? new Map(parseProcInfo(procAfter).devices.map((d) => [d.minor, d])) : undefined;
  for (let i = 0; i < CFG.maxMinors; i++) {
    const md = m.devs[i];
    const r = emu.raw.info(i);
    if (!md) {
      if (typeof r !== 'number') fail(`minor ${i}: emulator has a device (state ${r.state}), model has none`);
      if (procByMinor?.has(i)) fail(`minor ${i}: listed in /proc but not set up`);
      continue;
    }
    if (typeof r === 'number') fail(`minor ${i}: emulator says ${en(r)}, model has state ${md.state}`);
    if (r.state !== md.state || r.error !== md.error) {
      fail(`minor ${i}: emulator state ${r.state} error ${r.error}, model state ${md.state} error ${md.error}`);
    }
    const f = (md.state & 4) === 0 ? m.fileOf(md) : undefined;
    if (f && md.error === 0) {
      if (r.nrChangedBlocks !== f.nonzero.size) fail(`minor ${i}: nr_changed_blocks ${r.nrChangedBlocks}, model ${f.nonzero.size}`);
      if (r.fallocSize !== f.fsize) fail(`minor ${i}: COW file size ${r.fallocSize}, model ${f.fsize}`);
    }
    if (procByMinor) {
      const p = procByMinor.get(i);
      if (!p || p.state !== md.state || (p.error ?? 0) !== md.error) fail(`minor ${i}: /proc disagrees with info`);
    }
  }
  // the live volume: failures never alter it; writes land
  const vol = emu.world.volumes.get(CFG.vol);
  if (!vol) fail('volume vanished');
  m.checks++;
  if (op.t === 'write' || op.t === 'discard' || op.t === 'zeroes') {
    // only this range can have changed since the last comparison
    const d = vol.compare(op.off, m.live.subarray(op.off, op.off + op.len));
    if (d >= 0) fail(`live volume differs at byte ${op.off + d} after ${op.t}`);
  }
  if (FULL_VOLUME_OPS.has(op.t) || m.checks % 32 === 0) {
    const d = vol.compare(0, m.live);
    if (d >= 0) fail(`live volume differs at byte ${d}`);
  }
  // free space of the filesystem (COW file sizes, truncation, unlink on failure)
  if (vol.fs.freeBytes() !== m.free()) fail(`free space: emulator ${vol.fs.freeBytes()}, model ${m.free()}`);
  // snapshot device contents
  if (op.t === 'read' && real.errno === 0) checkSnapshotRead(m, op, real.data);
  if (op.t === 'transSnap' && real.errno === 0) checkIncrementalCycle(m, emu, op.minor);
}

/** The snapshot device reads the volume exactly as it was at the snapshot instant. */
function checkSnapshotRead(m: Model, op: Extract<Op, { t: 'read' }>, data: Uint8Array | undefined): void {
  const dev = m.devs[op.minor];
  if (!dev || !data) fail('read succeeded without a device');
  const f = m.fileOf(dev);
  const expected = (f && m.instantRange(f, op.off, op.len)) ?? m.snapshotRange(dev, op.off, op.len);
  const d = sameBytes(data, expected);
  if (d >= 0) fail(`/dev/datto${op.minor} differs from the snapshot instant at byte ${op.off + d} (block ${Math.floor((op.off + d) / BLK)})`);
}

/**
 * After snapshot → incremental → writes → transition-to-snapshot: the old
 * COW file marks every block written since the previous instant, and
 * previous image + those blocks from the new snapshot = the new snapshot.
 */
function checkIncrementalCycle(m: Model, emu: Emulator, minor: number): void {
  const t = m.lastTransition;
  if (!t) return;
  const old = emu.readFile(CFG.mnt + t.oldPath);
  const marked: number[] = [];
  for (let b = 0; b < NBLOCKS; b++) if (readIndexEntry(old, b) !== 0) marked.push(b);
  const markedSet = new Set(marked);
  if (t.oldInstant) {
    for (const b of t.changed) if (!markedSet.has(b)) fail(`block ${b} was written since the previous snapshot but is not marked in ${t.oldPath}`);
    const img = t.oldInstant.slice();
    for (const b of marked) img.set(emu.readSnapshot(minor, b * BLK, BLK), b * BLK);
    const d = sameBytes(img, m.live);
    if (d >= 0) fail(`previous image + changed blocks differs from the new snapshot at byte ${d}`);
  }
}
