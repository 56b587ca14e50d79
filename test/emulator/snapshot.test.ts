// SPDX-License-Identifier: GPL-2.0-only
import { describe, expect, it } from 'vitest';
import { Emulator } from '../../emulator/index.js';
import { FLAG_CLEAN, FLAG_INDEX_ONLY } from '../../src/abi/constants.js';
import { changedBlocks, decodeHeader, geometry, readIndexEntry, validateCowFile } from '../../src/format/index.js';
import { errnoOf, expectBytes, MiB, pattern, setup, world } from './helpers.js';

const K4 = 4096;

describe('snapshot mode', () => {
  it('snapshot reads the volume as at the snapshot instant; live volume changes', () => {
    const e = world();
    const before = pattern(3 * MiB, 1);
    e.write('/dev/sda1', 0, before);
    setup(e);
    e.write('/dev/sda1', 12345, pattern(70000, 2));
    e.write('/dev/sda1', 1, pattern(10, 3));
    expectBytes(e.readSnapshot(0, 0, 3 * MiB), before);
    expectBytes(e.read('/dev/sda1', 12345, 70000), pattern(70000, 2));
  });

  it('copies each block once and does not read already-copied blocks', () => {
    const e = world();
    setup(e);
    e.write('/dev/sda1', 0, pattern(8 * K4, 1));
    expect(e.counters.originReads).toBe(8);
    expect(e.counters.cowWrites).toBe(8);
    e.write('/dev/sda1', 0, pattern(8 * K4, 2));
    e.write('/dev/sda1', 100, pattern(10, 3));
    expect(e.counters.originReads).toBe(8);
    expect(e.counters.cowWrites).toBe(8);
    expect(e.counters.skippedReads).toBe(9);
    expect(e.ctl.info(0).nrChangedBlocks).toBe(8);
  });

  it('discard and write-zeroes save the old data first', () => {
    const e = world();
    const data = pattern(64 * K4, 5);
    e.write('/dev/sda1', 0, data);
    setup(e);
    e.discard('/dev/sda1', 0, 16 * K4);
    e.writeZeroes('/dev/sda1', 32 * K4, 16 * K4);
    expectBytes(e.read('/dev/sda1', 0, K4), new Uint8Array(K4));
    expectBytes(e.readSnapshot(0, 0, 64 * K4), data);
  });

  it('COW full ⇒ EFBIG failure; origin write still lands; file unlinked; only destroy works', () => {
    const e = world();
    // 8 MiB volume: data offset 36864, a 1 MiB file holds 247 blocks
    setup(e, '/mnt/cow1', 1);
    const cap = Math.ceil((MiB - geometry(16384).dataOffset) / K4);
    const data = pattern((cap + 5) * K4, 9);
    e.write('/dev/sda1', 0, data);
    expectBytes(e.read('/dev/sda1', 0, data.length), data);
    const info = e.ctl.info(0);
    expect(info.error).toBe(-27);
    expect(e.io.exists('/mnt/cow1')).toBe(false);
    expect(errnoOf(() => e.readSnapshot(0, 0, K4))).toBe('EIO');
    expect(e.ctl.procInfo()).toContain('"error": -27');
    expect(errnoOf(() => e.ctl.transitionToIncremental(0))).toBe('EINVAL');
    expect(errnoOf(() => e.ctl.reconfigure({ minor: 0, cacheSize: 0 }))).toBe('EINVAL');
    expect(errnoOf(() => e.ctl.expandCowFile({ minor: 0, size: 1 }))).toBe('EINVAL');
    // tracing stopped: further writes pass through untouched
    const w = e.counters.tracedWrites;
    e.write('/dev/sda1', 0, pattern(K4, 1));
    expect(e.counters.tracedWrites).toBe(w);
    e.ctl.destroy(0);
    expect(errnoOf(() => e.ctl.info(0))).toBe('ENOENT');
  });

  it('expand and auto-expand grow the file; statfs reservation is honoured', () => {
    const e = world({ free: 4 * MiB });
    setup(e, '/mnt/cow1', 1);
    e.ctl.expandCowFile({ minor: 0, size: 1 });
    expect(e.ctl.info(0).fallocSize).toBe(2 * MiB);
    expect(e.fsFreeBytes('/dev/sda1')).toBe(2 * MiB);
    e.ctl.reconfigureAutoExpand({ minor: 0, stepSize: 1, reservedSpace: 0 });
    expect(e.ctl.procInfo()).toContain('"step_size_mib": 1');
    const data = pattern(3 * MiB, 4);
    e.write('/dev/sda1', 0, data);
    expect(e.ctl.info(0).error).toBe(0);
    expect(e.ctl.info(0).fallocSize).toBe(4 * MiB);
    expectBytes(e.readSnapshot(0, 0, 3 * MiB), new Uint8Array(3 * MiB));
    // 0 bytes free now: the next growth is refused ⇒ EFBIG
    e.ctl.reconfigureAutoExpand({ minor: 0, stepSize: 1, reservedSpace: 1 });
    e.write('/dev/sda1', 3 * MiB, pattern(2 * MiB, 5));
    expect(e.ctl.info(0).error).toBe(-27);
  });

  it('expand failure puts the device in the fail state', () => {
    const e = world({ free: 2 * MiB });
    setup(e, '/mnt/cow1', 1);
    expect(errnoOf(() => e.ctl.expandCowFile({ minor: 0, size: 5 }))).toBe('ENOSPC');
    expect(e.ctl.info(0).error).toBe(-28);
  });

  it('fault injection: COW write and origin read errors fail the device, never the volume', () => {
    for (const kind of ['cow', 'origin'] as const) {
      const e = world();
      setup(e);
      if (kind === 'cow') e.faults.failNextCowWrite(5);
      else e.faults.failNextOriginRead(5);
      const d = pattern(K4, 7);
      e.write('/dev/sda1', 0, d);
      expectBytes(e.read('/dev/sda1', 0, K4), d);
      expect(e.ctl.info(0).error).toBe(-5);
      expect(e.io.exists('/mnt/cow1')).toBe(false);
    }
  });

  it('is correct for a partition that does not start on a 4 KiB boundary and has a partial last block', () => {
    const size = 4096 * K4 + 7 * 512; // P14 geometry: last partial block is in an extra section
    const e = world({ sizeBytes: size, offset: 63 });
    const before = pattern(size, 11);
    e.write('/dev/sda1', 0, before);
    setup(e, '/mnt/cow1', 4);
    e.write('/dev/sda1', size - 1000, pattern(1000, 12));
    e.write('/dev/sda1', 511, pattern(5000, 13));
    expectBytes(e.readSnapshot(0, 0, size), before);
  });

  it('a tiny index cache evicts sections to the file and stays correct', () => {
    const e = world({ sizeBytes: 64 * MiB });
    e.ctl.setupSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/mnt/c', fallocatedSpace: 8, cacheSize: 4 * 24 + 2 * 32768 });
    for (let i = 0; i < 4; i++) e.write('/dev/sda1', i * 16 * MiB + i * K4, pattern(K4, i));
    expect(e.counters.indexWrites).toBeGreaterThan(0);
    for (let i = 0; i < 4; i++) expectBytes(e.readSnapshot(0, i * 16 * MiB + i * K4, K4), new Uint8Array(K4));
  });

  it('the snapshot device is busy while open; writes to it are refused', () => {
    const e = world();
    setup(e);
    const f = e.io.openRead('/dev/datto0');
    expect(f.size()).toBe(8 * MiB);
    expect(errnoOf(() => e.ctl.transitionToIncremental(0))).toBe('EBUSY');
    expect(errnoOf(() => e.ctl.destroy(0))).toBe('EBUSY');
    expect(errnoOf(() => e.ctl.reconfigure({ minor: 0, cacheSize: 1 }))).toBe('EBUSY');
    expect(errnoOf(() => e.ctl.info(0))).toBe('OK');
    expect(errnoOf(() => e.ctl.expandCowFile({ minor: 0, size: 1 }))).toBe('OK');
    expect(errnoOf(() => f.write(new Uint8Array(512), 0))).toBe('EOPNOTSUPP');
    expect(errnoOf(() => e.io.openReadWrite('/dev/datto0'))).toBe('EROFS');
    f.close();
    e.ctl.transitionToIncremental(0);
  });
});

