// SPDX-License-Identifier: GPL-2.0-only
// update-img against dd in the guest, on the real module (issue 5): the
// engine the CLI runs (updateImgAsync with the native copy engine of
// src/native when the binding loads, as the CLI does) brings an image up to date from /dev/datto0 with 1 %,
// 10 % and 50 % of the blocks marked changed, scattered (single blocks at
// random) and clustered (runs of 256 blocks = 1 MiB); dd copies the same
// number of bytes from /dev/datto0 into the same image with 1 MiB blocks.
// Both fsync the image; the page cache is dropped before every run; the
// order alternates between repetitions; three unmeasured runs of update-img
// come first (JIT warm-up), and each case starts once the driver is idle
// again after the index rewrite (bench/guest/quiet.sh). Figure: throughput ratio
// (dd seconds / update-img seconds), so ≥ 0.9 meets the goal.
//
// Layout: a 64 MiB ext4 volume on a whole virtio disk (vdc: a user's
// /dev/sdX; without a third disk, a file on vdb behind a direct-I/O loop
// device: the layout of the figures before 2026-11-27, also measured
// afterwards for scattered 1 and 10 % as .loop rows), a snapshot with a COW
// file inside; after transition-to-incremental and transition-to-snapshot the
// first COW file is a closed index-only file with seqid 1 against
// /dev/datto0 with seqid 2. Its index is then rewritten with the chosen
// changed blocks. The image is a prefilled file on the other disk (vda).
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import type { VmContext } from '../../test/vm/guest/api.js';
import { COW_BLOCK_SIZE, COW_HEADER_SIZE, MIB } from '../../src/abi/constants.js';
import { nodeIo } from '../../src/driver/node-file.js';
import type { Backend, DeviceInfo } from '../../src/driver/types.js';
import { infoOnlyControl } from '../lib/info-only-control.js';
import { DEFAULT_MERGE_GAP, DEFAULT_PARALLEL, nodeAsyncIo, updateImgAsync, type NativeCopyEngine } from '../../src/cli/update-img-core.js';
import { loadNativeCopy } from '../../src/native/index.js';
import { ensureBenchDisks } from '../guest/bench-fs.js';
import { Recorder } from '../guest/record.js';

// As the update-img CLI does (src/cli/update-img-main.ts): size libuv's thread
// pool before it starts, so the copies in flight really run in parallel. Test
// modules are evaluated before the guest runner does any asynchronous I/O.
process.env['UV_THREADPOOL_SIZE'] ??= String(DEFAULT_PARALLEL);

const MINOR = 0;
const VOLUME_MIB = 64;
/** after this many seconds of measuring all six figures (in proportion for fewer), each remaining figure gets one repetition only */
const BUDGET_S = 75;
const CLUSTER_BLOCKS = 256;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** Index of the chosen changed blocks: u64 1 for changed, 0 otherwise. */
function changedIndex(blocks: number, percent: number, pattern: 'scattered' | 'clustered', seed: number): { index: Buffer; changed: number } {
  const r = rng(seed);
  const index = Buffer.alloc(blocks * 8);
  const target = Math.round((blocks * percent) / 100);
  const run = pattern === 'clustered' ? CLUSTER_BLOCKS : 1;
  let n = 0;
  while (n < target) {
    const start = Math.floor(r() * (blocks - run + 1));
    for (let b = start; b < start + run && n < target; b++) {
      if (index[b * 8] === 0) {
        index[b * 8] = 1;
        n++;
      }
    }
  }
  return { index, changed: n };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
}

/** dd's own elapsed time (excludes its process start, includes conv=fsync). */
function ddSeconds(stderr: string): number {
  const m = /copied, ([0-9.e+-]+) s,/.exec(stderr);
  if (!m) throw new Error(`cannot parse dd's statistics: ${stderr}`);
  return Number(m[1]);
}

