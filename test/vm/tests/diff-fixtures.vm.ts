// SPDX-License-Identifier: GPL-2.0-only
// .datto files across implementations, one case per file kind:
//  - fixture*: dattobd.ko writes a COW file on a 64 MiB loop volume (ext4 on
//    the first 48 MiB, the test writes the tail); the TS codec validates it
//    and the emulator reloads it (or, for a file in use, rejects it as the
//    module would). Each file is stored gzip'ed with its manifest entry in
//    <run dir>/fixtures/ (test/differential/make-fixtures.ts copies them
//    to fixtures/).
//  - emulator*ReloadedByModule: the emulator writes a clean snapshot /
//    incremental file; the module's reload accepts it at the next rw mount
//    with the same seqid and uuid, and /dev/datto0 shows the saved data.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { VmContext } from '../guest/api.js';
import { Emulator } from '../../../emulator/index.js';
import { decodeHeader, geometry, readIndexEntry, validateCowFile } from '../../../src/format/index.js';
import { BLOCK, MiB, regionOffset, sha, writeData, type VolumeConfig } from '../../differential/model.js';
import { checkFixture, SEED_A, SEED_B, SEED_C, type FixtureEntry } from '../../differential/fixture-manifest.js';
import { loopVolume, readAt, readWhole, writeDevice } from '../../differential/vm-world.js';

interface Fx {
  v: VolumeConfig;
  log: string[];
}

function start(t: VmContext, name: string): Fx {
  t.modprobe('loop');
  const v = loopVolume(t, name, 64, 48);
  t.run(['mount', v.dev, v.mnt]);
  t.loadModule();
  const log = [
    'truncate -s 64M img; losetup --find --show img',
    'mkfs.ext4 -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard <dev> 48M; mount <dev> <mnt>',
    'insmod dattobd.ko',
  ];
  // origin contents A in the test region before any snapshot
  writeDevice(v.dev, regionOffset(v, 0), writeData(SEED_A, 0, 32));
  log.push(`write region blocks 0..31 (pattern ${SEED_A})`);
  return { v, log };
}

function write(fx: Fx, block: number, count: number, seed: number): void {
  writeDevice(fx.v.dev, regionOffset(fx.v, block), writeData(seed, block, count));
  fx.log.push(`write region blocks ${block}..${block + count - 1} (pattern ${seed})`);
}

function ioctl(fx: Fx, what: string, f: () => void): void {
  f();
  fx.log.push(what);
}

/** remount-ro: the module must close the COW file clean (active -> dormant). */
function remountRo(t: VmContext, fx: Fx): void {
  t.run(['mount', '-o', 'remount,ro', fx.v.mnt]);
  fx.log.push(`mount -o remount,ro ${fx.v.mnt}`);
  assert.equal(t.ioctl.info(0).state & 2, 0, 'remount-ro must make the device dormant');
}

function save(t: VmContext, fx: Fx, name: string, mode: 'snapshot' | 'incremental', clean: boolean, path: string, blocks: Record<number, number>): void {
  const bytes = readWhole(path);
  const entry: FixtureEntry = {
    name,
    file: `${name}.datto.gz`,
    mode,
    clean,
    kernel: t.kernel.kver,
    sizeSectors: fx.v.sizeBytes / 512,
    fsBytes: fx.v.fsBytes,
    commands: [...fx.log, `copy ${path}`],
    changedRegionBlocks: blocks,
    sha256: sha(bytes),
    length: bytes.length,
  };
  const h = decodeHeader(bytes);
  t.log(`${name}: ${bytes.length} bytes, flags ${h.flags}, fpos ${h.fpos}, fsize ${h.fsize}, seqid ${h.seqid}, nr_changed ${h.nrChangedBlocks}`);
  // the same checks the fast suite runs on fixtures/: codec + emulator reload
  checkFixture(entry, bytes);
  const out = join(t.config.runDir, 'fixtures');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, entry.file), gzipSync(bytes, { level: 9 }));
  writeFileSync(join(out, `${name}.json`), JSON.stringify(entry, null, 2) + '\n');
  // an active device keeps the filesystem busy: destroy it before the runner unmounts
  t.ioctl.destroy(0);
}

function rangeOf(from: number, to: number, seed: number): Record<number, number> {
  const r: Record<number, number> = {};
  for (let b = from; b < to; b++) r[b] = seed;
  return r;
}

