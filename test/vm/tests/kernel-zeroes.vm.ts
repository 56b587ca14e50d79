// SPDX-License-Identifier: GPL-2.0-only
// dattobd.ko and data-less writes (SPEC §0): write-zeroes (BLKZEROOUT, with
// and without NOUNMAP) and discards of live blocks must not change the
// snapshot; in incremental mode they are marked changed.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../guest/api.js';
import { blockHashes, blockRuns, describedFile, fileBlocks, partition, readCowIndex } from '../../kernel/vm/helpers.js';

export async function zeroesAndDiscardsKeepTheSnapshot(t: VmContext): Promise<void> {
  const part = partition(t, t.disks[0]!, 96);
  t.mkfs('ext4', part);
  const mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(2048, 1));
  t.sh('sync');
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto`, 40);
  const before = blockHashes('/dev/datto0');
  const cow = fileBlocks(t, `${mnt}/.datto`);
  const [[start, len]] = blockRuns(fileBlocks(t, `${mnt}/described`)) as [[number, number]];
  assert.ok(len >= 96, `described file run too short: ${len}`);
  // write-zeroes with NOUNMAP (blkdiscard -z), discard, and zero-range
  // through the filesystem, all on live pre-snapshot data
  t.sh(`blkdiscard -f -z -o ${start * 4096} -l ${32 * 4096} ${part}`);
  t.sh(`blkdiscard -f -o ${(start + 32) * 4096} -l ${32 * 4096} ${part}`, { allowFail: true });
  t.sh(`fallocate -z -o ${64 * 4096} -l ${32 * 4096} ${mnt}/described && sync`);
  t.sh('blockdev --flushbufs /dev/datto0 && echo 3 > /proc/sys/vm/drop_caches');
  const after = blockHashes('/dev/datto0');
  const diff = after.map((h, i) => (h !== before[i] && !cow.has(i) ? i : -1)).filter((i) => i >= 0);
  assert.deepEqual(diff.slice(0, 20), [], `${diff.length} snapshot blocks changed by zeroes/discards`);
  assert.equal(t.ioctl.info(0).error, 0);

  // incremental: zeroed blocks are marked changed
  t.ioctl.transitionInc(0);
  t.sh(`blkdiscard -f -z -o ${(start + 100) * 4096} -l ${16 * 4096} ${part}`);
  t.ioctl.transitionSnap(0, `${mnt}/.datto2`, 40);
  const idx = readCowIndex(`${mnt}/.datto`, (96 * 2048) / 8);
  const unmarked = [];
  for (let b = start + 100; b < start + 116; b++) if (!idx.has(b)) unmarked.push(b);
  assert.deepEqual(unmarked, [], 'write-zeroes in incremental mode must mark blocks changed');
  assert.equal(t.ioctl.info(0).falloc_size, 40 * 1048576);
  t.ioctl.destroy(0);
  t.umount(mnt);
  t.unloadModule();
}
