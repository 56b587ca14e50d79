// SPDX-License-Identifier: GPL-2.0-only
// Differential model test: random command sequences (test/differential/
// model.ts) run on the emulator (in this guest's node process) and on
// dattobd.ko, compared after every command (test/differential/vm-compare.ts):
// errno, info of every minor, /proc/datto-info, snapshot-device hashes of
// the test region, and headers / changed-block sets of COW files the module
// closed clean. A divergence fails the case with the shrunk sequence and the
// fast-check seed/path.
//
// Two loop volumes of 64 MiB with ext4 on the first 48 MiB; origin writes go
// to the tail (test region 160 blocks + a 512-block overflow zone only
// written by cowFull), so both sides see exactly the same traced writes.
//
// Parameters (env in the guest, or <DBD_VM_DIR>/diff-params-<pid>.json written by
// test/differential/run-vm-diff.ts, since the harness does not pass the
// host's environment): DBD_DIFF_RUNS (sequences per kernel, default 100,
// spread over the 25 cases below), DBD_DIFF_SEED (default a fixed seed, so
// that the test suite and CI run the same sequences every time; "random"
// for a new one: run-vm-diff.ts picks and prints one), DBD_DIFF_PATH,
// DBD_DIFF_MIN / DBD_DIFF_MAX (commands per sequence, default 20..50),
// DBD_DIFF_REPLAY (a counterexample as printed by a failure, the JSON
// [[commands...], seed]: every batch runs only that sequence, once, so a
// divergence that depends on timing shows in some of the 25 replays).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { VmContext } from '../guest/api.js';
import { newEmulatorWorld, runOnEmulator, sequenceArb, showCmd, type Cmd, type CmdKind, type WorldConfig } from '../../differential/model.js';
import { Comparator, Divergence } from '../../differential/vm-compare.js';
import { KernelWorld } from '../../differential/vm-kernel.js';
import { loopVolume } from '../../differential/vm-world.js';

const BATCHES = 25;
/** the suite's sequences (see DBD_DIFF_SEED) */
const DEFAULT_SEED = 20261126;

interface DiffParams {
  runs: number;
  seed: number | undefined;
  path: string | undefined;
  min: number;
  max: number;
  replay: [Cmd[], number] | undefined;
}

function params(t: VmContext): DiffParams {
  // the file of the host process that started this boot (run dir <kernel>-<label>-<pid>)
  let file: Record<string, unknown> = {};
  const pid = /-(\d+)$/.exec(t.config.runDir)?.[1];
  const f = join(t.config.vmDir, `diff-params-${pid ?? 'none'}.json`);
  try {
    if (existsSync(f)) file = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
  } catch {
    file = {};
  }
  const get = (k: string): string | undefined => process.env[k] ?? (file[k] === undefined ? undefined : String(file[k]));
  const int = (k: string, d: number): number => {
    const v = Number(get(k));
    return Number.isSafeInteger(v) && v > 0 ? v : d;
  };
  const seed = get('DBD_DIFF_SEED');
  const replay = get('DBD_DIFF_REPLAY');
  return {
    runs: int('DBD_DIFF_RUNS', 100),
    seed: seed === 'random' ? undefined : seed !== undefined && Number.isSafeInteger(Number(seed)) ? Number(seed) : DEFAULT_SEED,
    path: get('DBD_DIFF_PATH'),
    min: int('DBD_DIFF_MIN', 20),
    max: int('DBD_DIFF_MAX', 50),
    replay: replay === undefined ? undefined : (JSON.parse(replay) as [Cmd[], number]),
  };
}

/**
 * Does remount-ro make an active device dormant (the module's mount hooks)?
 * Without them the model leaves out mount, umount, remount and reboot.
 */
function probeMountHooks(t: VmContext, kw: KernelWorld, cfg: WorldConfig): boolean {
  kw.reset();
  const v = cfg.vols[0]!;
  kw.ctl.setupSnapshot({ minor: 0, bdev: v.dev, cow: `${v.mnt}/probe.datto`, fallocatedSpace: 1, cacheSize: 0 });
  const r = t.run(['mount', '-o', 'remount,ro', v.mnt], { allowFail: true });
  const dormant = r.code === 0 && kw.ctl.info(0).state === 1;
  if (r.code === 0) t.run(['mount', '-o', 'remount,rw', v.mnt]);
  kw.ctl.destroy(0);
  return dormant;
}

function stateOf(kw: KernelWorld, minor: number): { state: number; cow: string } | undefined {
  try {
    const i = kw.ctl.info(minor);
    return { state: i.state, cow: i.cow };
  } catch {
    return undefined;
  }
}

