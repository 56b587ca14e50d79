// SPDX-License-Identifier: GPL-2.0-only
import { describe, expect, it } from 'vitest';
import { Emulator } from '../../emulator/index.js';
import { decodeHeader, geometry, readIndexEntry, validateCowFile } from '../../src/format/index.js';
import { expectBytes, pattern } from './helpers.js';

const TiB = 2 ** 40;

describe('a 4 TiB volume (sparse everything)', () => {
  it('snapshot, COW at an 8 GiB file offset, transition, clean close, reload', () => {
    const size = 4 * TiB;
    const e = new Emulator();
    e.addVolume({ path: '/dev/sdc1', sizeBytes: size });
    e.mount('/dev/sdc1', '/data');
    const g = geometry(size / 512);
    expect(g.dataOffset).toBe(4096 + 262144 * 32768);
    const last = size - 8192;
    const before = pattern(8192, 1);
    e.write('/dev/sdc1', last, before);
    e.ctl.setupSnapshot({ minor: 0, bdev: '/dev/sdc1', cow: '/data/.datto', fallocatedSpace: 0, cacheSize: 0 });
    expect(e.ctl.info(0).fallocSize).toBe(Math.floor(size / 10));
    e.write('/dev/sdc1', last, pattern(8192, 2));
    expectBytes(e.readSnapshot(0, last, 8192), before);
    const file = e.io.openRead('/data/.datto');
    const saved = new Uint8Array(4096);
    file.read(saved, g.firstDataBlk * 4096);
    expectBytes(saved, before.subarray(0, 4096));
    file.close();
    e.ctl.transitionToIncremental(0);
    expect(e.ctl.info(0).fallocSize).toBe(g.dataOffset);
    e.umount('/data');
    e.mount('/dev/sdc1', '/data', { readOnly: true });
    const f2 = e.io.openRead('/data/.datto');
    const head = new Uint8Array(4096);
    f2.read(head, 0);
    expect(f2.size()).toBe(g.dataOffset);
    // the index was flushed by the clean close: the saved block's entry points at the first data block
    const b = last / 4096;
    const entry = new Uint8Array(8);
    f2.read(entry, 4096 + 8 * b);
    const idx = new Uint8Array(4096 + 8);
    idx.set(entry, 4096);
    expect(readIndexEntry(idx, 0)).toBe(g.firstDataBlk);
    entry.fill(0);
    f2.read(entry, 4096 + 8 * (b + 1));
    idx.set(entry, 4096);
    expect(readIndexEntry(idx, 0)).toBe(g.firstDataBlk + 1);
    f2.close();
    expect(decodeHeader(head).flags).toBe(3);
    expect(validateCowFile(head, { sizeSectors: size / 512, fileLength: g.dataOffset, expect: 'incremental', requireClean: true }).errors).toEqual([]);
  });
});
