// SPDX-License-Identifier: GPL-2.0-only
// update-img's parallel copy (updateImgAsync, what the CLI runs): copies
// really overlap, small unchanged gaps are read over but never written, a
// failing read or write in the middle of the copy loses only its blocks, and
// the node:fs implementation copies real files.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DriverError } from '../../src/driver/errors.js';
import type { Backend } from '../../src/driver/types.js';
import { copyWindows, DEFAULT_PARALLEL, defaultParallel, nodeAsyncIo, updateImgAsync, type AsyncBlockFile, type AsyncDataIo } from '../../src/cli/update-img-core.js';
import { backupCycle, MIB, readAll, type Cycle } from './scenario.js';
import { updateImg as runUpdateImg } from './run-cli.js';
import { main as updateImgMain } from '../../src/cli/update-img-main.js';

const B = 4096;

/**
 * AsyncDataIo over a backend's synchronous files, with every read and write
 * completing after a timer (so copies overlap for real), recording what was
 * written and how many reads were in flight at most; `failRead`/`failWrite`
 * pick I/Os that fail with EIO.
 */
function slowIo(
  b: Backend,
  o: { failRead?: (off: number, len: number) => boolean; failWrite?: (off: number, len: number) => boolean; delayMs?: number } = {},
): AsyncDataIo & { maxReadsInFlight: number; writes: [number, number][]; reads: [number, number][] } {
  let inFlight = 0;
  const later = <T>(f: () => T): Promise<T> =>
    new Promise((resolve, reject) =>
      setTimeout(() => {
        try {
          resolve(f());
        } catch (e) {
          reject(e);
        }
      }, o.delayMs ?? 1),
    );
  const io = {
    maxReadsInFlight: 0,
    writes: [] as [number, number][],
    reads: [] as [number, number][],
    openRead: async (p: string) => wrap(b.io.openRead(p)),
    openReadWrite: async (p: string) => wrap(b.io.openReadWrite(p)),
  };
  const wrap = (f: ReturnType<Backend['io']['openRead']>): AsyncBlockFile => ({
    read: async (buf, off) => {
      inFlight++;
      io.maxReadsInFlight = Math.max(io.maxReadsInFlight, inFlight);
      try {
        return await later(() => {
          io.reads.push([off, buf.length]);
          if (o.failRead?.(off, buf.length)) throw DriverError.of('EIO', 'read');
          return f.read(buf, off);
        });
      } finally {
        inFlight--;
      }
    },
    write: (buf, off) =>
      later(() => {
        if (o.failWrite?.(off, buf.length)) throw DriverError.of('EIO', 'write');
        io.writes.push([off, buf.length]);
        return f.write(buf, off);
      }),
    sync: async () => {},
    close: async () => f.close(),
  });
  return io;
}

const touches = (block: number) => (off: number, len: number) => off <= block * B && off + len > block * B;

function expectSameBlocks(c: Cycle, blocks: number[], same = true): void {
  const img = readAll(c.b, c.image);
  const snap = readAll(c.b, '/dev/datto0');
  for (const b of blocks) {
    const eq = Buffer.compare(Buffer.from(img.subarray(b * B, (b + 1) * B)), Buffer.from(snap.subarray(b * B, (b + 1) * B))) === 0;
    expect(eq, `block ${b}`).toBe(same);
  }
}

/** Changed blocks of a cycle written as single blocks: 10, 12, 14 (gaps of 1), 100, 300..303, 5000. */
const scattered: [number, number][] = [10, 12, 14, 100, 300, 301, 302, 303, 5000].map((b) => [b * B, B]);

describe('copy windows', () => {
  it('joins runs separated by small gaps, up to the largest I/O', () => {
    const runs: [number, number][] = [[0, 2], [3, 1], [10, 4], [100, 1], [101, 3]];
    expect([...copyWindows(runs, 256, 0)].map((w) => [w.first, w.count, w.parts.length])).toEqual([[0, 2, 1], [3, 1, 1], [10, 4, 1], [100, 4, 2]]); // adjacent runs (split at maxRun) may join
    expect([...copyWindows(runs, 256, 6)]).toEqual([
      { first: 0, count: 14, parts: [[0, 2], [3, 1], [10, 4]] },
      { first: 100, count: 4, parts: [[100, 1], [101, 3]] },
    ]);
    // a window never exceeds maxRun blocks
    expect([...copyWindows(runs, 8, 6)].map((w) => [w.first, w.count])).toEqual([[0, 4], [10, 4], [100, 4]]);
  });
});

