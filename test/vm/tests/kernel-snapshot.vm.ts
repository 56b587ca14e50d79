// SPDX-License-Identifier: GPL-2.0-only
// dattobd.ko snapshot mode on ext4 and xfs (on a partition, so the
// partition offset matters): concurrent writes of every shape while the
// snapshot is live must not change a single byte of /dev/dattoN, and the
// snapshot mounts read-only with the pre-snapshot file contents.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../guest/api.js';
import { loadNativeCopy } from '../../../src/native/index.js';
import { badBlocks, blockHashes, blockRuns, describedFile, errCode, fileBlocks, overwriterScript, partition, readCowIndex, sha256 } from '../../kernel/vm/helpers.js';

const FILE_BLOCKS = 8192; // 32 MiB described file

async function snapshotUnderLoad(t: VmContext, fs: 'ext4' | 'xfs'): Promise<void> {
  const part = partition(t, t.disks[0]!, 320);
  t.mkfs(fs, part);
  const mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(FILE_BLOCKS, 1));
  t.sh(`dd if=/dev/urandom of=${mnt}/random bs=1M count=16 status=none && mkdir ${mnt}/dir && echo hello > ${mnt}/dir/small && sync`);
  const randomSum = sha256(t, `${mnt}/random`);

  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 64);
  const info = t.ioctl.info(0);
  assert.equal(info.state, 3);
  assert.equal(info.cow, '/.datto');
  assert.equal(info.bdev, part);
  assert.equal(info.falloc_size, 64 * 1048576);
  assert.equal(info.seqid, 1);
  assert.equal(info.version, 1);
  assert.ok(existsSync('/dev/datto0'), '/dev/datto0 missing');
  assert.equal(t.sh('blockdev --getsize64 /dev/datto0').stdout.trim(), String(320 * 1048576));
  // the COW file is protected while in use
  assert.notEqual(t.sh(`rm -f ${mnt}/.datto`, { allowFail: true }).code, 0, 'rm of the COW file must fail');
  const before = blockHashes('/dev/datto0');
  // the COW file's own blocks are the only ones the snapshot does not
  // preserve (they are unwritten/preallocated in the snapshot's fs)
  const cowBlocks = fileBlocks(t, `${mnt}/.datto`);
  assert.ok(cowBlocks.size >= 64 * 256, `COW file extents: ${cowBlocks.size} blocks`);

  // several concurrent writers: sub-4K/unaligned overwrites, buffered and
  // O_DIRECT appends, fio random writes with odd sizes
  const ow1 = overwriterScript(t, `${mnt}/described`, FILE_BLOCKS, 2, 3000, 11);
  const ow2 = overwriterScript(t, `${mnt}/described`, FILE_BLOCKS, 3, 3000, 29);
  const node = process.execPath;
  t.sh(
    [
      `${node} ${ow1} &`,
      `${node} ${ow2} &`,
      `dd if=/dev/urandom of=${mnt}/new bs=64k count=256 status=none &`,
      `dd if=/dev/zero of=${mnt}/direct bs=4k count=2048 oflag=direct status=none &`,
      `fio --name=rw --filename=${mnt}/random --rw=randwrite --bsrange=512-12k --bs_unaligned --size=16M --io_size=8M --direct=1 --ioengine=psync --output=/dev/null &`,
      `dd if=/dev/urandom of=${mnt}/random bs=1000 seek=777 count=50 conv=notrunc status=none &`,
      'wait',
      `rm -f ${mnt}/dir/small`,
      'sync',
    ].join('\n'),
    { timeoutMs: 600_000 },
  );
  assert.ok(badBlocks(`${mnt}/described`, 1).length > 1000, 'the writers did not change the origin');
  t.sh('blockdev --flushbufs /dev/datto0 && echo 3 > /proc/sys/vm/drop_caches');
  const after = blockHashes('/dev/datto0');
  assert.equal(after.length, before.length);
  const changed = after.map((h, i) => (h !== before[i] && !cowBlocks.has(i) ? i : -1)).filter((i) => i >= 0);
  assert.deepEqual(changed.slice(0, 20), [], `${changed.length} blocks of /dev/datto0 changed while the origin was written`);
  const nr = t.ioctl.info(0).nr_changed_blocks;
  assert.ok(nr > 0, 'nr_changed_blocks did not grow');

  // the snapshot mounts read-only and shows the pre-snapshot files
  const snap = t.mount('/dev/datto0', { type: fs, options: fs === 'xfs' ? 'ro,norecovery,nouuid' : 'ro' });
  assert.deepEqual(badBlocks(`${snap}/described`, 1), [], 'snapshot file has blocks that are not the pre-snapshot data');
  assert.equal(sha256(t, `${snap}/random`), randomSum);
  assert.equal(t.sh(`cat ${snap}/dir/small`).stdout, 'hello\n');
  assert.equal(existsSync(`${snap}/new`), false);
  // busy: the snapshot device is mounted
  assert.throws(() => t.ioctl.destroy(0), (e) => errCode(e) === 'EBUSY');
  assert.throws(() => t.ioctl.transitionInc(0), (e) => errCode(e) === 'EBUSY');
  t.ioctl.expand(0, 1);
  assert.equal(t.ioctl.info(0).falloc_size, 65 * 1048576);
  t.umount(snap);

  // state-3 cells of the ioctl x state matrix
  assert.throws(() => t.ioctl.transitionSnap(0, `${mnt}/.other`), (e) => errCode(e) === 'EINVAL');
  assert.throws(() => t.ioctl.setup(0, part, `${mnt}/.x`), (e) => errCode(e) === 'EBUSY');
  assert.throws(() => t.ioctl.setup(1, part, `${mnt}/.x`), (e) => errCode(e) === 'EINVAL');
  t.ioctl.reconfigure(0, 1 << 20);
  t.ioctl.autoExpand(0, 8, 1);
  const proc = t.procInfo().devices[0]!;
  assert.equal(proc.max_cache, 1 << 20);
  assert.deepEqual(proc.auto_expand, { step_size_mib: 8, reserved_space_mib: 1 });
  assert.equal(proc.cow_size_current, 65 * 1048576);
  assert.equal(proc.fallocate, 64 * 1048576);

  t.ioctl.destroy(0);
  assert.equal(existsSync(`${mnt}/.datto`), false, 'destroy must delete the COW file of an active snapshot');
  assert.equal(existsSync('/dev/datto0'), false);
  t.umount(mnt);
  t.unloadModule();
}

