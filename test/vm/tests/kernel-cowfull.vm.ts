// SPDX-License-Identifier: GPL-2.0-only
// dattobd.ko COW space (SPEC §2.5, §2.9, §3.4): a full COW file fails the
// snapshot with EFBIG (origin writes are not lost, the COW file is removed,
// snapshot reads fail with EIO); expand and auto-expand add room.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { VmContext } from '../guest/api.js';
import { errCode, partition, sha256 } from '../../kernel/vm/helpers.js';

function prepare(t: VmContext): { part: string; mnt: string } {
  const part = partition(t, t.disks[0]!, 96);
  // no lazy inode-table init: its background zeroing would fill the tiny
  // COW files before the test starts writing
  t.mkfs('ext4', part, ['-E', 'lazy_itable_init=0,lazy_journal_init=0']);
  const mnt = t.mount(part);
  t.sh(`dd if=/dev/urandom of=${mnt}/old bs=1M count=24 status=none && sync`);
  t.loadModule();
  return { part, mnt };
}

// overwrite 24 MiB of pre-snapshot data: needs ~6000 COW blocks
function overwrite(t: VmContext, mnt: string): string {
  t.sh(`dd if=/dev/urandom of=${mnt}/old bs=1M count=24 conv=notrunc status=none && sync`, { timeoutMs: 300_000 });
  return sha256(t, `${mnt}/old`);
}

export async function cowFullFailsWithEfbig(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t);
  t.ioctl.setup(0, part, `${mnt}/.datto`, 1);
  const written = overwrite(t, mnt);
  const info = t.ioctl.info(0);
  assert.equal(info.error, -27, 'EFBIG fail state expected');
  assert.equal(info.state, 3, 'state bits are kept on failure');
  const dev = t.procInfo().devices[0]!;
  assert.equal(dev.error, -27);
  assert.equal(existsSync(`${mnt}/.datto`), false, 'the COW file of a failed snapshot is removed');
  assert.notEqual(t.sh('dd if=/dev/datto0 of=/dev/null bs=4k count=1 iflag=direct', { allowFail: true }).code, 0, 'snapshot reads fail with EIO');
  // the origin is untouched by the failure: the data written is all there
  t.sh('echo 3 > /proc/sys/vm/drop_caches');
  assert.equal(sha256(t, `${mnt}/old`), written);
  // failed-state cells
  assert.throws(() => t.ioctl.transitionInc(0), (e) => errCode(e) === 'EINVAL');
  assert.throws(() => t.ioctl.expand(0, 1), (e) => errCode(e) === 'EINVAL');
  assert.throws(() => t.ioctl.reconfigure(0, 1), (e) => errCode(e) === 'EINVAL');
  // the failed device no longer holds the filesystem: it unmounts
  t.umount(mnt);
  t.ioctl.destroy(0);
  t.unloadModule();
}

export async function expandMakesRoom(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t);
  t.ioctl.setup(0, part, `${mnt}/.datto`, 1);
  t.ioctl.expand(0, 40);
  assert.equal(t.ioctl.info(0).falloc_size, 41 * 1048576);
  overwrite(t, mnt);
  // the COW thread appends saved blocks after the writes completed: wait for it (bounded)
  let info = t.ioctl.info(0);
  for (let i = 0; i < 100 && info.error === 0 && info.nr_changed_blocks < 6144; i++) {
    t.sh('sleep 0.2');
    info = t.ioctl.info(0);
  }
  assert.equal(info.error, 0, `snapshot failed: ${info.error}`);
  assert.ok(info.nr_changed_blocks >= 6144, `nr_changed_blocks ${info.nr_changed_blocks}`);
  // ioctls keep working after a successful expand (no leaked lock)
  t.ioctl.expand(0, 1);
  assert.equal(t.procInfo().devices[0]!.cow_size_current, 42 * 1048576);
  t.ioctl.destroy(0);
  t.umount(mnt);
  t.unloadModule();
}

export async function autoExpandGrows(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t);
  t.ioctl.setup(0, part, `${mnt}/.datto`, 1);
  t.ioctl.autoExpand(0, 4, 1);
  overwrite(t, mnt);
  // the COW thread appends (and grows the file) after the writes completed: wait for it (bounded)
  let info = t.ioctl.info(0);
  for (let i = 0; i < 100 && info.error === 0 && info.nr_changed_blocks < 6144; i++) {
    t.sh('sleep 0.2');
    info = t.ioctl.info(0);
  }
  assert.equal(info.error, 0, `snapshot failed: ${info.error}`);
  assert.ok(info.nr_changed_blocks >= 6144, `nr_changed_blocks ${info.nr_changed_blocks}`);
  assert.ok(info.falloc_size > 24 * 1048576, `COW file did not grow: ${info.falloc_size}`);
  assert.equal((info.falloc_size - 1048576) % (4 * 1048576), 0, 'grows in steps of step_size');
  t.ioctl.destroy(0);
  t.umount(mnt);
  t.unloadModule();
}
