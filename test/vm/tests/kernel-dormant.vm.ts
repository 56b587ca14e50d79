// SPDX-License-Identifier: GPL-2.0-only
// dattobd.ko mount/umount handling (SPEC §3.2, §3.5, §2.10): umount makes
// an active device dormant (COW file closed clean), the next rw mount
// (mount(2) or the new mount API) makes it active again; destroy works
// while dormant with the filesystem unmounted; reload of a cleanly closed
// COW file (also after a module reload) becomes active on mount, and the
// next incremental then marks every block the reloaded COW file wrote; a
// dirty COW file is refused with an error and no crash.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../guest/api.js';
import { badBlocks, blockHashes, describedFile, errCode, fileBlocks, partition, readCowHeader, readCowIndex, umountExplained } from '../../kernel/vm/helpers.js';

function prepare(t: VmContext, fs: 'ext4' | 'xfs'): { part: string; mnt: string } {
  const part = partition(t, t.disks[0]!, fs === 'xfs' ? 320 : 96);
  t.mkfs(fs, part, fs === 'ext4' ? ['-E', 'lazy_itable_init=0,lazy_journal_init=0'] : []);
  const mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(1024, 1));
  t.sh('sync');
  t.loadModule();
  return { part, mnt };
}

function sameExceptCow(a: string[], b: string[], cow: Set<number>): number[] {
  return b.map((h, i) => (h !== a[i] && !cow.has(i) ? i : -1)).filter((i) => i >= 0);
}

function newMountTool(t: VmContext): string {
  const out = join(t.tmp, 'newmount');
  t.run(['gcc', '-O1', '-o', out, join(t.repo, 'test/kernel/vm/newmount.c')]);
  return out;
}

async function dormantCycle(t: VmContext, fs: 'ext4' | 'xfs'): Promise<void> {
  const { part, mnt } = prepare(t, fs);
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  const before = blockHashes('/dev/datto0');
  const cow = fileBlocks(t, `${mnt}/.datto`);
  const described = fileBlocks(t, `${mnt}/described`);
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=64 conv=notrunc status=none && sync`);

  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 1, 'umount must make the snapshot dormant');
  assert.equal(existsSync('/dev/datto0'), true);
  assert.notEqual(t.sh('dd if=/dev/datto0 of=/dev/null bs=4k count=1 iflag=direct', { allowFail: true }).code, 0, 'dormant reads fail');
  // a write to the unmounted origin (over the described file's data) is
  // still tracked (kept in memory until the COW file is back)
  const target = Math.min(...described);
  t.sh(`dd if=/dev/urandom of=${part} bs=4k seek=${target} count=8 conv=notrunc oflag=direct status=none`);
  // a read-only mount does not activate; the COW file is clean on disk
  const ro = t.mount(part, { type: fs, options: 'ro' });
  assert.equal(t.ioctl.info(0).state, 1);
  assert.equal(readCowHeader(`${ro}/.datto`).flags & 1, 1, 'dormant COW file must be CLEAN on disk');
  t.umount(ro);

  t.mount(part, { dir: mnt });
  const info = t.ioctl.info(0);
  assert.equal(info.state, 3, 'rw mount must re-activate the snapshot');
  assert.equal(info.error, 0);
  t.sh('blockdev --flushbufs /dev/datto0 && echo 3 > /proc/sys/vm/drop_caches');
  const after = blockHashes('/dev/datto0');
  const diff = sameExceptCow(before, after, cow);
  assert.deepEqual(diff.slice(0, 20), [], `${diff.length} snapshot blocks changed across dormant/active`);

  // incremental: umount -> state 0, new mount API mount -> state 2
  t.ioctl.transitionInc(0);
  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 0);
  t.run([newMountTool(t), fs, part, mnt]);
  assert.equal(t.ioctl.info(0).state, 2, 'a mount through fsmount/move_mount must re-activate');
  // remount-ro -> dormant, remount-rw -> active
  t.run(['mount', '-o', 'remount,ro', mnt]);
  assert.equal(t.ioctl.info(0).state, 0, 'remount-ro must make the device dormant');
  t.run(['mount', '-o', 'remount,rw', mnt]);
  assert.equal(t.ioctl.info(0).state, 2, 'remount-rw must re-activate');
  // the same through the new mount API (fspick + fsconfig reconfigure)
  t.run([newMountTool(t), 'remount', 'ro', mnt]);
  assert.equal(t.ioctl.info(0).state, 0, 'fsconfig remount-ro must make the device dormant');
  t.run([newMountTool(t), 'remount', 'rw', mnt]);
  let back = t.ioctl.info(0);
  assert.equal(back.error, 0, `fsconfig remount-rw: error ${back.error}`);
  assert.equal(back.state, 2, 'fsconfig remount-rw must re-activate');
  // and tracking goes on after all of it
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=4 conv=notrunc status=none && sync`);
  back = t.ioctl.info(0);
  assert.equal(back.error, 0);
  t.ioctl.destroy(0);
  umountExplained(t, mnt);
  t.unloadModule();
}