async function batch(t: VmContext, index: number): Promise<void> {
  const p = params(t);
  const per = Math.ceil(p.runs / BATCHES);
  const from = index * per;
  const count = p.replay ? 1 : Math.max(0, Math.min(per, p.runs - from));
  if (count === 0) t.skip(`DBD_DIFF_RUNS=${p.runs}: no sequences left for batch ${index}`);

  t.modprobe('loop');
  const vols = [loopVolume(t, 'dl0', 64, 48), loopVolume(t, 'dl1', 64, 48)];
  const cfg: WorldConfig = {
    vols,
    maxDevices: 3,
    regionBlocks: 160,
    overflowBlocks: 512,
    cowNames: ['cow0', 'cow1', '.datto', 'missing-dir/cow', 'odd "name" \\ é'],
    fallocMibs: [1, 2],
  };
  t.loadModule({ max_snap_devices: cfg.maxDevices });
  const kw = new KernelWorld(t, cfg);
  const hooks = probeMountHooks(t, kw, cfg);
  const exclude: CmdKind[] = hooks ? [] : ['mount', 'umount', 'remount', 'reboot'];
  t.log(`mount hooks ${hooks ? 'work' : 'missing: mount/umount/remount/reboot left out of the model (TODO)'}`);
  // discard needs a loop device that supports it (the guest's tmpfs-backed loop may not)
  const dv = cfg.vols[0]!;
  const disc = t.run(['blkdiscard', '-o', String(dv.fsBytes), '-l', '4096', dv.dev], { allowFail: true });
  if (disc.code !== 0) {
    exclude.push('discard');
    t.log(`blkdiscard on ${dv.dev} fails here (${disc.stderr.trim()}): discard left out of the model`);
  }

  const stats = {
    kernel: t.kernel.kver,
    batch: index,
    sequences: 0,
    commands: 0,
    excluded: exclude,
    divergences: 0,
    ms: 0,
    /** time spent waiting for asynchronous module failures (see Comparator.settle) */
    settleMs: 0,
    /** per command kind: count, ms on the module, on the emulator, comparing */
    timing: {} as Record<string, { n: number; kernel: number; emu: number; cmp: number }>,
    firstDivergence: undefined as string | undefined,
  };
  const t0 = Date.now();
  const writeStats = (): void => writeFileSync(join(t.config.runDir, `diff-stats-${index}.json`), JSON.stringify(stats) + '\n');

  // fc.assert is synchronous: the runner's case timeout cannot interrupt it, so the
  // shrinking of a found divergence stops by itself at this deadline (later
  // candidates are not run; the smallest failing sequence so far is reported)
  const deadline = Date.now() + Math.max(20_000, t.config.caseTimeoutMs - 25_000);
  const runSequence = (cmds: Cmd[], seed: number): void => {
    if (stats.divergences > 0 && Date.now() > deadline) return;
    kw.reset();
    const em = newEmulatorWorld(cfg, seed);
    for (const v of cfg.vols) em.mount(v.dev, v.mnt);
    const cmp = new Comparator(cfg);
    const log: string[] = [];
    stats.sequences++;
    const check = (i: number, f: () => void): void => {
      try {
        f();
      } catch (e) {
        if (!(e instanceof Divergence)) throw e;
        stats.divergences++;
        // the message first: CI logs may cut the end of a long report
        const msg = `divergence on ${t.kernel.kver} at command ${i + 1}/${cmds.length}: ${e.message}\n  ${log.join('\n  ')}\n=> ${e.message}`;
        if (!stats.firstDivergence) {
          stats.firstDivergence = msg;
          writeStats();
          console.log(`dbd-diff: ${msg}`);
        }
        throw new Error(msg);
      }
    };
    cmds.forEach((c, i) => {
      log.push(showCmd(cfg, c));
      const before = 'minor' in c ? stateOf(kw, c.minor) : undefined;
      const t1 = Date.now();
      const rk = kw.run(c);
      const t2 = Date.now();
      const re = runOnEmulator(em, cfg, c);
      const t3 = Date.now();
      stats.commands++;
      const tm = (stats.timing[c.k] ??= { n: 0, kernel: 0, emu: 0, cmp: 0 });
      tm.n++;
      tm.kernel += t2 - t1;
      tm.emu += t3 - t2;
      if (c.k === 'write' || c.k === 'cowFull' || c.k === 'discard') stats.settleMs += cmp.settle(kw, em);
      check(i, () => {
        cmp.outcome(c, rk, re);
        cmp.state(kw, em);
        // the old file of a transition to snapshot is closed CLEAN|INDEX_ONLY on both sides
        if (c.k === 'transSnap' && rk.outcome === 'OK' && before) {
          const v = cfg.vols.find((x) => x.dev === kw.ctl.info(c.minor).bdev)!;
          cmp.closedFile(`old COW file ${before.cow} after transition-to-snapshot`, `${v.mnt}${before.cow}`, em, `${v.mnt}${before.cow}`, v.fsBytes);
        }
        // remount-ro closes the files of active devices on that volume clean
        if (c.k === 'remount' && c.ro && rk.outcome === 'OK') {
          const v = cfg.vols[c.vol]!;
          for (let m = 0; m < cfg.maxDevices; m++) {
            const s = stateOf(kw, m);
            const info = s && kw.ctl.info(m);
            if (info && info.bdev === v.dev && (info.state & 6) === 0 && info.error === 0) cmp.closedFile(`COW file of minor ${m} after remount-ro`, `${v.mnt}${info.cow}`, em, `${v.mnt}${info.cow}`, v.fsBytes);
          }
        }
      });
      tm.cmp += Date.now() - t3;
    });
    // finally every snapshot device
    for (let m = 0; m < cfg.maxDevices; m++) {
      const c: Cmd = { k: 'readSnap', minor: m };
      log.push(showCmd(cfg, c));
      const rk = kw.run(c);
      const re = runOnEmulator(em, cfg, c);
      check(cmds.length, () => cmp.outcome(c, rk, re));
    }
  };

  const budget = deadline - Date.now();
  const fcParams: fc.Parameters<[Cmd[], number]> = { numRuns: count, interruptAfterTimeLimit: budget, includeErrorInReport: true };
  if (p.seed !== undefined) fcParams.seed = p.seed + index;
  if (p.path !== undefined) fcParams.path = p.path;
  try {
    if (p.replay) runSequence(p.replay[0], p.replay[1]);
    else fc.assert(fc.property(sequenceArb(cfg, { exclude, minLength: p.min, maxLength: p.max }), fc.nat(), runSequence), fcParams);
  } finally {
    // leave no active device behind: it would keep the filesystems busy for the runner's cleanup
    kw.closeAll();
    for (let m = 0; m < cfg.maxDevices; m++) {
      try {
        kw.ctl.destroy(m);
      } catch {
        // not set up
      }
    }
    stats.ms = Date.now() - t0;
    writeStats();
    t.log(`batch ${index}: ${stats.sequences} sequences, ${stats.commands} commands on ${t.kernel.kver} in ${stats.ms} ms`);
  }
  if (stats.sequences < count) {
    throw new Error(`only ${stats.sequences} of ${count} sequences ran within ${budget} ms (raise DBD_VM_CASE_TIMEOUT or lower DBD_DIFF_RUNS)`);
  }
}