export async function snapshotExt4UnderLoad(t: VmContext): Promise<void> {
  await snapshotUnderLoad(t, 'ext4');
}

export async function snapshotXfsUnderLoad(t: VmContext): Promise<void> {
  await snapshotUnderLoad(t, 'xfs');
}

/**
 * Writes through the whole disk (/dev/vda) that land in the traced partition
 * (/dev/vda1) are traced like writes through the partition: the snapshot
 * keeps the old data, and incremental mode marks the blocks changed — also
 * for a write that runs past the end of the partition.
 */
export async function wholeDiskWritesAreTraced(t: VmContext): Promise<void> {
  const disk = t.disks[0]!;
  const part = partition(t, disk, 96); // starts at sector 2048 = disk block 256
  t.mkfs('ext4', part, ['-E', 'lazy_itable_init=0,lazy_journal_init=0']);
  const mnt = t.mount(part);
  t.loadModule();
  const target = 96 * 256 - 16; // the last 16 blocks of the partition: free space of the filesystem
  const read = (dev: string, blk: number, n: number): string =>
    t.sh(`dd if=${dev} bs=4k skip=${blk} count=${n} iflag=direct status=none | sha256sum | cut -d' ' -f1`).stdout.trim();
  const before = read(part, target, 8);

  t.ioctl.setup(0, part, `${mnt}/.datto`, 16);
  t.sh(`dd if=/dev/urandom of=${disk} bs=4k seek=${256 + target} count=8 oflag=direct conv=notrunc status=none`);
  assert.notEqual(read(part, target, 8), before, 'the whole-disk write did not reach the partition');
  assert.equal(read('/dev/datto0', target, 8), before, 'a write through the whole disk changed the snapshot');

  t.ioctl.transitionInc(0);
  // a write inside the partition, and one that runs past its end
  t.sh(`dd if=/dev/urandom of=${disk} bs=4k seek=${256 + target + 8} count=4 oflag=direct conv=notrunc status=none`);
  t.sh(`dd if=/dev/urandom of=${disk} bs=4k seek=${256 + target + 12} count=8 oflag=direct conv=notrunc status=none`);
  t.ioctl.transitionSnap(0, `${mnt}/.datto2`);
  const changed = readCowIndex(`${mnt}/.datto`, 96 * 256);
  for (let b = target + 8; b < target + 16; b++) assert.ok(changed.has(b), `whole-disk write to partition block ${b} not marked changed`);
  t.ioctl.destroy(0);
  t.umount(mnt);
  t.unloadModule();
}

/**
 * A backup taken from a busy server: O_DIRECT reads of /dev/datto0 of
 * several sizes, in parallel (update-img's native engine), while the
 * origin's blocks get their first writes after the snapshot, return only
 * the data of the snapshot instant. A read that finds a block not yet saved
 * reads it from the origin; the write to that block must wait for it.
 */