export async function dormantCycleExt4(t: VmContext): Promise<void> {
  await dormantCycle(t, 'ext4');
}

export async function dormantCycleXfs(t: VmContext): Promise<void> {
  await dormantCycle(t, 'xfs');
}

export async function destroyDormantUnmounted(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t, 'ext4');
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 1);
  t.ioctl.destroy(0);
  assert.throws(() => t.ioctl.info(0), (e) => errCode(e) === 'ENOENT');
  assert.equal(existsSync('/dev/datto0'), false);
  // the disk is no longer traced: writes and a new setup work
  t.mount(part, { dir: mnt });
  assert.equal(existsSync(`${mnt}/.datto`), true, 'a dormant destroy keeps the COW file');
  t.ioctl.setup(1, part, `${mnt}/.datto2`, 16);
  t.ioctl.destroy(1);
  umountExplained(t, mnt);
  t.unloadModule();
}

export async function reloadAfterUnmountAndModuleReload(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t, 'ext4');
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  const uuid = t.ioctl.info(0).uuid;
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=64 conv=notrunc status=none && sync`);
  // keep a dirty copy of the COW file's header (in use: not CLEAN)
  t.sh(`head -c 4096 ${mnt}/.datto > ${mnt}/.dirty && truncate -s 1M ${mnt}/.dirty && sync`);
  umountExplained(t, mnt);
  assert.equal(t.ioctl.info(0).state, 1);
  t.ioctl.destroy(0);
  t.unloadModule();

  t.loadModule();
  t.ioctl.reloadSnap(0, part, '/.datto');
  assert.equal(t.ioctl.info(0).state, 5);
  t.mount(part, { dir: mnt });
  const info = t.ioctl.info(0);
  assert.equal(info.error, 0, `activation failed: ${info.error}`);
  assert.equal(info.state, 3, 'reloaded snapshot must become active on mount');
  assert.equal(info.uuid, uuid);
  assert.equal(info.seqid, 1);
  assert.equal(info.cow, '/.datto');
  assert.equal(info.bdev, part);
  // the snapshot still shows the data from before the first session's writes
  // (writes made by the umount itself are lost across a reload, SPEC P7,
  // hence a journal-less read-only mount)
  const snap = t.mount('/dev/datto0', { type: 'ext4', options: 'ro,noload' });
  assert.deepEqual(badBlocks(`${snap}/described`, 1), [], 'reloaded snapshot lost pre-snapshot data');
  t.umount(snap);

  // reload of a dirty (never cleanly closed) file: error, stays unverified
  umountExplained(t, mnt);
  t.ioctl.destroy(0);
  t.ioctl.reloadInc(1, part, '/.dirty');
  t.mount(part, { dir: mnt });
  const bad = t.ioctl.info(1);
  assert.equal(bad.state, 4);
  assert.equal(bad.error, -22, 'a dirty COW file must be refused with EINVAL');
  assert.ok(t.kmsg().some((l) => l.includes('not left in clean state')), 'dirty-file message missing from the kernel log');
  t.ioctl.destroy(1);
  umountExplained(t, mnt);
  t.unloadModule();
}

/**
 * The COW file's own writes (its header, index and saved data) change the
 * volume after the snapshot instant without being copied. Across a reload
 * they are not on record, so the module counts every block the reloaded file
 * has written: the next incremental must mark them all, or update-img would
 * leave the old COW file's blocks as the previous image had them.
 */
async function reloadedSnapshotMarksCowFileBlocks(t: VmContext, fs: 'ext4' | 'xfs'): Promise<void> {
  const { part, mnt } = prepare(t, fs);
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  // 256 first writes: 256 blocks of saved data in the COW file
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=256 conv=notrunc status=none && sync`);
  umountExplained(t, mnt);
  t.ioctl.destroy(0);
  t.unloadModule();

  t.loadModule();
  t.ioctl.reloadSnap(0, part, '/.datto');
  t.mount(part, { dir: mnt });
  const info = t.ioctl.info(0);
  assert.equal(info.state, 3, `reloaded snapshot must become active on mount (error ${info.error})`);
  const fpos = Number(readCowHeader(`${mnt}/.datto`).fpos);
  const own = fileBlocks(t, `${mnt}/.datto`, { written: true, belowBytes: fpos * 4096 });
  t.log(`COW file: fpos ${fpos}, ${own.size} written blocks below it`);
  assert.ok(own.size >= 256, `the COW file should hold the 256 saved blocks, filefrag shows ${own.size} written`);

  t.ioctl.transitionInc(0);
  t.ioctl.transitionSnap(0, `${mnt}/.datto2`);
  const blocks = Number(t.sh(`blockdev --getsize64 ${part}`).stdout.trim()) / 4096;
  const changed = readCowIndex(`${mnt}/.datto`, blocks);
  const missing = [...own].filter((b) => !changed.has(b));
  assert.deepEqual(missing.slice(0, 20), [], `${missing.length} of the old COW file's ${own.size} written blocks are not marked changed`);
  assert.ok(!t.kmsg().some((l) => l.includes('cannot map the blocks')), 'the module could not map the COW file');
  t.ioctl.destroy(0);
  umountExplained(t, mnt);
  t.unloadModule();
}

