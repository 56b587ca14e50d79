// SPDX-License-Identifier: GPL-2.0-only
// Divergences found by the differential model test (diff-model.vm.ts),
// frozen as plain cases: each runs the minimal command sequence on both the
// emulator and dattobd.ko and asserts the same outcome.
import assert from 'node:assert/strict';
import type { VmContext } from '../guest/api.js';
import { Emulator } from '../../../emulator/index.js';
import { outcomeOf, regionOffset, writeData } from '../../differential/model.js';
import { loopVolume, readAt, writeDevice } from '../../differential/vm-world.js';

/**
 * Reading /dev/datto0 while the snapshot is dormant (filesystem unmounted):
 * SPEC §3.1 says EBUSY; the emulator says EBUSY. The module completes the
 * bio with BLK_STS_DEV_RESOURCE (-EBUSY), which an O_DIRECT read reports;
 * a buffered read(2) reports EIO because the page cache maps every bio error
 * to EIO. Found as "module EIO, emulator EBUSY" by the model test.
 */
export async function dormantSnapshotReadIsEbusy(t: VmContext): Promise<void> {
  t.modprobe('loop');
  const v = loopVolume(t, 'rg0', 64, 48);
  t.run(['mount', v.dev, v.mnt]);
  t.loadModule();
  const e = new Emulator({ maxSnapDevices: 4 });
  e.addVolume({ path: v.dev, sizeBytes: v.sizeBytes, fsFreeBytes: v.fsFreeBytes });
  e.mount(v.dev, v.mnt);
  t.ioctl.setup(0, v.dev, `${v.mnt}/cow`, 1);
  e.ctl.setupSnapshot({ minor: 0, bdev: v.dev, cow: `${v.mnt}/cow`, fallocatedSpace: 1, cacheSize: 0 });
  writeDevice(v.dev, regionOffset(v, 0), writeData(1, 0, 1));
  e.write(v.dev, regionOffset(v, 0), writeData(1, 0, 1));
  t.run(['umount', v.mnt]);
  e.umount(v.mnt);
  assert.equal(t.ioctl.info(0).state, 1, 'module: dormant after umount');
  assert.equal(e.ctl.info(0).state, 1, 'emulator: dormant after umount');

  const emu = outcomeOf(() => e.readSnapshot(0, regionOffset(v, 0), 4096));
  assert.equal(emu.outcome, 'EBUSY');
  const direct = t.run(['dd', 'if=/dev/datto0', 'of=/dev/null', 'bs=4096', 'count=1', `skip=${regionOffset(v, 0) / 4096}`, 'iflag=direct', 'status=none'], { allowFail: true });
  t.log(`O_DIRECT read of the dormant device: exit ${direct.code} ${direct.stderr.trim()}`);
  assert.notEqual(direct.code, 0, 'reading a dormant snapshot device must fail');
  assert.match(direct.stderr, /Device or resource busy/, 'the module must report EBUSY for a dormant snapshot device');
  const buffered = outcomeOf(() => readAt('/dev/datto0', regionOffset(v, 0), 4096));
  t.log(`buffered read of the dormant device: ${buffered.outcome}`);

  // reactivation: both sides serve the pre-snapshot data again
  t.run(['mount', v.dev, v.mnt]);
  e.mount(v.dev, v.mnt);
  assert.equal(t.ioctl.info(0).state, 3);
  assert.equal(e.ctl.info(0).state, 3);
  const k = readAt('/dev/datto0', regionOffset(v, 0), 4096);
  const m = e.readSnapshot(0, regionOffset(v, 0), 4096);
  assert.ok(k.equals(Buffer.from(m)), 'snapshot contents after reactivation');
  assert.ok(k.every((x) => x === 0), 'the region was zero before the snapshot');
  t.ioctl.destroy(0);
}

/**
 * A failed device must release its filesystem: SPEC §3.4 says the failure
 * path unlinks *and closes* the COW file; the emulator does, so umount and
 * remount-ro succeed. Found by the model test as "umount: target is busy" /
 * "remount,ro: mount point is busy" on the module after expand-cow-file 0
 * (EINVAL, device failed) or a COW-file-full write (EFBIG).
 */
export async function failedDeviceReleasesFilesystem(t: VmContext): Promise<void> {
  t.modprobe('loop');
  const v = loopVolume(t, 'rg1', 64, 48);
  t.run(['mount', v.dev, v.mnt]);
  t.loadModule();
  const e = new Emulator({ maxSnapDevices: 4 });
  e.addVolume({ path: v.dev, sizeBytes: v.sizeBytes, fsFreeBytes: v.fsFreeBytes });
  e.mount(v.dev, v.mnt);
  t.ioctl.setup(0, v.dev, `${v.mnt}/cow`, 1);
  e.ctl.setupSnapshot({ minor: 0, bdev: v.dev, cow: `${v.mnt}/cow`, fallocatedSpace: 1, cacheSize: 0 });
  // expanding by 0 MiB fails (fallocate EINVAL) and fails the device on both sides
  assert.equal(outcomeOf(() => e.ctl.expandCowFile({ minor: 0, size: 0 })).outcome, 'EINVAL');
  assert.throws(() => t.ioctl.expand(0, 0), (err: { code?: string }) => err.code === 'EINVAL');
  assert.equal(e.ctl.info(0).error, -22);
  const deadline = Date.now() + 5000;
  while (t.ioctl.info(0).error === 0 && Date.now() < deadline) t.sh('sleep 0.05');
  assert.equal(t.ioctl.info(0).error, -22, 'module: device failed');
  // the COW file is gone on both sides
  assert.equal(outcomeOf(() => e.readFile(`${v.mnt}/cow`)).outcome, 'ENOENT');
  // (the module's worker thread unlinks it asynchronously: allow it 5 s)
  const gone = t.sh(`for i in $(seq 50); do test -e ${v.mnt}/cow || exit 0; sleep 0.1; done; exit 1`, { allowFail: true });
  assert.equal(gone.code, 0, 'module: the COW file of a failed device must be unlinked (SPEC §3.4)');
  // and the filesystem can be remounted read-only and unmounted
  e.remount(v.mnt, { readOnly: true });
  const ro = t.run(['mount', '-o', 'remount,ro', v.mnt], { allowFail: true });
  assert.equal(ro.code, 0, `module: remount,ro after the failure: ${ro.stderr.trim()}`);
  e.umount(v.mnt);
  const um = t.run(['umount', v.mnt], { allowFail: true });
  assert.equal(um.code, 0, `module: umount after the failure: ${um.stderr.trim()}`);
  t.ioctl.destroy(0);
}