export async function snapshotReadsDuringFirstWrites(t: VmContext): Promise<void> {
  const nat = loadNativeCopy();
  if (!('copyWindows' in nat)) t.skip(`update-img's native engine is not built (${nat.unavailable}): run \`npm run build:native\` on the host`);
  const copyWindows = nat.copyWindows;
  const part = partition(t, t.disks[0]!, 160);
  t.mkfs('ext4', part, ['-E', 'lazy_itable_init=0,lazy_journal_init=0']);
  const mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(FILE_BLOCKS, 1));
  t.sh('sync');
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 64);
  // the longest physically contiguous run of the file: the region the reads check
  const [start, len] = blockRuns(fileBlocks(t, `${mnt}/described`)).reduce((a, b) => (b[1] > a[1] ? b : a));
  assert.ok(len >= 2048, `described file's longest extent is ${len} blocks`);
  const B = 4096;
  const fd = openSync('/dev/datto0', 'r');
  const expected = Buffer.alloc(len * B);
  try {
    readSync(fd, expected, 0, expected.length, start * B);
  } finally {
    closeSync(fd);
  }
  // the snapshot instant: nothing has been written since setup
  assert.equal(t.sh(`dd if=${part} bs=1M skip=${start * B} count=${len * B} iflag=skip_bytes,count_bytes status=none | sha256sum`).stdout.split(' ')[0], createHash('sha256').update(expected).digest('hex'));

  const done = join(t.tmp, 'writers-done');
  t.sh(
    `(fio --name=w4k --filename=${mnt}/described --rw=randwrite --bs=4k --direct=1 --ioengine=psync --time_based --runtime=8 --output=/dev/null & ` +
      `fio --name=w64k --filename=${mnt}/described --rw=randwrite --bs=64k --direct=1 --ioengine=psync --time_based --runtime=8 --randseed=7 --output=/dev/null & ` +
      `dd if=/dev/urandom of=${mnt}/described bs=1M count=8 seek=16 conv=notrunc,fsync status=none & wait; touch ${done}) > /dev/null 2>&1 &`,
  );
  // rounds of 24 windows (1, 64 and 256 blocks at random places of the region), 4 reads in flight
  const sink = join(t.tmp, 'sink');
  t.sh(`truncate -s ${160 << 20} ${sink}`);
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  let rounds = 0;
  let reads = 0;
  const bad: string[] = [];
  while (!existsSync(done) && bad.length === 0) {
    const windows: [number, number][] = [];
    for (const size of [1, 64, 256]) for (let k = 0; k < 8; k++) windows.push([start + rand(len - size + 1), size]);
    const plan = new Float64Array(windows.flatMap(([first, n]) => [first, n, 1, first, n]));
    const res = await copyWindows('/dev/datto0', sink, plan, { parallel: 4, maxIo: 1 << 20, direct: true, snapshotBytes: 160 << 20 }, new BigInt64Array(4));
    const sfd = openSync(sink, 'r');
    const got = Buffer.alloc(256 * B);
    windows.forEach(([first, n], k) => {
      if (res[k] !== 0) bad.push(`read of blocks ${first}+${n}: errno ${res[k]}`);
      else if (readSync(sfd, got, 0, n * B, first * B) !== n * B || !got.subarray(0, n * B).equals(expected.subarray((first - start) * B, (first - start + n) * B))) bad.push(`read of blocks ${first}+${n} (round ${rounds}) returned data written after the snapshot`);
    });
    closeSync(sfd);
    reads += windows.length;
    rounds++;
  }
  t.log(`${reads} reads in ${rounds} rounds during the writes`);
  assert.deepEqual(bad.slice(0, 10), [], 'reads of /dev/datto0 during first writes');
  assert.ok(rounds >= 3, `only ${rounds} rounds of reads ran during the writes`);
  while (!existsSync(done)) await new Promise((r) => setTimeout(r, 200));
  assert.ok(badBlocks(`${mnt}/described`, 1).length > 1000, 'the writers did not change the origin');
  // and the whole region once more, after the writes
  const after = t.sh(`dd if=/dev/datto0 bs=1M skip=${start * B} count=${len * B} iflag=direct,skip_bytes,count_bytes status=none | sha256sum`).stdout.split(' ')[0];
  assert.equal(after, createHash('sha256').update(expected).digest('hex'), 'the snapshot changed');
  t.ioctl.destroy(0);
  t.umount(mnt);
  t.unloadModule();
}
