// SPDX-License-Identifier: GPL-2.0-only
import { describe, expect, it } from 'vitest';
import { Emulator } from '../../emulator/index.js';
import { DriverError } from '../../src/driver/errors.js';
import { errnoOf, MiB, setup, world } from './helpers.js';

const S = (e: Emulator, o: Partial<{ minor: number; bdev: string; cow: string; fallocatedSpace: number; cacheSize: number }>) => () =>
  e.ctl.setupSnapshot({ minor: 0, bdev: '/dev/sda1', cow: '/mnt/cow1', fallocatedSpace: 1, cacheSize: 0, ...o });

describe('setup-snapshot validation (SPEC §1.4)', () => {
  it('checks minor range, then use, then the bdev', () => {
    const e = world();
    expect(errnoOf(S(e, { minor: 4, bdev: '/nope' }))).toBe('EINVAL');
    expect(errnoOf(S(e, { minor: -1 }))).toBe('EINVAL');
    expect(errnoOf(S(e, { bdev: 'x'.repeat(4096) }))).toBe('EINVAL');
    expect(errnoOf(S(e, { bdev: '/dev/none' }))).toBe('ENOENT');
    e.mkdir('/mnt/dir');
    expect(errnoOf(S(e, { bdev: '/mnt/dir' }))).toBe('ENOTBLK');
    setup(e);
    expect(errnoOf(S(e, { bdev: '/dev/none' }))).toBe('EBUSY');
    expect(errnoOf(S(e, { minor: 1, cow: '/mnt/cow2' }))).toBe('EINVAL'); // already traced
  });

  it('refuses unmounted and read-only filesystems', () => {
    const e = world();
    e.remount('/mnt', { readOnly: true });
    expect(errnoOf(S(e, {}))).toBe('EINVAL');
    e.umount('/mnt');
    expect(errnoOf(S(e, {}))).toBe('EINVAL');
  });

  it('reports COW file errors and leaves no file behind', () => {
    const e = world({ free: 3 * MiB });
    e.mkdir('/mnt/d');
    expect(errnoOf(S(e, { cow: '/mnt/d' }))).toBe('EISDIR');
    expect(errnoOf(S(e, { cow: '/mnt/missing/cow' }))).toBe('ENOENT');
    expect(errnoOf(S(e, { fallocatedSpace: 4 }))).toBe('ENOSPC');
    expect(e.io.exists('/mnt/cow1')).toBe(false);
    expect(e.fsFreeBytes('/dev/sda1')).toBe(3 * MiB);
    expect(errnoOf(S(e, { cow: '/tmp/cow' }))).toBe('ENOENT'); // no /tmp on the host yet
    e.mkdir('/tmp');
    expect(errnoOf(S(e, { cow: '/tmp/cow' }))).toBe('EINVAL'); // other filesystem
    expect(e.io.exists('/tmp/cow')).toBe(false);
    e.faults.failNextFallocate(5);
    expect(errnoOf(S(e, {}))).toBe('EIO');
    expect(e.io.exists('/mnt/cow1')).toBe(false);
    expect(errnoOf(S(e, { minor: 2 }))).toBe('OK');
    expect(errnoOf(S(e, { minor: 3 }))).toBe('EINVAL');
  });

  it('creates the file as SPEC §2.6 says and protects it', () => {
    const e = world();
    S(e, { fallocatedSpace: 0 })();
    const info = e.ctl.info(0);
    expect(info.fallocSize).toBe(Math.floor((8 * MiB * 10) / 100));
    expect(info.state).toBe(3);
    expect(info.cow).toBe('/cow1');
    expect(info.seqid).toBe(1);
    expect(errnoOf(() => e.unlink('/mnt/cow1'))).toBe('EPERM');
    expect(errnoOf(() => e.io.openReadWrite('/mnt/cow1'))).toBe('EPERM');
    expect(e.ctl.procInfo()).toContain('"fallocate": 0,'); // floor(0.8 MiB) = 0
  });

  it('throws DriverError with message and hint', () => {
    const e = world();
    e.umount('/mnt');
    try {
      S(e, {})();
      expect.unreachable();
    } catch (x) {
      expect(x).toBeInstanceOf(DriverError);
      const d = x as DriverError;
      expect(d.errno).toBe(22);
      expect(d.op).toBe('setup-snapshot');
      expect(d.message).toMatch(/unmounted/);
      expect(d.hint).toMatch(/mount/);
    }
  });

  it('getFreeMinor returns the lowest free minor, ENOENT when full', () => {
    const e = world({ max: 2 });
    expect(e.ctl.getFreeMinor()).toBe(0);
    setup(e, '/mnt/a', 1, 0);
    expect(e.ctl.getFreeMinor()).toBe(1);
    expect(errnoOf(() => e.ctl.reloadSnapshot({ minor: 1, bdev: '/dev/sda1', cow: '/x', cacheSize: 0 }))).toBe('EINVAL');
    e.addVolume({ path: '/dev/sdb1', sizeBytes: MiB });
    e.ctl.reloadSnapshot({ minor: 1, bdev: '/dev/sdb1', cow: '/x', cacheSize: 0 });
    expect(errnoOf(() => e.ctl.getFreeMinor())).toBe('ENOENT');
  });
});

describe('driver presence through DriverIo', () => {
  it('/dev/datto-ctl exists and /proc/datto-info reads the proc text', () => {
    const e = world();
    setup(e);
    expect(e.io.exists('/dev/datto-ctl')).toBe(true);
    expect(e.io.exists('/proc/datto-info')).toBe(true);
    const f = e.io.openRead('/proc/datto-info');
    const buf = new Uint8Array(f.size());
    f.read(buf, 0);
    f.close();
    expect(new TextDecoder().decode(buf)).toBe(e.ctl.procInfo());
    expect(errnoOf(() => e.io.openReadWrite('/proc/datto-info'))).toBe('EACCES');
  });
});