describe('updateImgAsync', () => {
  it('keeps several reads in flight and makes the image equal to the snapshot', async () => {
    const c = await backupCycle({ writes: scattered });
    const io = slowIo(c.b);
    const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: io, parallel: 4, mergeGapBytes: 0 });
    expect(r).toMatchObject({ changedBlocks: 9, copiedBlocks: 9, errorBlocks: 0, ios: 6, bytesCopied: 9 * B, bytesRead: 9 * B });
    expect(io.maxReadsInFlight).toBe(4);
    expect(Buffer.compare(Buffer.from(readAll(c.b, c.image)), Buffer.from(readAll(c.b, '/dev/datto0')))).toBe(0);
  });

  it('without --parallel keeps the default number of copies in flight: four per CPU, 4 to 16', async () => {
    expect([0, 1, 2, 3, 4, 64].map((cpus) => defaultParallel(cpus))).toEqual([4, 4, 8, 12, 16, 16]);
    expect(DEFAULT_PARALLEL).toBe(defaultParallel(availableParallelism()));
    // 40 single changed blocks 400 KiB apart (more than the merge gap): 40 windows, more than any default
    const c = await backupCycle({ writes: Array.from({ length: 40 }, (_, i): [number, number] => [i * 100 * B, B]) });
    const io = slowIo(c.b);
    const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: io });
    expect(r).toMatchObject({ copiedBlocks: 40, errorBlocks: 0, ios: 40 });
    expect(io.maxReadsInFlight).toBe(DEFAULT_PARALLEL);
  });

  it('reads over small gaps but writes only the changed blocks', async () => {
    const c = await backupCycle({ writes: scattered });
    // block 11 and 13 differ between image and snapshot although unchanged: a write there would show
    const f = c.b.io.openReadWrite(c.image);
    f.write(new Uint8Array(B).fill(0xee), 11 * B);
    f.write(new Uint8Array(B).fill(0xee), 13 * B);
    f.close();
    const io = slowIo(c.b);
    const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: io, mergeGapBytes: 2 * B });
    // windows: 10..14 (gaps 11, 13), 100, 300..303, 5000
    expect(r).toMatchObject({ copiedBlocks: 9, errorBlocks: 0, ios: 4, bytesCopied: 9 * B, bytesRead: 11 * B });
    expect(io.reads.map(([off, len]) => [off / B, len / B]).sort((a, b) => a[0]! - b[0]!)).toEqual([[10, 5], [100, 1], [300, 4], [5000, 1]]);
    const written = new Set(io.writes.flatMap(([off, len]) => Array.from({ length: len / B }, (_, i) => off / B + i)));
    expect([...written].sort((a, b) => a - b)).toEqual([10, 12, 14, 100, 300, 301, 302, 303, 5000]);
    expectSameBlocks(c, [10, 12, 14, 100, 300, 303, 5000]);
    expect(readAll(c.b, c.image).subarray(11 * B, 12 * B).every((x) => x === 0xee)).toBe(true);
  });

  it('plans the same reads and writes from the runs kept by validation as from a second pass over the index', async () => {
    // runs across index chunk boundaries (chunks of 7 entries below) and longer than the largest I/O
    const c = await backupCycle({ writes: [...scattered, [6 * B, 2 * B], [2000 * B, 600 * B], [2600 * B + 100, 10]] });
    const plan = async (o: { cachedRuns?: number; indexChunkEntries?: number }) => {
      const io = slowIo(c.b);
      const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: io, mergeGapBytes: 2 * B, ...o });
      const { seconds: _s, ...rest } = r;
      const sorted = (xs: [number, number][]) => [...xs].sort((a, b) => a[0] - b[0]);
      return { r: rest, reads: sorted(io.reads), writes: sorted(io.writes) };
    };
    const kept = await plan({});
    expect(kept.r).toMatchObject({ changedBlocks: 612, copiedBlocks: 612, errorBlocks: 0 });
    expect(kept.reads.filter(([off]) => off >= 2000 * B && off < 3000 * B)).toEqual([[2000 * B, 256 * B], [2256 * B, 256 * B], [2512 * B, 89 * B]]);
    expect(await plan({ cachedRuns: 0, indexChunkEntries: 7 })).toEqual(kept);
    expect(await plan({ cachedRuns: 3, indexChunkEntries: 7 })).toEqual(kept); // more runs than kept: read again
    expect(await plan({ cachedRuns: 3 })).toEqual(kept);
    expectSameBlocks(c, [6, 7, 10, 12, 14, 2000, 2599, 2600]);
  });

  it('validation skips zero pages and granules of the index without missing the blocks at their edges', async () => {
    const edges = [0, 63, 64, 511, 512, 513, 4095, 4096, 8191, 16383];
    const c = await backupCycle({ writes: edges.map((b) => [b * B, B] as [number, number]) });
    for (const o of [{}, { cachedRuns: 0 }, { indexChunkEntries: 100 }]) {
      const io = slowIo(c.b);
      const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: io, mergeGapBytes: 0, ...o });
      expect(r).toMatchObject({ changedBlocks: edges.length, copiedBlocks: edges.length, errorBlocks: 0 });
      const written = io.writes.flatMap(([off, len]) => Array.from({ length: len / B }, (_, i) => off / B + i));
      expect(written.sort((a, b) => a - b)).toEqual(edges);
    }
    expectSameBlocks(c, edges);
  });

  it('a read error in the middle of a parallel copy loses only the failing block', async () => {
    const c = await backupCycle({ writes: scattered });
    const io = slowIo(c.b, { failRead: touches(301) });
    const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: io, parallel: 8 });
    expect(r).toMatchObject({ changedBlocks: 9, copiedBlocks: 8, errorBlocks: 1, failures: [{ block: 301, code: 'EIO' }] });
    expectSameBlocks(c, [10, 12, 14, 100, 300, 302, 303, 5000]);
    expectSameBlocks(c, [301], false);
  });

  it('a failing read of a merged window falls back to its runs; a failing write loses only its blocks', async () => {
    const c = await backupCycle({ writes: scattered });
    // the window 10..14 fails as a whole (it covers the gap block 11), its runs alone succeed
    const io = slowIo(c.b, { failRead: (off, len) => len > B && touches(11)(off, len), failWrite: touches(303) });
    const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: io, mergeGapBytes: 2 * B });
    expect(r).toMatchObject({ copiedBlocks: 8, errorBlocks: 1, failures: [{ block: 303, code: 'EIO' }] });
    expectSameBlocks(c, [10, 12, 14, 100, 300, 301, 302, 5000]);
    expectSameBlocks(c, [303], false);
  });

  it('through the CLI: failed blocks listed in block order, exit 1', async () => {
    const c = await backupCycle({ writes: scattered });
    let stdout = '';
    let stderr = '';
    const code = await updateImgMain(['--parallel', '3', '/dev/datto0', c.oldCow, c.image], {
      env: {},
      backend: c.b,
      dataIo: slowIo(c.b, { failRead: (off, len) => touches(5000)(off, len) || touches(12)(off, len) }),
      stdout: (s) => (stdout += s),
      stderr: (s) => (stderr += s),
      stderrIsTTY: false,
    });
    expect(code).toBe(1);
    expect(stdout).toContain('copying complete: 9 blocks changed, 2 errors\n');
    expect(stdout).toContain('failed: block 12 (byte offset 49152): EIO\nfailed: block 5000 (byte offset 20480000): EIO\n');
    expect(stderr).toBe('update-img: 2 of 9 changed blocks could not be copied: the image is incomplete\n');
  });

  it('validation still comes first: nothing is opened for the copy, nothing written', async () => {
    const c = await backupCycle({ writes: scattered });
    const io = slowIo(c.b);
    const before = readAll(c.b, c.image);
    await expect(updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.newCow, image: c.image, dataIo: io })).rejects.toMatchObject({ name: 'UpdateImgError' });
    expect(io.reads.length + io.writes.length).toBe(0);
    expect(Buffer.compare(Buffer.from(before), Buffer.from(readAll(c.b, c.image)))).toBe(0);
  });

  it('rejects bad --parallel and --merge-gap values as usage errors', async () => {
    for (const bad of [['--parallel', '0'], ['--parallel', 'x'], ['--parallel', '257'], ['--merge-gap', '1000'], ['--merge-gap', '-4096']]) {
      const r = await runUpdateImg([...bad, 'a', 'b', 'c']);
      expect(r.code, bad.join(' ')).toBe(2);
    }
  });
});

