// SPDX-License-Identifier: GPL-2.0-only
// update-img's native copy engine (src/native/copy_engine.cc, copyWindows on
// POSIX threads) against the JavaScript engine on the same input: validation
// on the emulator, data copied between real temp files standing for the
// snapshot device and the image. Both engines must give the same result
// (blocks copied and failed, I/Os, bytes read and copied) and byte-identical
// images, with O_DIRECT reads or buffered ones.
import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { COW_BLOCK_SIZE as B } from '../../src/abi/constants.js';
import { DEFAULT_MERGE_GAP, nodeAsyncIo, updateImgAsync, UpdateImgError, type NativeCopyEngine, type UpdateImgProgress, type UpdateImgResult } from '../../src/cli/update-img-core.js';
import { main as updateImgMain } from '../../src/cli/update-img-main.js';
import { loadNativeCopy, type NativeCopyWindows } from '../../src/native/index.js';
import { backupCycle, MIB, readAll, rng, type Cycle } from './scenario.js';

const root = resolve(import.meta.dirname, '..', '..');
const nativeDir = join(root, 'src', 'native');
const addon = join(nativeDir, 'build', 'Release', 'dattobd_native.node');

/** Build the binding when it is missing or older than its sources; the copy engine or why not. */
function ensureNativeCopy(): { copyWindows: NativeCopyWindows } | { unavailable: string } {
  const newest = Math.max(...readdirSync(nativeDir).filter((f) => /\.(cc|h|gyp)$/.test(f)).map((f) => statSync(join(nativeDir, f)).mtimeMs));
  if (!existsSync(addon) || statSync(addon).mtimeMs < newest) {
    const r = spawnSync('npm', ['run', 'build:native'], { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) return { unavailable: `npm run build:native failed: ${r.stderr.slice(-2000)}` };
  }
  return loadNativeCopy({});
}

const loaded = ensureNativeCopy();
const copyWindows = 'copyWindows' in loaded ? loaded.copyWindows : undefined;
const skipReason = 'unavailable' in loaded ? ` (skipped: ${loaded.unavailable})` : '';

/**
 * Whether a file can be opened with O_DIRECT. (The engine also falls back
 * when a first aligned read answers EINVAL; no filesystem here does that, and
 * JavaScript cannot make the aligned buffer to check it.)
 */
function opensDirect(path: string): boolean {
  try {
    closeSync(openSync(path, constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw e;
  }
}

let dirs: string[] = [];
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

function tempDir(parent = tmpdir()): string {
  const d = mkdtempSync(join(parent, 'uimg-native-'));
  dirs.push(d);
  return d;
}

/** Real files holding the cycle's snapshot and two copies of its image (one per engine). */
function realFiles(c: Cycle, dir: string): { snap: string; imgJs: string; imgNative: string; before: Uint8Array } {
  const snap = join(dir, 'snapshot');
  const imgJs = join(dir, 'image-js');
  const imgNative = join(dir, 'image-native');
  const before = readAll(c.b, c.image);
  writeFileSync(snap, readAll(c.b, '/dev/datto0'));
  writeFileSync(imgJs, before);
  writeFileSync(imgNative, before);
  return { snap, imgJs, imgNative, before };
}

const mapper = (c: Cycle, snap: string, img: string) => (p: string) => (p === '/dev/datto0' ? snap : p === c.image ? img : p);

function withoutTime(r: UpdateImgResult): Omit<UpdateImgResult, 'seconds'> {
  const { seconds: _s, ...rest } = r;
  return rest;
}

/** A copyWindows that records its calls and the last progress array it was given. */
type Spy = NativeCopyEngine & { calls: number; progress?: BigInt64Array; opts?: Parameters<NonNullable<typeof copyWindows>>[3] };
function spyEngine(direct: boolean): Spy {
  const spy: Spy = {
    calls: 0,
    direct,
    copyWindows: (src, dst, plan, o, progress) => {
      spy.calls++;
      spy.progress = progress;
      spy.opts = o;
      return copyWindows!(src, dst, plan, o, progress);
    },
  };
  return spy;
}

interface Compared {
  js: UpdateImgResult;
  native: UpdateImgResult;
  files: ReturnType<typeof realFiles>;
  engine: ReturnType<typeof spyEngine>;
  progress: UpdateImgProgress[];
}

/** Run both engines on the same cycle and files; the results must be equal. */
async function compare(
  c: Cycle,
  o: { parallel?: number; mergeGapBytes?: number; maxIoBytes?: number; direct?: boolean; directWrite?: boolean; dir?: string; batchWindows?: number; cut?: number } = {},
): Promise<Compared> {
  const files = realFiles(c, o.dir ?? tempDir());
  if (o.cut !== undefined) truncateSync(files.snap, o.cut);
  const common = {
    snapshot: '/dev/datto0',
    cow: c.oldCow,
    image: c.image,
    ...(o.parallel !== undefined ? { parallel: o.parallel } : {}),
    ...(o.mergeGapBytes !== undefined ? { mergeGapBytes: o.mergeGapBytes } : {}),
    ...(o.maxIoBytes !== undefined ? { maxIoBytes: o.maxIoBytes } : {}),
  };
  const js = await updateImgAsync(c.b, { ...common, dataIo: nodeAsyncIo(mapper(c, files.snap, files.imgJs)) });
  const engine = spyEngine(o.direct ?? false);
  const progress: UpdateImgProgress[] = [];
  const mapNative = mapper(c, files.snap, files.imgNative);
  const native = await updateImgAsync(c.b, {
    ...common,
    dataIo: nodeAsyncIo(mapNative),
    native: {
      ...engine,
      copyWindows: engine.copyWindows,
      map: mapNative,
      ...(o.batchWindows ? { batchWindows: o.batchWindows } : {}),
      ...(o.directWrite !== undefined ? { directWrite: o.directWrite } : {}),
    },
    onProgress: (p) => progress.push(p),
  });
  expect(withoutTime(native)).toEqual(withoutTime(js));
  expect(engine.calls).toBeGreaterThan(0);
  expect(readFileSync(files.imgNative).equals(readFileSync(files.imgJs)), 'native image = js image').toBe(true);
  return { js, native, files, engine, progress };
}

function expectImageIsSnapshot(files: { snap: string; imgNative: string }): void {
  expect(readFileSync(files.imgNative).equals(readFileSync(files.snap)), 'image = snapshot').toBe(true);
}

/** Single changed blocks at pseudo-random places (seeded), in a 64 MiB volume. */
function scatteredWrites(n: number, seed: number): [number, number][] {
  const r = rng(seed);
  return Array.from({ length: n }, () => [Math.floor(r() * 16384) * B, B] as [number, number]);
}

describe.skipIf(!copyWindows)(`native copy engine${skipReason}`, () => {
  it('scattered blocks, gaps read over, 16 threads: same result and image as the JS engine', async () => {
    const c = await backupCycle({ writes: [...scatteredWrites(400, 3), [10 * B, B], [12 * B, B], [14 * B, B]] });
    const { native, files, progress } = await compare(c, { parallel: 16 });
    expect(native.errorBlocks).toBe(0);
    expect(native.copiedBlocks).toBe(native.changedBlocks);
    expect(native.bytesRead).toBeGreaterThan(native.bytesCopied); // gaps were read over
    expect(native.ios).toBeLessThan(native.changedBlocks);
    expectImageIsSnapshot(files);
    // progress ends at the totals
    expect(progress.at(-1)).toMatchObject({ doneBytes: native.bytesCopied, totalBytes: native.bytesCopied, doneBlocks: native.changedBlocks, errorBlocks: 0 });
  });

  it('never writes the unchanged gaps it reads over', async () => {
    const c = await backupCycle({ writes: [[10 * B, B], [12 * B, B], [14 * B, B]] });
    // the image differs from the snapshot in the unchanged blocks 11 and 13: a write there would show
    const dir = tempDir();
    const files = realFiles(c, dir);
    const marked = readFileSync(files.imgNative);
    marked.fill(0xee, 11 * B, 12 * B).fill(0xee, 13 * B, 14 * B);
    writeFileSync(files.imgNative, marked);
    const map = mapper(c, files.snap, files.imgNative);
    const r = await updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: nodeAsyncIo(map), native: { copyWindows: copyWindows!, map } });
    expect(r).toMatchObject({ changedBlocks: 3, copiedBlocks: 3, ios: 1, bytesRead: 5 * B, bytesCopied: 3 * B });
    const img = readFileSync(files.imgNative);
    const snap = readFileSync(files.snap);
    for (const b of [10, 12, 14]) expect(img.subarray(b * B, (b + 1) * B).equals(snap.subarray(b * B, (b + 1) * B)), `block ${b}`).toBe(true);
    for (const b of [11, 13]) expect(img.subarray(b * B, (b + 1) * B).every((x) => x === 0xee), `block ${b}`).toBe(true);
  });

  it('clustered runs longer than --max-io, one thread, no gaps read over', async () => {
    const c = await backupCycle({ writes: [[MIB, 3 * MIB + 5 * B], [8 * MIB, 300 * B], [8 * MIB + 301 * B, 2 * B], [40 * MIB, B]] });
    const { native, files } = await compare(c, { parallel: 1, mergeGapBytes: 0, maxIoBytes: 256 * 1024 });
    expect(native).toMatchObject({ errorBlocks: 0, bytesRead: native.bytesCopied });
    expect(native.ios).toBe(13 + 5 + 1 + 1); // runs of ≤ 64 blocks: 773 blocks in 13, 300 in 5, then 2 and 1
    expectImageIsSnapshot(files);
  });

  it('many small batches give the same result as one', async () => {
    const c = await backupCycle({ writes: scatteredWrites(200, 11) });
    const { native, engine, files } = await compare(c, { batchWindows: 7 });
    expect(engine.calls).toBe(Math.ceil(native.ios / 7));
    expectImageIsSnapshot(files);
  });

  it('reports progress from the counters of the engine while a batch runs', async () => {
    const c = await backupCycle({ writes: [[2 * MIB, 4 * MIB]] });
    const files = realFiles(c, tempDir());
    const map = mapper(c, files.snap, files.imgNative);
    const seen: UpdateImgProgress[] = [];
    let resolvedAt = -1;
    // the batch's promise settles 300 ms after the copy finished: reports in between read the counters
    const slow: NativeCopyWindows = async (...a) => {
      const r = await copyWindows!(...a);
      await new Promise((res) => setTimeout(res, 300));
      resolvedAt = seen.length;
      return r;
    };
    const r = await updateImgAsync(c.b, {
      snapshot: '/dev/datto0', cow: c.oldCow, image: c.image, dataIo: nodeAsyncIo(map),
      native: { copyWindows: slow, map, progressMs: 20 },
      onProgress: (p) => seen.push(p),
    });
    expect(r).toMatchObject({ changedBlocks: 1024, copiedBlocks: 1024, errorBlocks: 0 });
    expect(resolvedAt).toBeGreaterThan(3);
    expect(seen[resolvedAt - 1]).toEqual({ doneBytes: 4 * MIB, totalBytes: 4 * MIB, doneBlocks: 1024, totalBlocks: 1024, errorBlocks: 0 });
    expect(seen.at(-1)).toEqual(seen[resolvedAt - 1]);
    expectImageIsSnapshot(files);
  });

  it('copies the partial last block of a volume that is not a multiple of 4 KiB', async () => {
    const size = 16 * MIB - 2560;
    const c = await backupCycle({ sizeBytes: size, writes: [[size - 700, 700], [4090 * B, B]], falloc: 2 });
    for (const directWrite of [false, true]) {
      const { native, files } = await compare(c, { parallel: 16, directWrite, direct: directWrite });
      expect(native).toMatchObject({ changedBlocks: 2, copiedBlocks: 2, errorBlocks: 0, bytesCopied: B + 1536 });
      expect(statSync(files.imgNative).size, `directWrite ${directWrite}`).toBe(size); // nothing written past the end
      expectImageIsSnapshot(files);
    }
  });

  it('direct span writes: the same result and image as the JS engine, scattered and clustered, 1 and 16 threads', async () => {
    const c = await backupCycle({ writes: [...scatteredWrites(400, 11), [20 * MIB, 700 * B], [40 * MIB + 3 * B, 9 * B]] });
    for (const parallel of [1, 16]) {
      const { native, files } = await compare(c, { parallel, direct: true, directWrite: true });
      expect(native.errorBlocks).toBe(0);
      expect(native.copiedBlocks).toBe(native.changedBlocks);
      expect(native.bytesCopied).toBe(native.changedBlocks * B); // changed bytes, not the spans' bytes
      expectImageIsSnapshot(files);
    }
  });

  it('direct span writes rewrite the unchanged blocks between changed runs of a window with the snapshot data; write gap 0 leaves them', async () => {
    const c = await backupCycle({ writes: [[10 * B, B], [12 * B, B], [14 * B, B], [40 * B, B]] });
    const snapBlock = (files: { snap: string }, b: number) => readFileSync(files.snap).subarray(b * B, (b + 1) * B);
    for (const writeGapBytes of [undefined, 4 * B, 0]) {
      const files = realFiles(c, tempDir());
      // the image differs from the snapshot in the unchanged blocks 11, 13 and 15..39: a write there would show
      const marked = readFileSync(files.imgNative);
      marked.fill(0xee, 11 * B, 12 * B).fill(0xee, 13 * B, 14 * B).fill(0xee, 15 * B, 40 * B);
      writeFileSync(files.imgNative, marked);
      const map = mapper(c, files.snap, files.imgNative);
      const r = await updateImgAsync(c.b, {
        snapshot: '/dev/datto0',
        cow: c.oldCow,
        image: c.image,
        dataIo: nodeAsyncIo(map),
        native: { copyWindows: copyWindows!, map, direct: true, directWrite: true, ...(writeGapBytes !== undefined ? { writeGapBytes } : {}) },
      });
      // one window [10, 41): the 25-block gap is under the 64-block (256 KiB) merge gap
      expect(r).toMatchObject({ changedBlocks: 4, copiedBlocks: 4, ios: 1, bytesRead: 31 * B, bytesCopied: 4 * B });
      const img = readFileSync(files.imgNative);
      const block = (b: number) => img.subarray(b * B, (b + 1) * B);
      for (const b of [10, 12, 14, 40]) expect(block(b).equals(snapBlock(files, b)), `changed block ${b}`).toBe(true);
      // default (the merge gap): the whole window is one write; 4 blocks: blocks 11 and 13 only; 0: none
      const rewritten = writeGapBytes === undefined ? [11, 13, 15, 39] : writeGapBytes === 4 * B ? [11, 13] : [];
      const kept = [11, 13, 15, 39].filter((b) => !rewritten.includes(b));
      for (const b of rewritten) expect(block(b).equals(snapBlock(files, b)), `gap block ${b} rewritten (write gap ${writeGapBytes})`).toBe(true);
      for (const b of kept) expect(block(b).every((x) => x === 0xee), `gap block ${b} untouched (write gap ${writeGapBytes})`).toBe(true);
    }
  });

  it('a snapshot shorter than planned: its last windows fail with EIO, only their blocks are reported, the rest is copied', async () => {
    const writes: [number, number][] = [...scatteredWrites(300, 5), [30 * MIB, 40 * B]];
    const c = await backupCycle({ writes });
    // cut the snapshot file in the middle of block 7700 + 100 bytes
    const cutBlock = 7700;
    for (const parallel of [1, 16]) {
      const { native, files } = await compare(c, { parallel, cut: cutBlock * B + 100 });
      const changed = [...new Set(writes.map(([off]) => off / B).flatMap((b) => (b === (30 * MIB) / B ? Array.from({ length: 40 }, (_, i) => b + i) : [b])))].sort((a, b) => a - b);
      const lost = changed.filter((b) => b >= cutBlock);
      expect(lost.length).toBeGreaterThan(16);
      expect(native.errorBlocks).toBe(lost.length);
      expect(native.copiedBlocks).toBe(changed.length - lost.length);
      expect(native.failures).toEqual(lost.slice(0, 16).map((block) => ({ block, code: 'EIO' })));
      const img = readFileSync(files.imgNative);
      const snap = readFileSync(files.snap);
      for (const b of changed) {
        const got = img.subarray(b * B, (b + 1) * B);
        if (b < cutBlock) expect(got.equals(snap.subarray(b * B, (b + 1) * B)), `block ${b}`).toBe(true);
        else expect(got.equals(files.before.subarray(b * B, (b + 1) * B)), `block ${b} left as it was`).toBe(true);
      }
    }
  });

  it('reads with O_DIRECT where the file takes it, buffered otherwise, with the same result', async () => {
    const c = await backupCycle({ writes: [...scatteredWrites(150, 9), [5 * MIB, 100 * B]] });
    // every filesystem mounted here that may hold a temp file (tmpfs takes O_DIRECT since Linux 6.6, some refuse it)
    const parents = [tmpdir(), '/dev/shm', '/run'].filter((d) => existsSync(d));
    let tried = 0;
    for (const parent of parents) {
      let dir: string;
      try {
        dir = tempDir(parent);
      } catch {
        continue;
      }
      tried++;
      const r = await compare(c, { direct: true, parallel: 16, dir });
      expect(Atomics.load(r.engine.progress!, 3), `O_DIRECT reads in ${parent}`).toBe(opensDirect(r.files.snap) ? 1n : 0n);
      expectImageIsSnapshot(r.files);
    }
    expect(tried).toBeGreaterThan(0);
    // without `direct`, always buffered
    const buffered = await compare(c, { direct: false });
    expect(Atomics.load(buffered.engine.progress!, 3)).toBe(0n);
  });

  it('validation still comes first: the engine is never called when it fails', async () => {
    const c = await backupCycle({ writes: scatteredWrites(20, 2) });
    const files = realFiles(c, tempDir());
    const engine = spyEngine(false);
    const map = mapper(c, files.snap, files.imgNative);
    await expect(
      updateImgAsync(c.b, { snapshot: '/dev/datto0', cow: c.newCow, image: c.image, dataIo: nodeAsyncIo(map), native: { copyWindows: engine.copyWindows, map } }),
    ).rejects.toBeInstanceOf(UpdateImgError);
    expect(engine.calls).toBe(0);
    expect(readFileSync(files.imgNative).equals(files.before)).toBe(true);
  });

  it('an image the engine cannot open is OPEN_FAILED with its errno, and is not created', async () => {
    const c = await backupCycle({ writes: scatteredWrites(20, 4) });
    const dir = tempDir();
    const files = realFiles(c, dir);
    const missing = join(dir, 'missing-image');
    const r = updateImgAsync(c.b, {
      snapshot: '/dev/datto0',
      cow: c.oldCow,
      image: c.image,
      dataIo: nodeAsyncIo(mapper(c, files.snap, files.imgNative)),
      native: { copyWindows: copyWindows!, map: mapper(c, files.snap, missing) },
    });
    await expect(r).rejects.toMatchObject({ name: 'UpdateImgError', code: 'OPEN_FAILED', errnoCode: 'ENOENT' });
    expect(existsSync(missing)).toBe(false);
  });

  it('falls back to buffered reads where the open with O_DIRECT is refused (a procfs file)', async () => {
    expect(opensDirect('/proc/version')).toBe(false);
    const text = readFileSync('/proc/version');
    const dst = join(tempDir(), 'dst');
    writeFileSync(dst, Buffer.alloc(2 * B, 0xaa));
    const progress = new BigInt64Array(4);
    const r = await copyWindows!('/proc/version', dst, new Float64Array([0, 1, 1, 0, 1]), { parallel: 2, maxIo: B, direct: true, snapshotBytes: text.length }, progress);
    expect([...r]).toEqual([0]);
    expect([...progress]).toEqual([BigInt(text.length), 1n, 1n, 0n]);
    const out = readFileSync(dst);
    expect(out.subarray(0, text.length).equals(text)).toBe(true);
    expect(out.subarray(text.length).every((x) => x === 0xaa)).toBe(true); // clamped to snapshotBytes, not truncated
  });

  it('the binding refuses a malformed plan before starting', () => {
    const p = new BigInt64Array(4);
    const opts = { parallel: 1, maxIo: 16 * B, direct: false, snapshotBytes: 100 * B };
    const bad: [Float64Array, RegExp][] = [
      [new Float64Array([0, 4, 1, 3, 2]), /outside its window/],
      [new Float64Array([0, 17, 1, 0, 1]), /maxIo/],
      [new Float64Array([99, 2, 1, 99, 1]), /past snapshotBytes/],
      [new Float64Array([0, 2, 2, 0, 1]), /truncated/],
      [new Float64Array([0.5, 1, 1, 0, 1]), /integer/],
    ];
    for (const [plan, msg] of bad) expect(() => copyWindows!('/dev/null', '/dev/null', plan, opts, p)).toThrow(msg);
    expect(() => copyWindows!('/dev/null', '/dev/null', new Float64Array(0), { ...opts, maxIo: 5000 }, p)).toThrow(/multiple of 4096/);
    expect(() => copyWindows!('/dev/null', '/dev/null', new Float64Array(0), opts, new BigInt64Array(2))).toThrow(/at least 4/);
  });
});

describe.skipIf(!copyWindows)(`update-img --engine${skipReason}`, () => {
  async function run(argv: string[], c: Cycle, o: { env?: NodeJS.ProcessEnv; native?: NativeCopyEngine; dataIoMap?: (p: string) => string } = {}) {
    let stdout = '';
    let stderr = '';
    const code = await updateImgMain(argv, {
      env: o.env ?? {},
      backend: c.b,
      ...(o.dataIoMap ? { dataIo: nodeAsyncIo(o.dataIoMap) } : {}),
      ...(o.native ? { native: o.native } : {}),
      stdout: (s) => (stdout += s),
      stderr: (s) => (stderr += s),
      stderrIsTTY: false,
    });
    return { code, stdout, stderr };
  }

  it('uses an injected native engine, says so in --json, and --engine js / DBD_UPDATE_IMG_ENGINE=js turn it off', async () => {
    const c = await backupCycle({ writes: scatteredWrites(50, 6) });
    const files = realFiles(c, tempDir());
    const map = mapper(c, files.snap, files.imgNative);
    const engine = spyEngine(false);
    const native = { copyWindows: engine.copyWindows, map };
    const r = await run(['--json', '/dev/datto0', c.oldCow, c.image], c, { native, dataIoMap: map });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, engine: 'native', errorBlocks: 0 });
    expect(engine.calls).toBe(1);
    expectImageIsSnapshot(files);
    // by default direct span writes over the merge gap; --exact-writes: the changed runs through the page cache
    expect(engine.opts).toMatchObject({ directWrite: true, writeGap: DEFAULT_MERGE_GAP / 4096 });
    const exact = await run(['--json', '--exact-writes', '--merge-gap', '8192', '/dev/datto0', c.oldCow, c.image], c, { native, dataIoMap: map });
    expect(JSON.parse(exact.stdout)).toMatchObject({ ok: true, engine: 'native' });
    expect(engine.opts).toMatchObject({ directWrite: false, writeGap: 0 });
    expect(engine.calls).toBe(2);
    const viaFlag = await run(['--json', '--engine', 'js', '/dev/datto0', c.oldCow, c.image], c, { native, dataIoMap: map });
    expect(JSON.parse(viaFlag.stdout)).toMatchObject({ ok: true, engine: 'js' });
    const viaEnv = await run(['--json', '/dev/datto0', c.oldCow, c.image], c, { native, dataIoMap: map, env: { DBD_UPDATE_IMG_ENGINE: 'js' } });
    expect(JSON.parse(viaEnv.stdout)).toMatchObject({ ok: true, engine: 'js' });
    expect(engine.calls).toBe(2);
  });

  it('the emulator backend keeps the JS engine; forcing native there, or a bad engine name, is a usage error', async () => {
    const c = await backupCycle({ writes: scatteredWrites(10, 8) });
    const plain = await run(['--json', '/dev/datto0', c.oldCow, c.image], c);
    expect(JSON.parse(plain.stdout)).toMatchObject({ ok: true, engine: 'js' });
    const forced = await run(['--engine', 'native', '/dev/datto0', c.oldCow, c.image], c);
    expect(forced.code).toBe(2);
    expect(forced.stderr).toContain('needs the kernel backend');
    const badEnv = await run(['/dev/datto0', c.oldCow, c.image], c, { env: { DBD_UPDATE_IMG_ENGINE: 'fast' } });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('DBD_UPDATE_IMG_ENGINE must be native or js');
    const badFlag = await run(['--engine', 'fast', '/dev/datto0', c.oldCow, c.image], c);
    expect(badFlag.code).toBe(2);
  });
});