/** The backend update-img sees: node:fs files and the device's info as the ioctl returned it. */
function guestBackend(t: VmContext): Backend {
  const i = t.ioctl.info(MINOR);
  const info: DeviceInfo = {
    minor: i.minor,
    state: i.state,
    error: i.error,
    cacheSize: i.cache_size,
    fallocSize: i.falloc_size,
    seqid: i.seqid,
    uuid: i.uuid.replace(/-/g, '').toLowerCase(),
    cow: i.cow,
    bdev: i.bdev,
    version: i.version,
    nrChangedBlocks: i.nr_changed_blocks,
  };
  const ctl = infoOnlyControl((m) => {
    if (m !== MINOR) throw new Error(`unexpected minor ${m}`);
    return info;
  });
  return { name: 'kernel', ctl, io: nodeIo() };
}

interface Layout {
  /** the snapshotted volume */
  vol: string;
  /** what it is, for the method note */
  what: string;
  /** metric prefix: 'uimg' for the figures of the goal */
  prefix: string;
  cases: { pattern: 'clustered' | 'scattered'; percent: number }[];
  /** the JS-engine, .origin and --exact-writes variants in the same repetitions */
  variants: boolean;
  /** appended to the method note (which only the layout of the 'uimg' figures records) */
  noteTail?: string;
}

export async function updateImgVsDd(t: VmContext): Promise<void> {
  const rec = new Recorder(t);
  if (!t.config.moduleKo) {
    rec.notMeasured('uimg.scattered.1', `dattobd.ko did not build: ${t.config.moduleError ?? 'unknown'}`);
    return;
  }
  const { traced, raw } = ensureBenchDisks(t);
  const image = `${traced.mnt}/uimg-image.raw`;
  const backing = `${(raw ?? traced).mnt}/uimg-volume.raw`;
  const disk = t.disks[2];
  t.sh(
    `dd if=/dev/zero of=${backing} bs=4M count=${VOLUME_MIB / 4} oflag=direct conv=fsync status=none && ` +
      `dd if=/dev/zero of=${image} bs=4M count=${VOLUME_MIB / 4} oflag=direct conv=fsync status=none` +
      (disk ? ` && dd if=/dev/zero of=${disk} bs=4M count=${VOLUME_MIB / 4} oflag=direct conv=fsync status=none` : ''),
    { timeoutMs: 300_000 },
  );
  t.loadModule();
  t.modprobe('loop');
  const all = (['clustered', 'scattered'] as const).flatMap((pattern) => [1, 10, 50].map((percent) => ({ pattern, percent })));
  if (disk) {
    // as a user's /dev/sdX: the snapshot's reads go to the virtual disk with no layer between
    await measureLayout(t, rec, image, {
      vol: disk,
      what: `${VOLUME_MIB} MiB ext4 volume on a whole virtio disk (${disk})`,
      prefix: 'uimg',
      cases: all,
      variants: true,
      noteTail: '; .loop = the former layout (the volume on a direct-I/O loop device over a file on vdb), scattered 1 and 10 % only, after the main figures',
    });
  }
  const vol = t.sh(`losetup --direct-io=on -f --show ${backing}`).stdout.trim();
  try {
    const what = `${VOLUME_MIB} MiB ext4 volume on a direct-I/O loop device over a file on vdb`;
    if (disk) {
      // the layout of the figures before the bench had a third disk: scattered 1 and 10 % for comparison
      const some = all.filter((c) => c.pattern === 'scattered' && c.percent <= 10);
      await measureLayout(t, rec, image, { vol, what, prefix: 'uimg.loop', cases: some, variants: false });
    } else {
      await measureLayout(t, rec, image, { vol, what, prefix: 'uimg', cases: all, variants: true });
    }
  } finally {
    t.sh(`losetup -d ${vol}; rm -f ${backing} ${image}`, { allowFail: true });
  }
}