describe('nodeAsyncIo', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('copies between real files with positional reads and writes, and reports open errors', async () => {
    dir = mkdtempSync(join(tmpdir(), 'uimg-'));
    const src = join(dir, 'src');
    const dst = join(dir, 'dst');
    const data = Buffer.alloc(3 * MIB);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    writeFileSync(src, data);
    writeFileSync(dst, Buffer.alloc(3 * MIB));
    const io = nodeAsyncIo((p) => (p === '/dev/datto0' ? src : p));
    const r = await io.openRead('/dev/datto0');
    const w = await io.openReadWrite(dst);
    const buf = new Uint8Array(2 * MIB);
    expect(await r.read(buf, MIB - B)).toBe(2 * MIB);
    expect(await w.write(buf.subarray(0, B), 5 * B)).toBe(B);
    expect(await w.write(buf, MIB)).toBe(2 * MIB); // a large write goes through the thread pool
    expect(await r.read(buf, 3 * MIB - 100)).toBe(100); // short only at end of file
    await w.sync?.();
    await r.close();
    await w.close();
    await w.close(); // idempotent
    const out = readFileSync(dst);
    expect(out.subarray(5 * B, 6 * B).equals(data.subarray(MIB - B, MIB))).toBe(true);
    expect(out.subarray(0, 5 * B).every((x) => x === 0)).toBe(true);
    expect(out.subarray(MIB, 3 * MIB).equals(data.subarray(MIB - B, 3 * MIB - B))).toBe(true);
    await expect(io.openRead(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