/** A snapshot file as it is on disk while in use: dirty header, index not yet written. */
export async function fixtureSnapshotInUse(t: VmContext): Promise<void> {
  const fx = start(t, 'fxuse');
  ioctl(fx, `setup-snapshot 0 <dev> ${fx.v.mnt}/in-use.datto -f 1`, () => t.ioctl.setup(0, fx.v.dev, `${fx.v.mnt}/in-use.datto`, 1));
  write(fx, 0, 4, SEED_B);
  assert.equal(sha(readAt('/dev/datto0', regionOffset(fx.v, 0), 32 * BLOCK)), sha(writeData(SEED_A, 0, 32)), '/dev/datto0 must show the pre-snapshot region');
  save(t, fx, 'snapshot-in-use', 'snapshot', false, `${fx.v.mnt}/in-use.datto`, {});
}

/** Fresh snapshot closed clean by remount-ro. */
export async function fixtureSnapshotFresh(t: VmContext): Promise<void> {
  const fx = start(t, 'fxfresh');
  ioctl(fx, `setup-snapshot 0 <dev> ${fx.v.mnt}/fresh.datto -f 1`, () => t.ioctl.setup(0, fx.v.dev, `${fx.v.mnt}/fresh.datto`, 1));
  remountRo(t, fx);
  save(t, fx, 'snapshot-fresh', 'snapshot', true, `${fx.v.mnt}/fresh.datto`, {});
}

/** Snapshot with COW data of region blocks 0..15 and 20..23, closed clean by remount-ro. */
export async function fixtureSnapshotCowData(t: VmContext): Promise<void> {
  const fx = start(t, 'fxdata');
  ioctl(fx, `setup-snapshot 0 <dev> ${fx.v.mnt}/cow-data.datto -f 1`, () => t.ioctl.setup(0, fx.v.dev, `${fx.v.mnt}/cow-data.datto`, 1));
  write(fx, 0, 16, SEED_B);
  write(fx, 20, 4, SEED_B);
  assert.equal(sha(readAt('/dev/datto0', regionOffset(fx.v, 0), 32 * BLOCK)), sha(writeData(SEED_A, 0, 32)), '/dev/datto0 must show the pre-snapshot region');
  remountRo(t, fx);
  save(t, fx, 'snapshot-cow-data', 'snapshot', true, `${fx.v.mnt}/cow-data.datto`, { ...rangeOf(0, 16, SEED_A), ...rangeOf(20, 24, SEED_A) });
}

/** Incremental file closed clean (CLEAN|INDEX_ONLY) by transition-to-snapshot. */
export async function fixtureIncrementalClean(t: VmContext): Promise<void> {
  const fx = start(t, 'fxinc');
  ioctl(fx, `setup-snapshot 0 <dev> ${fx.v.mnt}/inc.datto -f 1`, () => t.ioctl.setup(0, fx.v.dev, `${fx.v.mnt}/inc.datto`, 1));
  write(fx, 0, 8, SEED_B);
  ioctl(fx, 'transition-to-incremental 0', () => t.ioctl.transitionInc(0));
  assert.equal(t.ioctl.info(0).state, 2);
  write(fx, 24, 6, SEED_C);
  ioctl(fx, `transition-to-snapshot 0 ${fx.v.mnt}/inc-next.datto -f 1`, () => t.ioctl.transitionSnap(0, `${fx.v.mnt}/inc-next.datto`, 1));
  assert.equal(t.ioctl.info(0).state, 3);
  assert.equal(t.ioctl.info(0).seqid, 2);
  save(t, fx, 'incremental-clean', 'incremental', true, `${fx.v.mnt}/inc.datto`, { ...rangeOf(0, 8, -1), ...rangeOf(24, 30, -1) });
}

/** Snapshot whose file was expanded by 2 MiB, with COW data, closed clean by remount-ro. */
export async function fixtureSnapshotExpanded(t: VmContext): Promise<void> {
  const fx = start(t, 'fxexp');
  ioctl(fx, `setup-snapshot 0 <dev> ${fx.v.mnt}/expanded.datto -f 1`, () => t.ioctl.setup(0, fx.v.dev, `${fx.v.mnt}/expanded.datto`, 1));
  ioctl(fx, 'expand-cow-file 0 2', () => t.ioctl.expand(0, 2));
  assert.equal(t.ioctl.info(0).falloc_size, 3 * MiB);
  write(fx, 8, 4, SEED_B);
  remountRo(t, fx);
  save(t, fx, 'snapshot-expanded', 'snapshot', true, `${fx.v.mnt}/expanded.datto`, rangeOf(8, 12, SEED_A));
}