describe('incremental mode and transitions', () => {
  it('marks changed blocks, truncates, and closes the old file CLEAN|INDEX_ONLY', () => {
    const e = world();
    setup(e);
    e.write('/dev/sda1', 0, pattern(K4, 1)); // snapshot era: data block entry
    e.ctl.transitionToIncremental(0);
    const g = geometry(8 * MiB / 512);
    expect(e.ctl.info(0).fallocSize).toBe(g.dataOffset);
    expect(e.ctl.info(0).state).toBe(2);
    e.write('/dev/sda1', 5 * K4 + 100, pattern(K4, 2)); // blocks 5, 6
    e.discard('/dev/sda1', 20 * K4, 2 * K4); // blocks 20, 21
    e.writeZeroes('/dev/sda1', 30 * K4, 1); // block 30
    expect(e.ctl.info(0).nrChangedBlocks).toBe(6);
    e.ctl.transitionToSnapshot({ minor: 0, cow: '/mnt/cow2', fallocatedSpace: 0 });
    const old = e.readFile('/mnt/cow1');
    const h = decodeHeader(old);
    expect(h.flags).toBe(FLAG_CLEAN | FLAG_INDEX_ONLY);
    expect(h.fsize).toBe(g.dataOffset);
    expect(old.length).toBe(g.dataOffset);
    expect(validateCowFile(old, { sizeSectors: 8 * MiB / 512, expect: 'incremental', requireClean: true, checkIndex: true }).errors).toEqual([]);
    expect(changedBlocks(old, 2048)).toEqual([0, 5, 6, 20, 21, 30]);
    expect(readIndexEntry(old, 0)).toBe(g.firstDataBlk);
    const info = e.ctl.info(0);
    expect(info.seqid).toBe(2);
    expect(info.fallocSize).toBe(2 * MiB); // remembered falloc MiB carried over
    expect(info.cacheSize).toBe(314572800);
    // the old file is no longer protected
    e.unlink('/mnt/cow1');
  });

  it('transition-to-snapshot reports EIO when the previous COW file cannot be closed, and leaves it unclean', () => {
    const e = world();
    setup(e);
    e.ctl.transitionToIncremental(0);
    e.write('/dev/sda1', 5 * K4, pattern(K4, 2));
    e.faults.failNextIndexSync(5);
    // issue 21: this returned 0 (the old file was silently dropped)
    expect(errnoOf(() => e.ctl.transitionToSnapshot({ minor: 0, cow: '/mnt/cow2', fallocatedSpace: 0 }))).toBe('EIO');
    const info = e.ctl.info(0);
    expect([info.state, info.error, info.seqid]).toEqual([3, 0, 2]);
    const h = decodeHeader(e.readFile('/mnt/cow1'));
    expect(h.flags & FLAG_CLEAN).toBe(0);
    expect(validateCowFile(e.readFile('/mnt/cow1'), { sizeSectors: 8 * MiB / 512, expect: 'incremental', requireClean: true }).errors).not.toEqual([]);
    // the old file is closed and unprotected
    e.unlink('/mnt/cow1');
  });

  it('re-using the in-use COW path fails with EPERM and changes nothing', () => {
    const e = world();
    setup(e);
    e.ctl.transitionToIncremental(0);
    expect(errnoOf(() => e.ctl.transitionToSnapshot({ minor: 0, cow: '/mnt/cow1', fallocatedSpace: 1 }))).toBe('EPERM');
    expect(e.ctl.info(0).state).toBe(2);
    expect(errnoOf(() => e.ctl.transitionToSnapshot({ minor: 0, cow: '/mnt/cow2', fallocatedSpace: 100 }))).toBe('ENOSPC');
    expect(e.ctl.info(0).state).toBe(2);
    expect(e.ctl.info(0).error).toBe(0);
  });

  it('state matrix: wrong-state ioctls return EINVAL', () => {
    const e = world();
    setup(e);
    expect(errnoOf(() => e.ctl.transitionToSnapshot({ minor: 0, cow: '/mnt/c2', fallocatedSpace: 1 }))).toBe('EINVAL');
    e.ctl.transitionToIncremental(0);
    expect(errnoOf(() => e.ctl.transitionToIncremental(0))).toBe('EINVAL');
    expect(errnoOf(() => e.ctl.expandCowFile({ minor: 0, size: 1 }))).toBe('EINVAL');
    expect(errnoOf(() => e.ctl.reconfigureAutoExpand({ minor: 0, stepSize: 1, reservedSpace: 0 }))).toBe('EINVAL');
    expect(errnoOf(() => e.ctl.reconfigure({ minor: 0, cacheSize: 1 << 20 }))).toBe('OK');
    expect(e.ctl.info(0).cacheSize).toBe(1 << 20);
    expect(errnoOf(() => e.ctl.destroy(1))).toBe('ENOENT');
    expect(errnoOf(() => e.ctl.destroy(99))).toBe('EINVAL');
  });
});

