// SPDX-License-Identifier: GPL-2.0-only
/**
 * Command sequences on the emulator; for every ioctl the emulator executes,
 * the kernel core (C) is asked what it decides for the same minor view
 * (dbd_check_cmd: range → existence → busy → failed → state), and for every
 * successful state change what dbd_state_next says the next state is. Mount,
 * umount and remount events are checked against the state table too.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { errnoName } from '../../src/abi/errno.js';
import type { Emulator } from '../../emulator/index.js';
import { World } from '../../emulator/world.js';
import { loadCore, type Core, type CoreCmdName, type CoreEventName, type CoreMinorView } from './core.js';
import { newEmulatorWorld, runOnEmulator, sequenceArb, showCmd, type Cmd, type WorldConfig } from './model.js';
import { fcParams } from './params.js';

let core: Core;
/** `<ioctl>:<view>` pairs the sequences reached (checked to not be vacuous). */
const coverage = new Set<string>();
beforeAll(() => {
  core = loadCore();
}, 180_000);

const MiB = 1048576;
/** Small volumes: the emulator keeps COW files in memory. */
const cfg: WorldConfig = {
  vols: [
    { dev: '/dev/loop0', mnt: '/mnt/l0', sizeBytes: 24 * MiB, fsBytes: 16 * MiB, fsFreeBytes: 14 * MiB },
    { dev: '/dev/loop1', mnt: '/mnt/l1', sizeBytes: 24 * MiB, fsBytes: 16 * MiB, fsFreeBytes: 14 * MiB },
  ],
  maxDevices: 3,
  regionBlocks: 256,
  overflowBlocks: 1024,
  cowNames: ['cow0', 'cow1', '.datto', 'dir-missing/cow'],
  fallocMibs: [1, 2, 4],
};

const IOCTL: Partial<Record<Cmd['k'], CoreCmdName>> = {
  setup: 'SETUP_SNAP',
  reloadSnap: 'RELOAD_SNAP',
  reloadInc: 'RELOAD_INC',
  destroy: 'DESTROY',
  transInc: 'TRANSITION_INC',
  transSnap: 'TRANSITION_SNAP',
  reconfigure: 'RECONFIGURE',
  info: 'INFO',
  getFree: 'GET_FREE',
  expand: 'EXPAND_COW_FILE',
  autoExpand: 'RECONFIGURE_AUTO_EXPAND',
};

/** Errors a command may still return after the core's minor checks passed. */
const LATER: Partial<Record<CoreCmdName, string[]>> = {
  SETUP_SNAP: ['ENOENT', 'ENOTBLK', 'EINVAL', 'EISDIR', 'ENOTDIR', 'EROFS', 'EPERM', 'ENOSPC', 'EFBIG'],
  RELOAD_SNAP: ['ENOENT', 'ENOTBLK', 'EINVAL'],
  RELOAD_INC: ['ENOENT', 'ENOTBLK', 'EINVAL'],
  TRANSITION_SNAP: ['ENOENT', 'EINVAL', 'EISDIR', 'ENOTDIR', 'EROFS', 'EPERM', 'ENOSPC', 'EFBIG'],
  EXPAND_COW_FILE: ['ENOSPC', 'EFBIG', 'EIO', 'EINVAL'],
  GET_FREE: ['ENOENT'],
};

const EVENT: Partial<Record<CoreCmdName, CoreEventName>> = {
  SETUP_SNAP: 'SETUP',
  RELOAD_SNAP: 'RELOAD_SNAP',
  RELOAD_INC: 'RELOAD_INC',
  TRANSITION_INC: 'TRANSITION_INC',
  TRANSITION_SNAP: 'TRANSITION_SNAP',
};

function minorOf(c: Cmd): number {
  return 'minor' in c ? c.minor : 0;
}

function view(e: Emulator, minor: number): CoreMinorView {
  const d = minor < e.world.maxSnapDevices ? e.world.devices[minor] : undefined;
  return d ? { exists: true, busy: d.refs > 0, failCode: d.error, state: d.state } : { exists: false, busy: false, failCode: 0, state: 0 };
}