async function measureLayout(t: VmContext, rec: Recorder, image: string, l: Layout): Promise<void> {
  const { vol } = l;
  const t0 = Date.now();
  try {
    // nodiscard: a discard would punch holes in the backing file, and holes read back for free
    t.mkfs('ext4', vol, ['-b', '4096', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0']);
    const mnt = t.mount(vol, { options: 'noatime' });
    const cow = `${mnt}/.datto`;
    t.ioctl.setup(MINOR, vol, cow, 8);
    t.ioctl.transitionInc(MINOR);
    t.ioctl.transitionSnap(MINOR, `${mnt}/.datto2`, 8);
    const backend = guestBackend(t);
    const dataIo = nodeAsyncIo();
    // the engine the CLI picks for the kernel backend: native when the binding loads
    const nat = loadNativeCopy();
    // as the CLI: O_DIRECT reads of the snapshot device, O_DIRECT writes of whole read windows
    const native: NativeCopyEngine | undefined = 'copyWindows' in nat ? { copyWindows: nat.copyWindows, direct: true, directWrite: true } : undefined;
    if (!native) t.log(`update-img bench: native copy engine unavailable (${'unavailable' in nat ? nat.unavailable : '?'}), measuring the JS engine`);
    const engine = native ? 'native (src/native copyWindows: POSIX threads, pread/pwrite, O_DIRECT reads and window writes)' : 'JS (libuv thread pool)';
    const blocks = (VOLUME_MIB * MIB) / COW_BLOCK_SIZE;
    t.log(`update-img bench layout ready in ${Date.now() - t0} ms: ${l.what}, image ${image}, libuv pool ${process.env['UV_THREADPOOL_SIZE'] ?? 'default 4'}`);
    if (l.prefix === 'uimg') {
      rec.sample({
        metric: 'uimg.method',
        side: 'note',
        rep: 0,
        value: 0,
        unit: '',
        note:
          `${l.what}, image file on vda; ` +
          `update-img = updateImgAsync in the bench process with the CLI's defaults (${engine} copy engine, ${DEFAULT_PARALLEL} copies in flight, gaps up to ${DEFAULT_MERGE_GAP / 1024} KiB read over, O_DIRECT reads), wall time incl. validation and fsync; ` +
          'variants (each repetition runs them in a rotated order): .js = the JS engine (libuv pool, buffered reads, changed runs written through the page cache), .exact = the native engine with --exact-writes (changed runs written through the page cache), ' +
          '.origin = the same copy reading the origin device instead of /dev/datto0 (no driver in the read path: the bound of any snapshot read path, not a valid backup); ' +
          'dd = dd if=/dev/datto0 bs=1M of the same byte count, conv=notrunc,fsync, its own elapsed time; page cache dropped before every run' +
          (l.noteTail ?? ''),
      });
    }

    const reps = 5;
    let warm = false;
    const m0 = Date.now();
    const budgetS = (BUDGET_S * l.cases.length) / 6;
    for (const { pattern, percent } of l.cases) {
      const metric = `${l.prefix}.${pattern}.${percent}`;
      const { index, changed } = changedIndex(blocks, percent, pattern, percent * 7 + (pattern === 'clustered' ? 1 : 0));
      const fd = openSync(cow, 'r+');
      try {
        writeSync(fd, index, 0, index.length, COW_HEADER_SIZE);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      // The index rewrite is a write to the snapshotted volume: let the driver finish saving
      // the original data it overwrote before anything is measured (both sides).
      t.sh(`sh ${t.config.repo}/bench/guest/quiet.sh`);
      // the CLI's engine; for comparison in the same repetitions: the JS engine (scattered 1 %,
      // clustered 50 %), .origin (scattered 1 and 10 %) and --exact-writes (scattered 10 and 50 %)
      type Opts = { native?: typeof native };
      const variants: { metric: string; opts: Opts }[] = [{ metric, opts: { native } }];
      if (l.variants && native && ((pattern === 'scattered' && percent === 1) || (pattern === 'clustered' && percent === 50))) variants.push({ metric: `${metric}.js`, opts: {} });
      // the bound of any snapshot read path: the same copy reading the origin itself (no driver in
      // the way; not a valid backup, the origin is mounted and may change)
      if (l.variants && native && pattern === 'scattered' && percent <= 10) variants.push({ metric: `${metric}.origin`, opts: { native: { ...native, map: (p: string) => (p === '/dev/datto0' ? vol : p) } } });
      if (l.variants && native && pattern === 'scattered' && percent >= 10) variants.push({ metric: `${metric}.exact`, opts: { native: { ...native, directWrite: false, writeGapBytes: 0 } } });
      if (!warm) {
        // Unmeasured runs first: the first calls of the engine in this process run its JavaScript
        // before the JIT compiled it (a CLI process pays that with its start-up, which dd's
        // figure leaves out too).
        for (let i = 0; i < 3; i++) await updateImgAsync(backend, { snapshot: '/dev/datto0', cow, image, dataIo, native });
        warm = true;
      }
      const ratios: number[] = [];
      for (let rep = 0; rep < reps && (rep === 0 || Date.now() - m0 < budgetS * 1000); rep++) {
        const runUpdateImg = async (o: Opts): Promise<{ seconds: number; r: Awaited<ReturnType<typeof updateImgAsync>> }> => {
          t.sh('sync; echo 3 > /proc/sys/vm/drop_caches');
          const u0 = performance.now();
          const r = await updateImgAsync(backend, { snapshot: '/dev/datto0', cow, image, dataIo, ...o });
          const seconds = (performance.now() - u0) / 1000;
          if (r.errorBlocks !== 0 || r.copiedBlocks !== changed) throw new Error(`update-img copied ${r.copiedBlocks} of ${changed} blocks, ${r.errorBlocks} errors: ${JSON.stringify(r.failures)}`);
          return { seconds, r };
        };
        const runDd = (): number => {
          t.sh('sync; echo 3 > /proc/sys/vm/drop_caches');
          const d = t.run(['dd', 'if=/dev/datto0', `of=${image}`, 'bs=1M', `count=${changed * COW_BLOCK_SIZE}`, 'iflag=count_bytes', 'conv=notrunc,fsync']);
          return ddSeconds(d.stderr);
        };
        // dd first in odd repetitions, last in even ones
        let dd = rep % 2 === 1 ? runDd() : 0;
        const runs = [];
        // the variants take turns at running first (no place in the order favours one)
        for (let k = 0; k < variants.length; k++) {
          const v = variants[(k + rep) % variants.length] as (typeof variants)[number];
          runs.push({ v, ...(await runUpdateImg(v.opts)) });
        }
        if (rep % 2 === 0) dd = runDd();
        for (const { v, seconds, r } of runs) {
          const ratio = dd / seconds;
          if (v.metric === metric) ratios.push(ratio);
          rec.sample({
            metric: v.metric,
            side: 'value',
            rep,
            value: Number(ratio.toFixed(3)),
            unit: '× dd',
            extra: {
              changedBlocks: changed,
              bytes: r.bytesCopied,
              ios: r.ios,
              bytesRead: r.bytesRead,
              updateImgSeconds: Number(seconds.toFixed(4)),
              // the copy alone (after validation, up to and including the fsync)
              copySeconds: Number(r.seconds.toFixed(4)),
              ddSeconds: dd,
              updateImgMiBps: Number((r.bytesCopied / MIB / seconds).toFixed(1)),
              ddMiBps: Number((r.bytesCopied / MIB / dd).toFixed(1)),
            },
          });
        }
      }
      t.log(`${metric}: ratio median ${median(ratios).toFixed(2)} (min ${Math.min(...ratios).toFixed(2)}, max ${Math.max(...ratios).toFixed(2)})`);
    }
  } finally {
    try {
      t.ioctl.destroy(MINOR);
    } catch {
      // already gone; the runner's cleanup destroys leftovers too
    }
    t.sh(`umount ${vol} 2>/dev/null`, { allowFail: true });
  }
}
