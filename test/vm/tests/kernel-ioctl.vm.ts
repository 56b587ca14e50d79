// SPDX-License-Identifier: GPL-2.0-only
// dattobd.ko ioctl argument handling (SPEC §1.4, §3.3): bad pointers,
// NULL and over-long paths, minor range / existence / state checks,
// unknown commands, privilege, and no kernel memory in INFO's output.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { VmContext } from '../guest/api.js';

function buildAbuseTool(t: VmContext): string {
  const out = join(t.tmp, 'ioctl-abuse');
  t.run(['gcc', '-O1', '-o', out, join(t.repo, 'test/kernel/vm/ioctl-abuse.c')]);
  return out;
}

function parse(stdout: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of stdout.trim().split('\n')) {
    const i = line.indexOf(' ');
    m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

export async function ioctlArgumentErrors(t: VmContext): Promise<void> {
  const tool = buildAbuseTool(t);
  t.loadModule();
  const disk = t.disks[0]!;
  t.ioctl.reloadSnap(5, disk, '/.datto', 1234567);
  const r = parse(t.run([tool, disk, '5']).stdout);
  t.log([...r.entries()].map(([k, v]) => `${k} ${v}`).join('\n'));
  const expect: Record<string, string> = {
    'setup-badptr': 'EFAULT',
    'reload-snap-badptr': 'EFAULT',
    'reload-inc-badptr': 'EFAULT',
    'destroy-badptr': 'EFAULT',
    'transition-inc-badptr': 'EFAULT',
    'transition-snap-badptr': 'EFAULT',
    'reconfigure-badptr': 'EFAULT',
    'info-badptr': 'EFAULT',
    'get-free-badptr': 'EFAULT',
    'expand-badptr': 'EFAULT',
    'auto-expand-badptr': 'EFAULT',
    'unknown-cmd': 'EINVAL',
    'wrong-size-cmd': 'EINVAL',
    'setup-null-bdev': 'EINVAL',
    'setup-null-cow': 'EINVAL',
    'setup-bad-bdev-ptr': 'EFAULT',
    'setup-cow-runs-into-unmapped': 'EFAULT',
    'setup-long-bdev': 'EINVAL',
    'setup-4095-bdev': 'ENAMETOOLONG',
    'setup-minor-24': 'EINVAL',
    'setup-minor-max': 'EINVAL',
    'setup-missing-bdev': 'ENOENT',
    'setup-dir-bdev': 'ENOTBLK',
    'setup-unmounted': 'EINVAL',
    'reload-long-cow': 'EINVAL',
    'reload-null-cow': 'EINVAL',
    'transition-snap-null-cow': 'EINVAL',
    'transition-snap-long-cow': 'EINVAL',
    'transition-snap-minor-30': 'EINVAL',
    'destroy-minor-24': 'EINVAL',
    'destroy-absent': 'ENOENT',
    'transition-inc-absent': 'ENOENT',
    'transition-snap-absent': 'ENOENT',
    'reconfigure-absent': 'ENOENT',
    'expand-absent': 'ENOENT',
    'auto-expand-absent': 'ENOENT',
    'auto-expand-minor-99': 'EINVAL',
    'transition-inc-unverified': 'EINVAL',
    'transition-snap-unverified': 'EINVAL',
    'expand-unverified': 'EINVAL',
    'auto-expand-unverified': 'EINVAL',
    'reconfigure-unverified': 'OK',
    'reload-busy-minor': 'EBUSY',
    'info-unverified': 'OK',
    'info-version-untouched': 'OK',
    'info-cache': '12345',
    'info-state': '5',
    'info-cow': '/.datto',
    'info-falloc-zero': 'OK',
    'nonroot-get-free': 'EPERM',
    'nonroot-info': 'EPERM',
    'nonroot-destroy': 'EPERM',
    'nonroot-unknown': 'EPERM',
  };
  const wrong = Object.entries(expect)
    .filter(([k, v]) => r.get(k) !== v)
    .map(([k, v]) => `${k}: got ${r.get(k) ?? '(missing)'}, want ${v}`);
  assert.deepEqual(wrong, [], wrong.join('\n'));
  // the unverified device is listed in /proc without COW fields
  const dev = t.procInfo().devices.find((d) => d.minor === 5);
  assert.ok(dev, '/proc/datto-info lacks minor 5');
  assert.equal(dev.state, 5);
  assert.equal(dev.cow_file, '/.datto');
  assert.equal(dev.max_cache, 12345);
  assert.equal('fallocate' in dev, false, 'unverified device must not show fallocate');
  assert.equal(t.ioctl.getFree(), 0);
  t.ioctl.destroy(5);
  assert.throws(() => t.ioctl.info(5), (e: unknown) => (e as { code?: string }).code === 'ENOENT');
  t.unloadModule();
}

export async function maxSnapDevicesParameter(t: VmContext): Promise<void> {
  t.loadModule({ max_snap_devices: 2 });
  const disk = t.disks[0]!;
  t.ioctl.reloadInc(0, disk, '/a');
  t.ioctl.reloadInc(1, disk, '/b');
  assert.throws(() => t.ioctl.getFree(), (e: unknown) => (e as { code?: string }).code === 'ENOENT');
  assert.throws(() => t.ioctl.reloadInc(2, disk, '/c'), (e: unknown) => (e as { code?: string }).code === 'EINVAL');
  const info = t.procInfo();
  assert.deepEqual(info.devices.map((d) => d.minor), [0, 1]);
  assert.deepEqual(info.devices.map((d) => d.state), [4, 4]);
  t.ioctl.destroy(0);
  assert.equal(t.ioctl.getFree(), 0);
  t.ioctl.destroy(1);
  t.unloadModule();
}

export async function procEscapesStrings(t: VmContext): Promise<void> {
  t.loadModule();
  const disk = t.disks[0]!;
  const cow = '/we"ird\\name\ttab';
  t.ioctl.reloadSnap(3, disk, cow);
  const dev = t.procInfo().devices.find((d) => d.minor === 3);
  assert.ok(dev);
  assert.equal(dev.cow_file, cow);
  t.ioctl.destroy(3);
}