interface DevSnap {
  state: number;
  error: number;
}
function snapshotDevices(e: Emulator): (DevSnap | undefined)[] {
  return Array.from({ length: e.world.maxSnapDevices }, (_, i) => {
    const d = e.world.devices[i];
    return d ? { state: d.state, error: d.error } : undefined;
  });
}

/** Check one command against the core; returns a divergence description or undefined. */
function checkStep(e: Emulator, c: Cmd): string | undefined {
  const name = IOCTL[c.k];
  const minor = minorOf(c);
  const before = snapshotDevices(e);
  const v = view(e, minor);
  const r = runOnEmulator(e, cfg, c);
  if (name) {
    const rc = core.checkCmd(core.constants.cmd[name], minor, e.world.maxSnapDevices, v);
    coverage.add(`${name}:${minor >= e.world.maxSnapDevices ? 'range' : v.exists ? `s${v.state}${v.busy ? 'b' : ''}${v.failCode ? 'f' : ''}` : 'none'}`);
    const coreOutcome = rc === 0 ? 'OK' : errnoName(rc);
    if (rc !== 0 && r.outcome !== coreOutcome) return `${name}: core says ${coreOutcome}, emulator ${r.outcome} (view ${JSON.stringify(v)})`;
    if (rc === 0 && r.outcome !== 'OK' && !(LATER[name] ?? []).includes(r.outcome)) {
      return `${name}: core accepts the minor (view ${JSON.stringify(v)}), emulator fails with ${r.outcome} (${e.raw.last?.message ?? ''})`;
    }
    if (name === 'GET_FREE') {
      const full = before.every((d) => d !== undefined);
      if ((r.outcome === 'ENOENT') !== full) return `GET_FREE: emulator ${r.outcome} with ${full ? 'all' : 'not all'} minors in use`;
      if (r.outcome === 'OK' && before[r.value as number] !== undefined) return `GET_FREE returned used minor ${String(r.value)}`;
    }
    const ev = EVENT[name];
    const after = e.world.devices[minor];
    if (ev && r.outcome === 'OK') {
      const n = core.stateNext(v.state, core.constants.event[ev]);
      if (n.rc !== 0) return `${name} succeeded on the emulator but dbd_state_next(${v.state}, ${ev}) = ${n.rc}`;
      if (after?.state !== n.next) return `${name}: dbd_state_next(${v.state}, ${ev}) = ${n.next}, emulator state ${String(after?.state)}`;
    }
    if (ev && r.outcome !== 'OK' && name !== 'TRANSITION_INC') {
      const b = before[minor];
      if (JSON.stringify(b) !== JSON.stringify(after ? { state: after.state, error: after.error } : undefined)) {
        return `${name} failed with ${r.outcome} but changed the device: ${JSON.stringify(b)} -> state ${String(after?.state)}`;
      }
    }
    return undefined;
  }
  if (c.k === 'mount' || c.k === 'umount' || c.k === 'remount') return checkMountEvent(e, c, before, r.outcome);
  return undefined;
}

/** Devices whose state changed on a mount event must follow the state table. */
function checkMountEvent(e: Emulator, c: Cmd & { vol: number }, before: (DevSnap | undefined)[], outcome: string): string | undefined {
  if (outcome !== 'OK') return undefined;
  const ro = 'ro' in c ? c.ro : false;
  const ev: CoreEventName = c.k === 'umount' || (c.k === 'remount' && ro) ? 'UMOUNT' : 'MOUNT_RW';
  if (c.k === 'mount' && ro) {
    // a new read-only mount is ignored by the hooks
    for (let i = 0; i < before.length; i++) {
      const d = e.world.devices[i];
      if (JSON.stringify(before[i]) !== JSON.stringify(d ? { state: d.state, error: d.error } : undefined)) return `ro mount changed device ${i}`;
    }
    return undefined;
  }
  for (let i = 0; i < before.length; i++) {
    const b = before[i];
    const d = e.world.devices[i];
    if (!b || !d) continue;
    if (d.state === b.state) continue;
    const n = core.stateNext(b.state, core.constants.event[ev]);
    if (n.rc !== 0 || n.next !== d.state) return `${ev} moved device ${i} from ${b.state} to ${d.state}; dbd_state_next says rc ${n.rc} next ${n.next}`;
    if (b.error !== 0) return `${ev} moved failed device ${i} (error ${b.error}); hooks must ignore failed devices`;
  }
  return undefined;
}

