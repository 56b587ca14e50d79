// SPDX-License-Identifier: GPL-2.0-only
// dattobd.ko transitions (SPEC §3.5): snapshot -> incremental -> snapshot.
// The old COW file must mark every block written in between, so that a
// full image of the first snapshot plus the marked blocks of the second
// snapshot equals the second snapshot block for block (what update-img
// does); repeated for several cycles of the series.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../guest/api.js';
import {
  applyChangedBlocks,
  blockHashes,
  dataOffset,
  describedFile,
  errCode,
  fileBlocks,
  overwriterScript,
  partition,
  readCowHeader,
  readCowIndex,
} from '../../kernel/vm/helpers.js';

const PART_MIB = 96;

const CYCLES = 2;

async function incrementalCycle(t: VmContext, fs: 'ext4' | 'xfs', partMiB: number): Promise<void> {
  const sectors = partMiB * 2048;
  const blocks = sectors / 8;
  const part = partition(t, t.disks[0]!, partMiB);
  const image = t.disks[1]!;
  t.mkfs(fs, part);
  const mnt = t.mount(part);
  writeFileSync(join(mnt, 'described'), describedFile(2048, 1));
  t.sh('sync');
  t.loadModule();
  t.ioctl.setup(0, part, `${mnt}/.datto1`, 32);
  const uuid = t.ioctl.info(0).uuid;
  // full backup of the first snapshot
  t.sh(`dd if=/dev/datto0 of=${image} bs=1M status=none`, { timeoutMs: 300_000 });

  for (let seq = 1; seq <= CYCLES; seq++) {
    const oldCow = `${mnt}/.datto${seq}`;
    // writes while the snapshot is still active belong to the next increment too
    t.sh(`dd if=/dev/urandom of=${mnt}/during${seq} bs=64k count=16 status=none && sync`);
    t.ioctl.transitionInc(0);
    let info = t.ioctl.info(0);
    assert.equal(info.state, 2);
    assert.equal(existsSync('/dev/datto0'), false, '/dev/datto0 must go away in incremental mode');
    assert.equal(info.falloc_size, dataOffset(sectors), 'COW file truncated to the index');
    if (seq === 1) {
      // state-2 cells
      assert.throws(() => t.ioctl.transitionInc(0), (e) => errCode(e) === 'EINVAL');
      assert.throws(() => t.ioctl.expand(0, 1), (e) => errCode(e) === 'EINVAL');
      assert.throws(() => t.ioctl.autoExpand(0, 1, 0), (e) => errCode(e) === 'EINVAL');
      t.ioctl.reconfigure(0, 4 << 20);
    }

    const ow = overwriterScript(t, `${mnt}/described`, 2048, seq + 1, 1500, 7 + seq);
    t.sh(
      [
        `${process.execPath} ${ow} &`,
        `dd if=/dev/urandom of=${mnt}/new${seq} bs=64k count=64 status=none &`,
        `dd if=/dev/urandom of=${mnt}/direct${seq} bs=4k count=512 oflag=direct status=none &`,
        'wait',
        'sync',
      ].join('\n'),
      { timeoutMs: 300_000 },
    );

    t.ioctl.transitionSnap(0, `${mnt}/.datto${seq + 1}`);
    info = t.ioctl.info(0);
    assert.equal(info.state, 3);
    assert.equal(info.seqid, seq + 1);
    assert.equal(info.uuid, uuid, 'the series keeps its uuid');
    assert.equal(info.cow, `/.datto${seq + 1}`);
    assert.equal(info.falloc_size, 32 * 1048576, 'transition without size reuses the previous size');

    // the old file is closed clean and index-only, ready for update-img
    const hdr = readCowHeader(oldCow);
    assert.equal(hdr.magic, 4776);
    assert.equal(hdr.flags & 3, 3, `old COW file flags ${hdr.flags}: want CLEAN|INDEX_ONLY`);
    assert.equal(hdr.seqid, BigInt(seq));
    assert.equal(hdr.fsize, BigInt(dataOffset(sectors)));
    const changed = readCowIndex(oldCow, blocks);
    assert.equal(BigInt(changed.size), hdr.nrChanged, 'nr_changed_blocks counts the marked entries');
    const n = applyChangedBlocks('/dev/datto0', image, changed.keys());
    t.log(`cycle ${seq}: update-img copied ${n} blocks`);

    // image == new snapshot, block for block (the old COW file's blocks included); the new
    // COW file's own blocks are left out: the module writes them without copy-on-write while
    // this runs, so the snapshot does not keep their raw contents (see fileBlocks)
    const snap = blockHashes('/dev/datto0');
    const img = blockHashes(image).slice(0, snap.length);
    const own = fileBlocks(t, `${mnt}/.datto${seq + 1}`);
    const diff = snap.map((h, i) => (h !== img[i] && !own.has(i) ? i : -1)).filter((i) => i >= 0);
    assert.deepEqual(diff.slice(0, 20), [], `cycle ${seq}: ${diff.length} blocks changed since the previous snapshot are not marked in ${oldCow}`);
    t.sh(`rm ${oldCow}`);
  }

  t.ioctl.destroy(0);
  assert.equal(existsSync(`${mnt}/.datto${CYCLES + 1}`), false);
  t.umount(mnt);
  t.unloadModule();
}

export async function incrementalCycleExt4(t: VmContext): Promise<void> {
  await incrementalCycle(t, 'ext4', PART_MIB);
}

export async function incrementalCycleXfs(t: VmContext): Promise<void> {
  await incrementalCycle(t, 'xfs', 320);
}