export async function sequences00(t: VmContext): Promise<void> {
  await batch(t, 0);
}
export async function sequences01(t: VmContext): Promise<void> {
  await batch(t, 1);
}
export async function sequences02(t: VmContext): Promise<void> {
  await batch(t, 2);
}
export async function sequences03(t: VmContext): Promise<void> {
  await batch(t, 3);
}
export async function sequences04(t: VmContext): Promise<void> {
  await batch(t, 4);
}
export async function sequences05(t: VmContext): Promise<void> {
  await batch(t, 5);
}
export async function sequences06(t: VmContext): Promise<void> {
  await batch(t, 6);
}
export async function sequences07(t: VmContext): Promise<void> {
  await batch(t, 7);
}
export async function sequences08(t: VmContext): Promise<void> {
  await batch(t, 8);
}
export async function sequences09(t: VmContext): Promise<void> {
  await batch(t, 9);
}
export async function sequences10(t: VmContext): Promise<void> {
  await batch(t, 10);
}
export async function sequences11(t: VmContext): Promise<void> {
  await batch(t, 11);
}
export async function sequences12(t: VmContext): Promise<void> {
  await batch(t, 12);
}
export async function sequences13(t: VmContext): Promise<void> {
  await batch(t, 13);
}
export async function sequences14(t: VmContext): Promise<void> {
  await batch(t, 14);
}
export async function sequences15(t: VmContext): Promise<void> {
  await batch(t, 15);
}
export async function sequences16(t: VmContext): Promise<void> {
  await batch(t, 16);
}
export async function sequences17(t: VmContext): Promise<void> {
  await batch(t, 17);
}
export async function sequences18(t: VmContext): Promise<void> {
  await batch(t, 18);
}
export async function sequences19(t: VmContext): Promise<void> {
  await batch(t, 19);
}
export async function sequences20(t: VmContext): Promise<void> {
  await batch(t, 20);
}
export async function sequences21(t: VmContext): Promise<void> {
  await batch(t, 21);
}
export async function sequences22(t: VmContext): Promise<void> {
  await batch(t, 22);
}
export async function sequences23(t: VmContext): Promise<void> {
  await batch(t, 23);
}
export async function sequences24(t: VmContext): Promise<void> {
  await batch(t, 24);
}
