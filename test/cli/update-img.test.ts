// SPDX-License-Identifier: GPL-2.0-only
// update-img on the emulator: the updated image equals the new snapshot bit
// for bit, runs of blocks are merged into large I/Os, and every validation
// failure exits 3 without touching the image.
import { describe, expect, it } from 'vitest';
import { COW_HEADER_SIZE } from '../../src/abi/constants.js';
import { DriverError } from '../../src/driver/errors.js';
import type { Backend } from '../../src/driver/types.js';
import { decodeHeader, encodeHeader } from '../../src/format/index.js';
import { updateImg as updateImgCore } from '../../src/cli/update-img-core.js';
import { backupCycle, MIB, ok, readAll, writeAt, type Cycle } from './scenario.js';
import { dbdctl, updateImg } from './run-cli.js';

function expectImageIsSnapshot(c: Cycle): void {
  const img = readAll(c.b, c.image);
  const snap = readAll(c.b, '/dev/datto0');
  expect(img.length).toBe(snap.length);
  expect(Buffer.compare(Buffer.from(img), Buffer.from(snap))).toBe(0);
}

/** Make a modified copy of the old COW file in the scratch area. */
function craftedCow(c: Cycle, edit: (h: ReturnType<typeof decodeHeader>) => void): string {
  const bytes = readAll(c.b, c.oldCow);
  const h = decodeHeader(bytes);
  edit(h);
  encodeHeader(h, bytes);
  c.emu.createFile('/backup/crafted.datto', bytes.length);
  writeAt(c.b, '/backup/crafted.datto', 0, bytes);
  return '/backup/crafted.datto';
}