/** The emulator's clean file of `mode` for volume `v` (region A, snapshot, region B at 2..6). */
function emulatorFile(v: VolumeConfig, mode: 'snapshot' | 'incremental'): { file: Buffer; seqid: number; uuid: string } {
  const e = new Emulator({ maxSnapDevices: 4 });
  e.addVolume({ path: v.dev, sizeBytes: v.sizeBytes, fsFreeBytes: v.fsFreeBytes });
  e.mount(v.dev, v.mnt);
  e.write(v.dev, regionOffset(v, 0), writeData(SEED_A, 0, 16));
  e.ctl.setupSnapshot({ minor: 0, bdev: v.dev, cow: `${v.mnt}/emu.datto`, fallocatedSpace: 2, cacheSize: 0 });
  e.write(v.dev, regionOffset(v, 2), writeData(SEED_B, 2, 5));
  if (mode === 'incremental') e.ctl.transitionToIncremental(0);
  e.umount(v.mnt);
  const info = e.ctl.info(0);
  const file = Buffer.from(e.world.volumes.get(v.dev)!.fs.readAll('/emu.datto'));
  assert.ok(validateCowFile(file, { sizeSectors: v.sizeBytes / 512, expect: mode, requireClean: true }).ok);
  return { file, seqid: info.seqid, uuid: info.uuid };
}

async function emulatorFileReloaded(t: VmContext, mode: 'snapshot' | 'incremental'): Promise<void> {
  t.modprobe('loop');
  const v = loopVolume(t, mode === 'snapshot' ? 'emusnap' : 'emuinc', 64, 48);
  const g = geometry(v.sizeBytes / 512);
  const emu = emulatorFile(v, mode);
  // the module: same origin contents, the emulator's file copied onto the real filesystem
  writeDevice(v.dev, regionOffset(v, 0), writeData(SEED_A, 0, 16));
  writeDevice(v.dev, regionOffset(v, 2), writeData(SEED_B, 2, 5));
  t.run(['mount', v.dev, v.mnt]);
  writeFileSync(`${v.mnt}/emu.datto`, emu.file);
  t.run(['umount', v.mnt]);
  t.loadModule();
  if (mode === 'snapshot') t.ioctl.reloadSnap(0, v.dev, '/emu.datto');
  else t.ioctl.reloadInc(0, v.dev, '/emu.datto');
  assert.equal(t.ioctl.info(0).state, mode === 'snapshot' ? 5 : 4);
  t.run(['mount', v.dev, v.mnt]);
  const info = t.ioctl.info(0);
  t.log(`module info after reload + rw mount: ${JSON.stringify(info)}`);
  assert.equal(info.error, 0, `the module rejected the emulator's ${mode} file (error ${info.error})`);
  assert.equal(info.state, mode === 'snapshot' ? 3 : 2, 'reload + rw mount must activate the device');
  assert.equal(info.seqid, emu.seqid);
  assert.equal(info.uuid, emu.uuid);
  assert.equal(info.cow, '/emu.datto');
  if (mode === 'snapshot') {
    assert.equal(info.falloc_size, 2 * MiB);
    // /dev/datto0 shows the emulator-saved originals (pattern A) of blocks 2..6
    assert.equal(sha(readAt('/dev/datto0', regionOffset(v, 0), 16 * BLOCK)), sha(writeData(SEED_A, 0, 16)), 'snapshot device after reload');
    writeDevice(v.dev, regionOffset(v, 10), writeData(SEED_C, 10, 1));
    assert.equal(sha(readAt('/dev/datto0', regionOffset(v, 0), 16 * BLOCK)), sha(writeData(SEED_A, 0, 16)), 'snapshot device after a further write');
  } else {
    assert.equal(info.falloc_size, g.dataOffset);
  }
  // close clean again: the emulator's entries are still there
  t.run(['mount', '-o', 'remount,ro', v.mnt]);
  const back = readWhole(`${v.mnt}/emu.datto`);
  for (let b = 2; b < 7; b++) assert.notEqual(readIndexEntry(back, v.fsBytes / BLOCK + b), 0, `region block ${b} lost its entry`);
  t.ioctl.destroy(0);
}

export async function emulatorSnapshotFileReloadedByModule(t: VmContext): Promise<void> {
  await emulatorFileReloaded(t, 'snapshot');
}

export async function emulatorIncrementalFileReloadedByModule(t: VmContext): Promise<void> {
  await emulatorFileReloaded(t, 'incremental');
}
