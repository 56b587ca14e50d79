// SPDX-License-Identifier: GPL-2.0-only
/**
 * fixtures/manifest.json: how each module-made `.datto` fixture was
 * produced, and the checks run on it (in the VM right after it was made, and
 * in the fast suite on the stored copy): the TS codec validates it and the
 * emulator reloads it.
 */
import assert from 'node:assert/strict';
import { Emulator } from '../../emulator/index.js';
import { decodeHeader, geometry, readIndexEntry, uuidHex, validateCowFile } from '../../src/format/index.js';
import { BLOCK, MiB, writeData } from './model.js';

/** Pattern seeds of the fixture scripts. */
export const SEED_A = 0xa; // region contents before any snapshot
export const SEED_B = 0xb; // writes after the snapshot
export const SEED_C = 0xc; // writes in incremental mode

export interface FixtureEntry {
  name: string;
  /** gzip'ed file in fixtures/ */
  file: string;
  mode: 'snapshot' | 'incremental';
  /** closed clean by the module (CLEAN flag expected) */
  clean: boolean;
  /** uname -r of the guest kernel that ran dattobd.ko */
  kernel: string;
  /** size of the traced loop device in sectors */
  sizeSectors: number;
  /** bytes of the ext4 filesystem at the start of the device; the test region follows */
  fsBytes: number;
  /** what was done, in order */
  commands: string[];
  /**
   * Region blocks (0 = first block after the filesystem) the test changed:
   * value >= 0 is the pattern seed of the original contents saved in the
   * file (writeData(seed, block, 1)); -1 = changed, no data (index-only).
   */
  changedRegionBlocks: Record<number, number>;
  /** sha256 prefix (16 hex digits) of the uncompressed file */
  sha256: string;
  length: number;
}

/** Codec and emulator checks of one module-made file. Throws an AssertionError. */
export function checkFixture(entry: FixtureEntry, bytes: Uint8Array): void {
  const g = geometry(entry.sizeSectors);
  const r = validateCowFile(bytes, { sizeSectors: entry.sizeSectors, expect: entry.mode, requireClean: entry.clean, checkIndex: entry.clean });
  assert.ok(r.ok, `${entry.name}: codec: ${r.errors.map((e) => `${e.code}: ${e.message}`).join('; ')}`);
  const h = decodeHeader(bytes);
  assert.equal(h.magic, 4776);
  assert.equal(h.version, 1, `${entry.name}: version`);
  assert.equal(h.seqid, 1, `${entry.name}: seqid`);
  assert.equal((h.flags & 1) !== 0, entry.clean, `${entry.name}: CLEAN flag`);
  assert.equal((h.flags & 2) !== 0, entry.mode === 'incremental' && entry.clean, `${entry.name}: INDEX_ONLY flag`);
  if (entry.mode === 'incremental') assert.equal(h.fsize, g.dataOffset, `${entry.name}: index-only file size`);
  assert.ok(h.fpos >= g.firstDataBlk, `${entry.name}: fpos inside the index`);
  const first = entry.fsBytes / BLOCK;
  for (const [b, seed] of Object.entries(entry.changedRegionBlocks)) {
    const e = readIndexEntry(bytes, first + Number(b));
    assert.notEqual(e, 0, `${entry.name}: region block ${b} is not marked changed`);
    if (seed >= 0) {
      assert.ok(e >= g.firstDataBlk && e < h.fpos, `${entry.name}: region block ${b} points outside the data area (${e})`);
      const want = writeData(seed, Number(b), 1);
      assert.ok(Buffer.from(bytes.subarray(e * BLOCK, e * BLOCK + BLOCK)).equals(Buffer.from(want)), `${entry.name}: saved data of region block ${b}`);
    }
  }
  reloadInEmulator(entry, bytes);
}

/**
 * Reload the file in the emulator (reload-snapshot / reload-incremental,
 * then a rw mount): a clean file becomes active with the header's identity;
 * a file that was in use is rejected with EINVAL and stays unverified.
 */
export function reloadInEmulator(entry: FixtureEntry, bytes: Uint8Array): Emulator {
  const e = new Emulator({ maxSnapDevices: 4 });
  const dev = '/dev/fx';
  e.addVolume({ path: dev, sizeBytes: entry.sizeSectors * 512, fsFreeBytes: 64 * MiB });
  e.mount(dev, '/m');
  const f = e.world.volumes.get(dev)!.fs.createTrunc('/c.datto');
  f.write(bytes, 0);
  f.close();
  e.umount('/m');
  if (entry.mode === 'snapshot') e.ctl.reloadSnapshot({ minor: 1, bdev: dev, cow: '/c.datto', cacheSize: 0 });
  else e.ctl.reloadIncremental({ minor: 1, bdev: dev, cow: '/c.datto', cacheSize: 0 });
  e.mount(dev, '/m');
  const info = e.ctl.info(1);
  if (!entry.clean) {
    assert.equal(info.error, -22, `${entry.name}: the emulator must reject a file that was in use`);
    assert.equal(info.state, entry.mode === 'snapshot' ? 5 : 4);
    return e;
  }
  const h = decodeHeader(bytes);
  assert.equal(info.error, 0, `${entry.name}: emulator reload failed with ${info.error}`);
  assert.equal(info.state, entry.mode === 'snapshot' ? 3 : 2, `${entry.name}: emulator state after reload`);
  assert.equal(info.seqid, h.seqid);
  assert.equal(info.uuid, uuidHex(h.uuid));
  assert.equal(info.fallocSize, h.fsize);
  assert.equal(info.nrChangedBlocks, h.nrChangedBlocks);
  return e;
}