describe('update-img applies the changed blocks', () => {
  it('makes the image equal to the new snapshot (scattered, clustered, unaligned writes)', async () => {
    const c = await backupCycle({
      writes: [
        [4096 * 10, 4096],
        [4096 * 11, 4096], // adjacent to the previous one
        [5 * MIB + 100, 3000], // unaligned, inside one block
        [20 * MIB, 2 * MIB + 4096], // a long run: 513 blocks
        [63 * MIB + 4095, 2], // straddles two blocks
      ],
    });
    const before = readAll(c.b, c.image);
    expect(Buffer.compare(Buffer.from(before), Buffer.from(readAll(c.b, '/dev/datto0')))).not.toBe(0);
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], c.b);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^snapshot is 16384 blocks large\ncopying blocks\ncopying complete: 518 blocks changed, 0 errors\ncopied 2\.0 MiB in 6 I\/Os, [0-9.]+ s \([^)]+\)\n$/,
    );
    expectImageIsSnapshot(c);
  });

  it('merges adjacent blocks into I/Os of at most --max-io bytes', async () => {
    const c = await backupCycle({ writes: [[MIB, 300 * 4096]] });
    const r = updateImgCore(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image });
    expect(r).toMatchObject({ changedBlocks: 300, copiedBlocks: 300, errorBlocks: 0, ios: 2, bytesCopied: 300 * 4096 });
    expectImageIsSnapshot(c);
    const small = await backupCycle({ writes: [[MIB, 300 * 4096]] });
    const j = await updateImg(['--json', '--max-io', '65536', '/dev/datto0', small.oldCow, small.image], small.b);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, exitCode: 0, changedBlocks: 300, copiedBlocks: 300, ios: 19, cowSeqid: 1, snapshotSeqid: 2 });
    expectImageIsSnapshot(small);
  });

  it('copies the partial last block of a volume whose size is not a multiple of 4 KiB', async () => {
    // 4095 whole blocks + 1536 bytes: the partial block still has an index entry (see SPEC P14).
    const size = 16 * MIB - 2560;
    const c = await backupCycle({ sizeBytes: size, writes: [[size - 700, 700]], falloc: 2 });
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], c.b);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('snapshot is 4096 blocks large');
    expect(r.stdout).toContain('copying complete: 1 blocks changed, 0 errors');
    expectImageIsSnapshot(c);
  });

  it('includes blocks written while the first snapshot was active (SPEC §2.4: they stay marked)', async () => {
    const c = await backupCycle({ snapshotWrites: [[3 * MIB, 2 * MIB]], writes: [[9 * MIB, 4096]] });
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], c.b);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('copying complete: 513 blocks changed, 0 errors');
    expectImageIsSnapshot(c);
  });

  it('does several cycles in a row (each old COW file against the next snapshot)', async () => {
    const c = await backupCycle({ writes: [[0, 4096]] });
    expect((await updateImg(['/dev/datto0', c.oldCow, c.image], c.b)).code).toBe(0);
    await ok(['transition-to-incremental', '0'], c.b);
    c.emu.write('/dev/sda1', 7 * MIB, new Uint8Array(8192).fill(0xab));
    await ok(['transition-to-snapshot', '-f', '16', '/mnt/.datto3', '0'], c.b);
    const r = await updateImg(['/dev/datto0', c.newCow, c.image], c.b);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('copying complete: 2 blocks changed, 0 errors');
    expectImageIsSnapshot(c);
  });

  it('draws a progress bar on a terminal (stderr) and not otherwise', async () => {
    const c = await backupCycle({ writes: [[MIB, 64 * 4096]] });
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], c.b, true);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^\r\[[#-]{24}\] /);
    expect(r.stderr).toMatch(/\r\[#{24}\] 100%  256 KiB \/ 256 KiB  [0-9.]+ [KMG]?i?B\/s  ETA 0:00\x1b\[K\n$/);
    const c2 = await backupCycle({ writes: [[MIB, 64 * 4096]] });
    const quiet = await updateImg(['--no-progress', '/dev/datto0', c2.oldCow, c2.image], c2.b, true);
    expect(quiet.stderr).toBe('');
  });

  it('exits 1 and lists failed blocks when reads of the snapshot fail, copying the rest', async () => {
    const c = await backupCycle({ writes: [[MIB, 3 * 4096], [3 * MIB, 4096]] });
    // The snapshot device fails reads that touch block 257 (EIO), as a bad sector would.
    const failing: Backend = {
      ...c.b,
      io: {
        openReadWrite: (path) => c.b.io.openReadWrite(path),
        realpath: (path) => c.b.io.realpath(path),
        exists: (path) => c.b.io.exists(path),
        openRead: (path) => {
          const f = c.b.io.openRead(path);
          if (path !== '/dev/datto0') return f;
          return {
            size: () => f.size(),
            write: (buf, off) => f.write(buf, off),
            close: () => f.close(),
            read: (buf, off) => {
              if (off <= 257 * 4096 && off + buf.length > 257 * 4096) throw DriverError.of('EIO', 'read');
              return f.read(buf, off);
            },
          };
        },
      },
    };
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], failing);
    expect(r.stderr).toBe('update-img: 1 of 4 changed blocks could not be copied: the image is incomplete\n');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('copying complete: 4 blocks changed, 1 errors\n');
    expect(r.stdout).toContain('failed: block 257 (byte offset 1052672): EIO\n');
    expect(r.stderr).toBe('update-img: 1 of 4 changed blocks could not be copied: the image is incomplete\n');
    const img = readAll(c.b, c.image);
    const snap = readAll(c.b, '/dev/datto0');
    for (const b of [256, 258, 768]) {
      expect(Buffer.compare(Buffer.from(img.subarray(b * 4096, b * 4096 + 4096)), Buffer.from(snap.subarray(b * 4096, b * 4096 + 4096))), `block ${b}`).toBe(0);
    }
    const j = await updateImg(['--json', '/dev/datto0', c.oldCow, c.image], failing);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, exitCode: 1, errorBlocks: 1, copiedBlocks: 3, failures: [{ block: 257, code: 'EIO' }] });
  });
});

describe('update-img flushes the image', () => {
  function withImageSync(c: Cycle, sync: () => void): Backend {
    return {
      ...c.b,
      io: {
        openRead: (p) => c.b.io.openRead(p),
        realpath: (p) => c.b.io.realpath(p),
        exists: (p) => c.b.io.exists(p),
        openReadWrite: (p) => {
          const f = c.b.io.openReadWrite(p);
          return { size: () => f.size(), read: (b, o) => f.read(b, o), write: (b, o) => f.write(b, o), close: () => f.close(), sync };
        },
      },
    };
  }

  it('calls sync once after copying', async () => {
    const c = await backupCycle({ writes: [[0, 8192]] });
    let syncs = 0;
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], withImageSync(c, () => syncs++));
    expect(r.code).toBe(0);
    expect(syncs).toBe(1);
  });

  it('exits 1 when the flush fails', async () => {
    const c = await backupCycle({ writes: [[0, 8192]] });
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], withImageSync(c, () => {
      throw DriverError.of('EIO', 'fsync');
    }));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('update-img: flushing image /backup/img to disk failed: EIO\nhint: the image may be incomplete\nupdate-img: the image is incomplete\n');
  });
});