export async function reloadedSnapshotMarksCowFileBlocksExt4(t: VmContext): Promise<void> {
  await reloadedSnapshotMarksCowFileBlocks(t, 'ext4');
}

export async function reloadedSnapshotMarksCowFileBlocksXfs(t: VmContext): Promise<void> {
  await reloadedSnapshotMarksCowFileBlocks(t, 'xfs');
}

/**
 * The reload maps the COW file's blocks up to the header's fpos: a clean file
 * whose fpos is absurd (2^40 blocks) must not keep the mount busy for the
 * billions of blocks it claims; the mapping stops at the file's end.
 */
export async function reloadedSnapshotWithHugeFposMounts(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t, 'ext4');
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=16 conv=notrunc status=none && sync`);
  umountExplained(t, mnt);
  t.ioctl.destroy(0);
  t.unloadModule();
  // fpos (header bytes 8-15) = 2^40, little-endian; the file stays CLEAN
  t.mount(part, { dir: mnt });
  t.sh(`printf '\\000\\000\\000\\000\\000\\001\\000\\000' | dd of=${mnt}/.datto bs=1 seek=8 conv=notrunc status=none && sync`);
  assert.equal(readCowHeader(`${mnt}/.datto`).fpos, 1n << 40n);
  t.umount(mnt);

  t.loadModule();
  t.ioctl.reloadSnap(0, part, '/.datto');
  // the mount goes on at once (it hung in the COW-file mapping once); the
  // header does not fit the file (saved data past its end): refused
  t.run(['mount', part, mnt], { timeoutMs: 60_000 });
  const info = t.ioctl.info(0);
  assert.equal(info.state, 5, 'a header whose fpos is past the file must leave the device unverified');
  assert.equal(info.error, -22, `error ${info.error}, want EINVAL`);
  assert.equal(readCowHeader(`${mnt}/.datto`).fpos, 1n << 40n, 'a refused COW file is left as it was');
  t.ioctl.destroy(0);
  umountExplained(t, mnt);
  t.unloadModule();
}

/** A reloaded device becomes active when a read-only mount is remounted rw with the new mount API (boot: `/` ro, then rw). */
export async function reloadActivatesOnNewApiRemount(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t, 'ext4');
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  t.ioctl.transitionInc(0);
  umountExplained(t, mnt);
  t.ioctl.destroy(0);
  t.ioctl.reloadInc(0, part, '/.datto');
  t.mount(part, { dir: mnt, options: 'ro' });
  assert.equal(t.ioctl.info(0).state, 4, 'a read-only mount does not activate');
  t.run([newMountTool(t), 'remount', 'rw', mnt]);
  const info = t.ioctl.info(0);
  assert.equal(info.error, 0, `activation failed: ${info.error}`);
  assert.equal(info.state, 2, 'fsconfig remount-rw must activate the reloaded device');
  t.ioctl.destroy(0);
  umountExplained(t, mnt);
  t.unloadModule();
}

/** SPEC §3.2: unmounting the COW file's mount while a bind mount keeps the filesystem writable fails the device with EIO. */
export async function umountWithWritableBindMountFailsEio(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t, 'ext4');
  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  const other = join(t.tmp, 'bind');
  t.sh(`mkdir -p ${other} && mount --bind ${mnt} ${other}`);
  t.umount(mnt);
  // the check runs a second after the umount: poll for it
  let info = t.ioctl.info(0);
  for (const end = Date.now() + 30_000; Date.now() < end && info.error === 0; ) {
    t.sh('sleep 0.5');
    info = t.ioctl.info(0);
  }
  assert.equal(info.error, -5, 'a writable superblock left after the umount must fail the device with EIO');
  assert.ok(t.kmsg().some((l) => l.includes('still mounted after umounting')), 'EIO reason missing from the kernel log');
  // writes through the remaining mount are not held up by the failed device
  t.sh(`dd if=/dev/urandom of=${other}/described bs=4k count=16 conv=notrunc status=none && sync`);
  t.ioctl.destroy(0);
  t.run(['umount', other]);
  t.unloadModule();
}

/**
 * The post-umount check (a second after an unmount) must judge only a device
 * that is still dormant from that unmount. Found by the model test: umount,
 * mount (active again), then a remount-ro about a second later; the check
 * fired while the remount had made the device dormant but the superblock was
 * not read-only yet, and failed the device with EIO. Here the remount-ro has
 * dirty file data to write back, which holds that window open for 0.1-0.3 s
 * under TCG, and starts at delays 80 ms apart, so that the check lands in the
 * window in at least one of them.
 */
export async function remountRoAfterRemountKeepsDevice(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 320);
  t.mkfs('ext4', part, ['-E', 'lazy_itable_init=0,lazy_journal_init=0']);
  const mnt = t.mount(part);
  // overwritten in place below: its blocks are copied to the COW file once
  t.sh(`dd if=/dev/zero of=${mnt}/fill bs=1M count=8 status=none && sync`);
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 32);
  for (const delay of ['0', '0.08', '0.16', '0.24', '0.32', '0.4', '0.48', '0.56', '0.64']) {
    t.sh(`umount ${mnt} && mount ${part} ${mnt} && dd if=/dev/zero of=${mnt}/fill bs=1M count=8 conv=notrunc status=none && sleep ${delay} && mount -o remount,ro ${mnt}`);
    t.sh('sleep 1.2');
    const info = t.ioctl.info(0);
    assert.equal(info.error, 0, `remount-ro ${delay} s after refilling, soon after an umount and a mount, failed the device (${info.error})`);
    assert.equal(info.state, 1, 'dormant while the filesystem is read-only');
    t.sh(`mount -o remount,rw ${mnt}`);
    assert.equal(t.ioctl.info(0).state, 3, 'active again after remount-rw');
  }
  assert.ok(!t.kmsg().some((l) => l.includes('still mounted after umounting')), 'the post-umount check misfired');
  t.ioctl.destroy(0);
  t.umount(mnt);
  t.unloadModule();
}

/*
 * The COW file under a subdirectory, and the filesystem made writable through
 * a bind mount of that subdirectory (remount,rw of the bind mount remounts
 * the superblock): the COW path is relative to the filesystem's root, so it
 * must be opened relative to what that mount shows. The old module looked
 * "sub/.datto" up under the bind mount's root (sub) and left the reloaded
 * device unverified with ENOENT; now it activates. (A dormant device resumed
 * through such a mount takes the same open; not tested here.)
 */
export async function reloadActivatesThroughBindMountOfSubdir(t: VmContext): Promise<void> {
  const { part, mnt } = prepare(t, 'ext4');
  mkdirSync(join(mnt, 'sub'));
  t.ioctl.setup(0, part, `${mnt}/sub/.datto`, 16);
  assert.equal(t.ioctl.info(0).cow, '/sub/.datto');
  t.sh(`dd if=/dev/urandom of=${mnt}/described bs=4k count=64 conv=notrunc status=none && sync`);
  umountExplained(t, mnt);
  t.ioctl.destroy(0);
  t.unloadModule();

  t.loadModule();
  t.ioctl.reloadSnap(0, part, '/sub/.datto');
  t.mount(part, { dir: mnt, options: 'ro' });
  const bind = '/mnt/dbd-bind-sub';
  mkdirSync(bind, { recursive: true });
  t.run(['mount', '--bind', `${mnt}/sub`, bind]);
  try {
    t.run(['mount', '-o', 'remount,rw', bind]);
    const info = t.ioctl.info(0);
    assert.deepEqual([info.state, info.error], [3, 0], 'the reloaded snapshot must activate through the bind mount of its directory');
    const snap = t.mount('/dev/datto0', { type: 'ext4', options: 'ro,noload' });
    assert.deepEqual(badBlocks(`${snap}/described`, 1), [], 'reloaded snapshot lost pre-snapshot data');
    t.umount(snap);
    t.ioctl.destroy(0);
  } finally {
    t.sh(`umount ${bind}; true`, { allowFail: true });
  }
}