describe('mount events, reboot, crash', () => {
  it('umount → dormant (CLEAN on disk), writes queued, rw mount → active again', () => {
    const e = world();
    const before = pattern(MiB, 1);
    e.write('/dev/sda1', 0, before);
    setup(e);
    e.write('/dev/sda1', 0, pattern(K4, 2));
    e.umount('/mnt');
    expect(e.ctl.info(0).state).toBe(1);
    expect(errnoOf(() => e.readSnapshot(0, 0, K4))).toBe('EBUSY');
    e.write('/dev/sda1', K4, pattern(2 * K4, 3)); // while dormant
    e.mount('/dev/sda1', '/mnt', { readOnly: true });
    const h = decodeHeader(e.readFile('/mnt/cow1'));
    expect(h.flags & FLAG_CLEAN).toBe(FLAG_CLEAN);
    expect(e.ctl.info(0).state).toBe(1);
    e.remount('/mnt', { readOnly: false });
    expect(e.ctl.info(0).state).toBe(3);
    expect(decodeHeader(e.readFile('/mnt/cow1')).flags & FLAG_CLEAN).toBe(0);
    expectBytes(e.readSnapshot(0, 0, MiB), before);
    e.remount('/mnt', { readOnly: true });
    expect(e.ctl.info(0).state).toBe(1);
  });

  it('destroy works in dormant state with the filesystem unmounted, and keeps the file', () => {
    const e = world();
    setup(e);
    e.umount('/mnt');
    e.ctl.destroy(0);
    e.mount('/dev/sda1', '/mnt');
    expect(e.io.exists('/mnt/cow1')).toBe(true);
    expect(errnoOf(() => e.unlink('/mnt/cow1'))).toBe('OK');
  });

  it('reboot + reload-snapshot + rw mount resumes the same snapshot', () => {
    const e = world();
    const before = pattern(MiB, 1);
    e.write('/dev/sda1', 0, before);
    setup(e);
    e.write('/dev/sda1', 0, pattern(MiB, 2));
    const uuid = e.ctl.info(0).uuid;
    e.reboot();
    expect(errnoOf(() => e.ctl.info(0))).toBe('ENOENT');
    e.ctl.reloadSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/cow1', cacheSize: 0 });
    const u = e.ctl.info(0);
    expect(u).toMatchObject({ state: 5, fallocSize: 0, seqid: 0, cow: '/cow1', bdev: '/dev/sda1', uuid: '0'.repeat(32) });
    expect(e.ctl.procInfo()).not.toContain('fallocate');
    e.mount('/dev/sda1', '/mnt');
    expect(e.ctl.info(0)).toMatchObject({ state: 3, error: 0, uuid, seqid: 1 });
    expectBytes(e.readSnapshot(0, 0, MiB), before);
  });

  it('reload-incremental after reboot, then transition-to-snapshot with size 0 uses the default percentage (P9 fix)', () => {
    const e = world({ sizeBytes: 1024 * MiB, free: 512 * MiB });
    e.ctl.setupSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/mnt/c1', fallocatedSpace: 10, cacheSize: 0 });
    e.ctl.transitionToIncremental(0);
    e.write('/dev/sda1', 0, pattern(K4, 1));
    e.reboot();
    e.ctl.reloadIncremental({ minor: 0, bdev: '/dev/sda1', cow: '/c1', cacheSize: 0 });
    e.mount('/dev/sda1', '/mnt');
    expect(e.ctl.info(0).state).toBe(2);
    e.write('/dev/sda1', 8 * K4, pattern(K4, 2));
    e.ctl.transitionToSnapshot({ minor: 0, cow: '/mnt/c2', fallocatedSpace: 0 });
    expect(e.ctl.info(0).fallocSize).toBe(Math.floor((1024 * MiB) / 10));
    e.write('/dev/sda1', 0, pattern(K4, 3));
    expect(e.ctl.info(0).error).toBe(0);
    expect(changedBlocks(e.readFile('/mnt/c1'), 16)).toEqual([0, 8]);
  });

  it('crash leaves a dirty file; reload then fails on mount with EINVAL and stays unverified', () => {
    const e = world();
    setup(e);
    e.write('/dev/sda1', 0, pattern(K4, 1));
    e.crash();
    e.ctl.reloadSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/cow1', cacheSize: 0 });
    e.mount('/dev/sda1', '/mnt');
    expect(e.ctl.info(0)).toMatchObject({ state: 5, error: -22 });
    expect(validateCowFile(e.readFile('/mnt/cow1'), { requireClean: true }).errors.map((x) => x.code)).toEqual(['NOT_CLEAN']);
    e.ctl.destroy(0);
  });

  it('a COW file replaced while dormant fails the device with EINVAL and is left CLEAN (the uuid is checked first)', () => {
    const e = world();
    setup(e);
    e.umount('/mnt');
    // while unmounted, the file becomes another clean COW file (other uuid)
    const fs = e.world.volumes.get('/dev/sda1')!.fs;
    const f = fs.open('/cow1');
    const hb = new Uint8Array(64);
    f.read(hb, 0);
    expect(decodeHeader(hb).flags & FLAG_CLEAN).toBe(FLAG_CLEAN);
    hb.fill(0x5a, 32, 48);
    f.write(hb, 0);
    f.close();
    e.mount('/dev/sda1', '/mnt');
    expect(e.ctl.info(0).error).toBe(-22);
    const h = decodeHeader(e.readFile('/mnt/cow1'));
    expect(h.flags & FLAG_CLEAN).toBe(FLAG_CLEAN);
    expect(Array.from(h.uuid)).toEqual(new Array(16).fill(0x5a));
  });

  it('reload of a clean file whose fpos lies in the index is refused at activation and the file left as it was', () => {
    const e = world();
    setup(e);
    e.write('/dev/sda1', 0, pattern(4 * K4, 1));
    e.umount('/mnt');
    e.ctl.destroy(0);
    const fs = e.world.volumes.get('/dev/sda1')!.fs;
    const f = fs.open('/cow1');
    const hb = new Uint8Array(64);
    f.read(hb, 0);
    new DataView(hb.buffer).setBigUint64(8, 1n, true); // fpos 1: inside the index
    f.write(hb, 0);
    f.close();
    e.ctl.reloadSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/cow1', cacheSize: 0 });
    e.mount('/dev/sda1', '/mnt');
    expect(e.ctl.info(0)).toMatchObject({ state: 5, error: -22 });
    expectBytes(e.readFile('/mnt/cow1').subarray(0, 64), hb, 'header');
  });

  it('reload of a clean file whose index points outside the saved data is refused, the file left clean; the repaired file reloads', () => {
    const e = world();
    const before = pattern(4 * K4, 1);
    e.write('/dev/sda1', 0, before);
    setup(e);
    e.write('/dev/sda1', 0, pattern(4 * K4, 2));
    e.umount('/mnt');
    e.ctl.destroy(0);
    const fs = e.world.volumes.get('/dev/sda1')!.fs;
    const size = fs.open('/cow1').size();
    const good = new Uint8Array(size);
    fs.open('/cow1').read(good, 0);
    const h = decodeHeader(good);
    const g = geometry(e.world.volumes.get('/dev/sda1')!.sizeSectors);
    expect(readIndexEntry(good, 2)).toBeGreaterThanOrEqual(g.firstDataBlk);
    // block 2's entry: the next append (fpos), then a block of the index
    for (const bad of [h.fpos, h.fpos + 1000, 3]) {
      const b = good.slice();
      new DataView(b.buffer).setBigUint64(4096 + 8 * 2, BigInt(bad), true);
      const f = fs.open('/cow1');
      f.write(b, 0);
      f.close();
      e.ctl.reloadSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/cow1', cacheSize: 0 });
      e.mount('/dev/sda1', '/mnt');
      expect(e.ctl.info(0), `entry ${bad}`).toMatchObject({ state: 5, error: -22 });
      expectBytes(e.readFile('/mnt/cow1'), b, `entry ${bad}: the refused file`);
      e.umount('/mnt');
      e.ctl.destroy(0);
    }
    const f = fs.open('/cow1');
    f.write(good, 0);
    f.close();
    e.ctl.reloadSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/cow1', cacheSize: 0 });
    e.mount('/dev/sda1', '/mnt');
    expect(e.ctl.info(0)).toMatchObject({ state: 3, error: 0 });
    expectBytes(e.readSnapshot(0, 0, 4 * K4), before);
  });

  it('a snapshot read of an entry outside the saved data fails the device with EIO, never returns other bytes', () => {
    const e = world();
    setup(e);
    e.write('/dev/sda1', 0, pattern(K4, 2));
    const dev = e.world.devices[0]!;
    dev.cm!.set(0, 3); // an index block
    expect(errnoOf(() => e.readSnapshot(0, 0, K4))).toBe('EIO');
    expect(e.ctl.info(0).error).toBe(-5);
  });

  it('reload of a wrong-mode file fails at activation', () => {
    const e = world();
    setup(e);
    e.reboot();
    e.ctl.reloadIncremental({ minor: 0, bdev: '/dev/sda1', cow: '/cow1', cacheSize: 0 });
    e.mount('/dev/sda1', '/mnt');
    expect(e.ctl.info(0)).toMatchObject({ state: 4, error: -22 });
  });
});