function runSequence(cmds: Cmd[], seed: number): void {
  const e = newEmulatorWorld(cfg, seed);
  e.mount(cfg.vols[0]!.dev, cfg.vols[0]!.mnt);
  const log: string[] = [];
  for (const c of cmds) {
    log.push(showCmd(cfg, c));
    const d = checkStep(e, c);
    if (d) throw new Error(`divergence after:\n  ${log.join('\n  ')}\n=> ${d}`);
  }
}

describe('dbd_check_cmd / dbd_state_next vs the emulator on command sequences', () => {
  it('every ioctl decision and state change agrees', () => {
    fc.assert(
      fc.property(sequenceArb(cfg, { exclude: ['cowFull'] }), fc.nat(), (cmds, seed) => runSequence(cmds, seed)),
      fcParams(0.25),
    );
    // the sequences reach every state, busy and failed devices, and out-of-range minors
    const seen = [...coverage].join(' ');
    for (const s of ['s0', 's1', 's2', 's3', 's4', 's5', 's3b', 'f', 'range', 'none']) expect(seen, `no ioctl met a device view '${s}'`).toContain(s);
    expect(coverage.size).toBeGreaterThan(60);
  });

  it('sequences that fill the COW file agree too', () => {
    const small: WorldConfig = { ...cfg, fallocMibs: [1] };
    fc.assert(
      fc.property(sequenceArb(small, { minLength: 5, maxLength: 25, weights: { cowFull: 3, setup: 6 } }), fc.nat(), (cmds, seed) => runSequence(cmds, seed)),
      fcParams(0.05),
    );
  });

  it('every command x state x busy x failed x minor combination', () => {
    // exhaustive over the view space: the emulator world is built to match each view
    const states = [0, 1, 2, 3, 4, 5];
    let checked = 0;
    for (const name of Object.keys(core.constants.cmd) as CoreCmdName[]) {
      for (const exists of [false, true]) {
        for (const state of exists ? states : [0]) {
          for (const busy of exists ? [false, true] : [false]) {
            for (const failCode of exists ? [0, -5, -27] : [0]) {
              for (const minor of [0, 2, 3, 7]) {
                const rc = core.checkCmd(core.constants.cmd[name], minor, 3, { exists, busy, failCode, state });
                expect(matrixExpectation(name, minor, 3, { exists, busy, failCode, state }), `${name} minor=${minor} exists=${exists} state=${state} busy=${busy} fail=${failCode}`).toBe(rc === 0 ? 'OK' : errnoName(rc));
                checked++;
              }
            }
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });

  it('max_snap_devices parameter mapping agrees with the emulator', () => {
    for (let p = 0; p <= 300; p++) expect(core.maxDevices(p)).toBe(new World({ maxSnapDevices: p }).maxSnapDevices);
  });
});

/** SPEC §3.3 ioctl x state matrix, written out independently of both implementations. */
function matrixExpectation(name: CoreCmdName, minor: number, max: number, v: CoreMinorView): string {
  if (name === 'GET_FREE') return 'OK';
  if (minor >= max) return 'EINVAL';
  if (name === 'SETUP_SNAP' || name === 'RELOAD_SNAP' || name === 'RELOAD_INC') return v.exists ? 'EBUSY' : 'OK';
  if (!v.exists) return 'ENOENT';
  if (name === 'INFO') return 'OK';
  const busyAllowed = name === 'EXPAND_COW_FILE' || name === 'RECONFIGURE_AUTO_EXPAND';
  if (v.busy && !busyAllowed) return 'EBUSY';
  if (name === 'DESTROY') return 'OK';
  if (v.failCode !== 0) return 'EINVAL';
  const row: Record<string, number[]> = {
    TRANSITION_INC: [3],
    TRANSITION_SNAP: [2],
    RECONFIGURE: [0, 1, 2, 3, 4, 5],
    EXPAND_COW_FILE: [3],
    RECONFIGURE_AUTO_EXPAND: [3],
  };
  return (row[name] ?? []).includes(v.state) ? 'OK' : 'EINVAL';
}
