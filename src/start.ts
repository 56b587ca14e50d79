// SPDX-License-Identifier: GPL-2.0-only
/**
 * `npm start`: the README backup cycle on the emulator, under a generated
 * write workload, verified bit for bit.
 *
 *   setup-snapshot → full copy of /dev/datto0 → transition-to-incremental →
 *   writes (an unmount/mount, or a reboot + reload-incremental, while
 *   incremental) → transition-to-snapshot
 *   with a new COW file → update-img of the changed blocks → verify → repeat.
 *
 * Environment: DBD_START_CYCLES (default 4), DBD_START_SEED (default 1),
 * DBD_START_MIB (volume size, default 64).
 * Exit status: 0 when every image matches its snapshot, 1 otherwise.
 */
import { Emulator } from '../emulator/index.js';
import { MIB } from './abi/constants.js';
import { updateImg } from './cli/update-img-core.js';
import { isDriverError } from './driver/errors.js';
import { Rng, runWorkload } from './start/workload.js';
import { compareFiles, compareWith, fullCopy, type Mismatch } from './start/verify.js';

function envInt(name: string, dflt: number, min: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`error: ${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const CYCLES = envInt('DBD_START_CYCLES', 4, 1);
const SEED = envInt('DBD_START_SEED', 1, 0);
const VOL_MIB = envInt('DBD_START_MIB', 64, 8);

const BDEV = '/dev/sda1';
const MNT = '/mnt';
const SNAP = '/dev/datto0';
const IMAGE = '/backup/sda1.img';
const MINOR = 0;

const STATE_NAMES: Record<number, string> = {
  0: 'dormant incremental',
  1: 'dormant snapshot',
  2: 'active incremental',
  3: 'active snapshot',
  4: 'unverified incremental',
  5: 'unverified snapshot',
};

function kib(n: number): string {
  return n >= MIB ? `${(n / MIB).toFixed(1)} MiB` : `${Math.round(n / 1024)} KiB`;
}

function main(): number {
  const emu = new Emulator({ maxSnapDevices: 8 });
  const ctl = emu.ctl;
  const io = emu.io;
  const rng = new Rng(SEED);
  const size = VOL_MIB * MIB;
  let failures = 0;

  const state = (): string => {
    const i = ctl.info(MINOR);
    const err = i.error !== 0 ? `, ERROR ${i.error}` : '';
    return `state ${i.state} (${STATE_NAMES[i.state] ?? '?'}${err}), cow ${i.cow} ${kib(i.fallocSize)}, seqid ${i.seqid}, changed ${i.nrChangedBlocks}`;
  };
  const step = (what: string, detail = state()): void => {
    console.log(`  ${what.padEnd(38)} ${detail}`);
  };
  const verdict = (what: string, m: Mismatch): void => {
    if (m.firstByte < 0) {
      step(`verify ${what}`, 'OK: bit-for-bit identical');
    } else {
      failures++;
      step(`verify ${what}`, `MISMATCH: ${m.blocks} blocks differ, first at byte ${m.firstByte}`);
    }
  };

  console.log(`dattobd-ts emulator: backup cycle on a ${VOL_MIB} MiB volume, ${CYCLES} incremental cycles, seed ${SEED}`);
  emu.addVolume({ path: BDEV, sizeBytes: size, partitionOffsetSectors: 2048, fsFreeBytes: size / 2 });
  emu.mount(BDEV, MNT);
  const initial = runWorkload(emu, BDEV, size, rng, 2000, 128);
  console.log(`volume ${BDEV} mounted on ${MNT}; initial data: ${initial.writes} writes (${kib(initial.bytes)} written)`);

  // --- full backup ---
  console.log('full backup');
  ctl.setupSnapshot({ minor: MINOR, bdev: BDEV, cow: `${MNT}/.datto-1`, fallocatedSpace: 0, cacheSize: 0 });
  const instant = emu.read(BDEV, 0, size);
  step('setup-snapshot .datto-1');
  emu.createFile(IMAGE, size);
  let during = 0;
  fullCopy(io, SNAP, IMAGE, size, () => {
    during += runWorkload(emu, BDEV, size, rng, 4).writes;
  });
  step(`dd ${SNAP} → ${IMAGE}`, `${kib(size)} copied while ${during} writes hit the volume; ${state()}`);
  verdict('image = snapshot', compareFiles(io, IMAGE, SNAP, size));
  verdict('image = volume at snapshot', compareWith(io, IMAGE, instant));

  // --- incremental cycles ---
  let cow = 1;
  for (let c = 1; c <= CYCLES; c++) {
    console.log(`incremental cycle ${c}`);
    ctl.transitionToIncremental(MINOR);
    step('transition-to-incremental');
    const w = runWorkload(emu, BDEV, size, rng, 300 + rng.int(700));
    step('workload', `${w.writes} writes, ${w.discards} discards, ${w.zeroes} write-zeroes (${kib(w.bytes)}); ${state()}`);
    if (c % 3 === 0) {
      // clean reboot: the file is closed CLEAN, the initramfs reloads it before the rw mount
      emu.reboot();
      console.log('  reboot (clean: umount → dormant → module reloaded)');
      ctl.reloadIncremental({ minor: MINOR, bdev: BDEV, cow: `/.datto-${cow}`, cacheSize: 0 });
      step(`reload-incremental /.datto-${cow}`);
      emu.mount(BDEV, MNT);
      step(`mount ${MNT}`);
    } else if (c % 2 === 0) {
      emu.umount(MNT);
      step(`umount ${MNT}`);
      runWorkload(emu, BDEV, size, rng, 50);
      emu.mount(BDEV, MNT);
      step(`mount ${MNT} (50 writes while dormant)`);
    }
    const oldCow = `${MNT}/.datto-${cow}`;
    cow++;
    // pass -f explicitly (SPEC P9): 10 % of the volume, like setup's default
    ctl.transitionToSnapshot({ minor: MINOR, cow: `${MNT}/.datto-${cow}`, fallocatedSpace: Math.ceil(VOL_MIB / 10) });
    const snapInstant = emu.read(BDEV, 0, size);
    step(`transition-to-snapshot .datto-${cow}`);
    const r = updateImg(emu.backend(), { snapshot: SNAP, cow: oldCow, image: IMAGE });
    step(`update-img ${SNAP} .datto-${cow - 1}`, `${r.changedBlocks} changed blocks, ${r.copiedBlocks} copied in ${r.ios} I/Os, ${r.errorBlocks} errors`);
    if (r.errorBlocks > 0) failures++;
    runWorkload(emu, BDEV, size, rng, 100);
    verdict('image = snapshot', compareFiles(io, IMAGE, SNAP, size));
    verdict('image = volume at snapshot', compareWith(io, IMAGE, snapInstant));
    emu.unlink(oldCow);
    step(`rm .datto-${cow - 1}`, `filesystem free space ${kib(emu.fsFreeBytes(BDEV))}`);
  }

  ctl.destroy(MINOR);
  const c = emu.counters;
  console.log(
    `done: ${failures === 0 ? 'all images verified' : `${failures} FAILURES`}; ` +
      `COW copies ${c.cowWrites}, origin reads ${c.originReads}, reads avoided for already-saved blocks ${c.skippedReads}`,
  );
  return failures === 0 ? 0 : 1;
}

try {
  process.exitCode = main();
} catch (e) {
  if (isDriverError(e)) {
    console.error(`error: ${e.message} (${e.code})${e.hint ? `\nhint: ${e.hint}` : ''}`);
  } else {
    console.error(e);
  }
  process.exitCode = 1;
}