describe('update-img validation: exit 3, image untouched', () => {
  const cases: [string, (c: Cycle) => Promise<string[]> | string[], RegExp, string][] = [
    ['not a snapshot device', (c) => ['/dev/sda1', c.oldCow, c.image], /does not appear to be a dattobd snapshot device/, 'NOT_SNAPSHOT_DEVICE'],
    [
      'snapshot device missing (device is incremental)',
      async (c) => {
        await ok(['transition-to-incremental', '0'], c.b);
        return ['/dev/datto0', c.oldCow, c.image];
      },
      /cannot open snapshot device \/dev\/datto0: ENOENT/,
      'OPEN_FAILED',
    ],
    ['missing image', (c) => ['/dev/datto0', c.oldCow, '/backup/none.img'], /cannot open image file .*ENOENT\nhint: the image must already exist/, 'OPEN_FAILED'],
    [
      'not a COW file',
      (c) => {
        c.emu.createFile('/backup/junk', 8192);
        return ['/dev/datto0', '/backup/junk', c.image];
      },
      /invalid magic number from cow file/,
      'BAD_MAGIC',
    ],
    ['uuid of another series', (c) => ['/dev/datto0', craftedCow(c, (h) => (h.uuid[0] = (h.uuid[0]! + 1) & 0xff)), c.image], /cow file uuid does not match snapshot/, 'UUID_MISMATCH'],
    ['wrong seqid', (c) => ['/dev/datto0', craftedCow(c, (h) => (h.seqid = 5)), c.image], /does not immediately follow.*cow file seqid 5, snapshot seqid 2/, 'SEQID_MISMATCH'],
    ['COW file not cleanly closed', (c) => ['/dev/datto0', craftedCow(c, (h) => (h.flags &= ~1)), c.image], /was not closed cleanly/, 'NOT_CLEAN'],
    ['COW file not index-only', (c) => ['/dev/datto0', craftedCow(c, (h) => (h.flags &= ~2)), c.image], /is a snapshot file, not an incremental/, 'NOT_INDEX_ONLY'],
    ['current (in-use) COW file', (c) => ['/dev/datto0', c.newCow, c.image], /uuid|seqid|not closed cleanly/, ''],
    [
      'image smaller than the snapshot',
      (c) => {
        c.emu.createFile('/backup/small.img', MIB);
        return ['/dev/datto0', c.oldCow, '/backup/small.img'];
      },
      /image \/backup\/small.img is 1048576 bytes, the snapshot is 67108864/,
      'IMAGE_TOO_SMALL',
    ],
    [
      'corrupted index entry after valid ones',
      (c) => {
        const p = craftedCow(c, () => {});
        writeAt(c.b, p, COW_HEADER_SIZE + 8 * 16003, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 255]));
        return ['/dev/datto0', p, c.image];
      },
      /index entry of block 16003 is beyond 2\^53-1/,
      'BAD_COW_FILE',
    ],
  ];
  for (const [what, args, msg, code] of cases) {
    it(what, async () => {
      const c = await backupCycle({ writes: [[0, 4096], [MIB, 8192]] });
      const argv = await args(c);
      const before = readAll(c.b, argv[2]!.startsWith('/backup/none') ? c.image : argv[2]!);
      const r = await updateImg(argv, c.b);
      expect(r.code).toBe(3);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).toMatch(/update-img: the image was not modified\n$/);
      const after = readAll(c.b, argv[2]!.startsWith('/backup/none') ? c.image : argv[2]!);
      expect(Buffer.compare(Buffer.from(before), Buffer.from(after))).toBe(0);
      if (code) {
        const j = await updateImg(['--json', ...argv], c.b);
        expect(j.code).toBe(3);
        expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, exitCode: 3, imageWritten: false, error: { code } });
      }
    });
  }

  it('a failed device', async () => {
    const c = await backupCycle({ writes: [[0, 4096]], falloc: 1 });
    // 1 MiB of COW file holds ~220 blocks after the index: overwriting 2 MiB fails the device (EFBIG).
    c.emu.write('/dev/sda1', 0, new Uint8Array(2 * MIB).fill(1));
    const info = await dbdctl(['--json', 'info', '0'], c.b);
    expect(JSON.parse(info.stdout).error).toBe(-27);
    const before = readAll(c.b, c.image);
    const r = await updateImg(['/dev/datto0', c.oldCow, c.image], c.b);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/has failed \(error -27\)/);
    expect(Buffer.compare(Buffer.from(before), Buffer.from(readAll(c.b, c.image)))).toBe(0);
  });

  it('usage errors exit 2', async () => {
    const r = await updateImg(['/dev/datto0', '/c']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("missing required argument 'image-file'");
    expect((await updateImg(['--max-io', '1000', 'a', 'b', 'c'])).code).toBe(2);
  });
});