describe('byte compatibility', () => {
  it('a file built with the codec alone (as the module writes it) reloads and serves the snapshot', async () => {
    const { encodeHeader, newHeader, writeIndexEntry } = await import('../../src/format/index.js');
    const e = new Emulator({ maxSnapDevices: 2 });
    e.addVolume({ path: '/dev/vdb', sizeBytes: 4 * MiB });
    const g = geometry(4 * MiB / 512);
    // live volume: block 3 now holds 0xbb; the "module-made" COW file saved 0xaa
    e.write('/dev/vdb', 3 * K4, new Uint8Array(K4).fill(0xbb));
    e.mount('/dev/vdb', '/m');
    e.createFile('/m/snap.cow', g.dataOffset + 4 * K4);
    const bytes = new Uint8Array(g.dataOffset + 4 * K4);
    const h = newHeader({ fpos: g.firstDataBlk + 1, fsize: bytes.length, seqid: 7, uuid: new Uint8Array(16).fill(1) });
    h.flags = FLAG_CLEAN;
    encodeHeader(h, bytes);
    writeIndexEntry(bytes, 3, g.firstDataBlk);
    bytes.fill(0xaa, g.dataOffset, g.dataOffset + K4);
    const f = e.io.openReadWrite('/m/snap.cow');
    f.write(bytes, 0);
    f.close();
    e.umount('/m');
    e.ctl.reloadSnapshot({ minor: 1, bdev: '/dev/vdb', cow: '/snap.cow', cacheSize: 0 });
    e.mount('/dev/vdb', '/m');
    expect(e.ctl.info(1)).toMatchObject({ state: 3, seqid: 7, error: 0 });
    expectBytes(e.readSnapshot(1, 3 * K4, K4), new Uint8Array(K4).fill(0xaa));
    expectBytes(e.readSnapshot(1, 0, K4), new Uint8Array(K4));
  });
});
