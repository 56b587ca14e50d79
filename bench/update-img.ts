// SPDX-License-Identifier: GPL-2.0-only
/**
 * update-img throughput on the host: the update-img engine
 * (src/cli/update-img-core.ts, updateImgAsync as the CLI runs it) copying the changed blocks of a 256 MiB
 * snapshot into an image, against `dd` copying the same number of bytes
 * sequentially, at 1 %, 10 % and 50 % of the blocks changed, scattered
 * (random single blocks) and clustered (runs of 256 blocks = 1 MiB).
 *
 * The snapshot, COW file and image are real files in a temporary directory
 * (page cache warm; both fsync the image at the end); the snapshot device name and
 * the driver's info come from a fixture backend, since no module is loaded
 * on the host. What is measured is the tool's I/O path: index scan, run
 * merging, positional reads and writes.
 *
 *   npx tsx bench/update-img.ts        (DBD_BENCH_UPDATE_IMG_MIB=256)
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COW_BLOCK_SIZE, COW_HEADER_SIZE, COW_MAGIC, FLAG_CLEAN, FLAG_INDEX_ONLY, MIB } from '../src/abi/constants.js';
import { nodeIo } from '../src/driver/node-file.js';
import { infoOnlyControl } from './lib/info-only-control.js';
import type { Backend, DeviceInfo } from '../src/driver/types.js';
import { encodeEntries, encodeHeader, geometry, uuidHex } from '../src/format/index.js';
import { DEFAULT_MERGE_GAP, DEFAULT_PARALLEL, nodeAsyncIo, updateImgAsync } from '../src/cli/update-img-core.js';

export interface UpdateImgBenchRow {
  pattern: 'scattered' | 'clustered';
  percent: number;
  changedBlocks: number;
  changedMiB: number;
  ios: number;
  updateImgSeconds: number;
  updateImgMiBps: number;
  ddSeconds: number;
  ddMiBps: number;
  /** throughput ratio: dd time / update-img time for the same bytes (≥ 0.9 is the goal) */
  ratio: number;
}

export interface UpdateImgBenchResult {
  volumeMiB: number;
  rows: UpdateImgBenchRow[];
  note: string;
}

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

function changedSet(blocks: number, percent: number, pattern: 'scattered' | 'clustered', seed: number): Uint8Array {
  const r = rng(seed);
  const marks = new Uint8Array(blocks);
  const target = Math.round((blocks * percent) / 100);
  let n = 0;
  const run = pattern === 'clustered' ? 256 : 1;
  while (n < target) {
    const start = Math.floor(r() * (blocks - run + 1));
    for (let b = start; b < start + run && n < target; b++) {
      if (!marks[b]) {
        marks[b] = 1;
        n++;
      }
    }
  }
  return marks;
}

function cowFile(sizeBytes: number, marks: Uint8Array, uuid: Uint8Array): Uint8Array {
  const g = geometry(sizeBytes / 512);
  const out = new Uint8Array(g.dataOffset);
  encodeHeader(
    {
      magic: COW_MAGIC,
      flags: FLAG_CLEAN | FLAG_INDEX_ONLY,
      fpos: g.firstDataBlk,
      fsize: g.dataOffset,
      seqid: 1,
      uuid,
      version: 1,
      nrChangedBlocks: marks.reduce((a, m) => a + m, 0),
    },
    out,
  );
  encodeEntries(Array.from(marks), out.subarray(COW_HEADER_SIZE));
  return out;
}

/** A backend over real files where `/dev/datto0` names the snapshot file. */
function fixtureBackend(snapshotFile: string, info: DeviceInfo): Backend {
  const io = nodeIo();
  const map = (p: string) => (p === '/dev/datto0' ? snapshotFile : p);
  const ctl = infoOnlyControl(() => info);
  return {
    name: 'kernel',
    ctl,
    io: {
      openRead: (p) => io.openRead(map(p)),
      openReadWrite: (p) => io.openReadWrite(map(p)),
      realpath: (p) => (p === '/dev/datto0' ? p : io.realpath(p)),
      exists: (p) => io.exists(map(p)),
    },
  };
}

function mibps(bytes: number, s: number): number {
  return Math.round((bytes / MIB / s) * 10) / 10;
}

export async function benchUpdateImg(
  volumeMiB = Number(process.env['DBD_BENCH_UPDATE_IMG_MIB'] ?? 256),
  reps = Number(process.env['DBD_BENCH_REPS'] ?? 3),
): Promise<UpdateImgBenchResult> {
  const size = volumeMiB * MIB;
  const blocks = size / COW_BLOCK_SIZE;
  const dir = mkdtempSync(join(tmpdir(), 'dbd-bench-ui-'));
  const rows: UpdateImgBenchRow[] = [];
  try {
    const snap = join(dir, 'snapshot');
    const img = join(dir, 'image');
    const cow = join(dir, 'cow');
    writeFileSync(snap, randomFillSync(new Uint8Array(size)));
    const uuid = new Uint8Array(16).map((_, i) => i * 17);
    const info: DeviceInfo = {
      minor: 0, state: 3, error: 0, cacheSize: 0, fallocSize: 0, seqid: 2, uuid: uuidHex(uuid),
      cow: '/cow2', bdev: '/dev/fixture', version: 1, nrChangedBlocks: 0,
    };
    const backend = fixtureBackend(snap, info);
    for (const pattern of ['scattered', 'clustered'] as const) {
      for (const percent of [1, 10, 50]) {
        const marks = changedSet(blocks, percent, pattern, percent * 7 + (pattern === 'clustered' ? 1 : 0));
        writeFileSync(cow, cowFile(size, marks, uuid));
        // best of `reps` (the machine is shared): whole run = open, validation (index read twice), copy, close
        let uSeconds = Infinity;
        let ddSeconds = Infinity;
        let res: Awaited<ReturnType<typeof updateImgAsync>> | undefined;
        let count = 1;
        for (let rep = 0; rep < reps; rep++) {
          writeFileSync(img, new Uint8Array(size));
          const u0 = performance.now();
          res = await updateImgAsync(backend, { snapshot: '/dev/datto0', cow, image: img, dataIo: nodeAsyncIo((p) => (p === '/dev/datto0' ? snap : p)) });
          uSeconds = Math.min(uSeconds, (performance.now() - u0) / 1000);
          // dd of the same number of bytes, sequential 1 MiB blocks
          count = Math.max(1, Math.round(res.bytesCopied / MIB));
          const t0 = performance.now();
          const dd = spawnSync('dd', [`if=${snap}`, `of=${img}`, 'bs=1M', `count=${count}`, 'conv=notrunc,fsync', 'status=none']);
          ddSeconds = Math.min(ddSeconds, (performance.now() - t0) / 1000);
          if (dd.status !== 0) throw new Error(`dd failed: ${dd.stderr}`);
        }
        if (!res) throw new Error('no repetition ran');
        const bytes = res.bytesCopied;
        rows.push({
          pattern,
          percent,
          changedBlocks: res.changedBlocks,
          changedMiB: Math.round((bytes / MIB) * 10) / 10,
          ios: res.ios,
          updateImgSeconds: Math.round(uSeconds * 1000) / 1000,
          updateImgMiBps: mibps(bytes, uSeconds),
          ddSeconds: Math.round(ddSeconds * 1000) / 1000,
          ddMiBps: mibps(count * MIB, ddSeconds),
          ratio: Math.round((ddSeconds / uSeconds) * 100) / 100,
        });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    volumeMiB,
    rows,
    note: `best of the repetitions; host, real files in the page cache, both fsync the image; update-img (CLI defaults: ${DEFAULT_PARALLEL} copies in flight, gaps up to ${DEFAULT_MERGE_GAP / 1024} KiB read over) time includes validation (index read twice); dd time includes its process start (~1-2 ms); ratio = dd time / update-img time`,
  };
}

/** Markdown for bench/RESULTS.md (picked up by bench/main.ts). */
export function renderUpdateImgSection(r: UpdateImgBenchResult): string {
  const lines = [
    `## update-img on the host (${r.volumeMiB} MiB snapshot)`,
    '',
    `${r.note}. The figures that count for the goal are the guest ones (bench/vm/update-img.vm.ts).`,
    '',
    '| pattern | changed | MiB | I/Os | update-img | dd | throughput ratio (goal ≥ 0.9) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const x of r.rows) {
    lines.push(`| ${x.pattern} | ${x.percent} % | ${x.changedMiB} | ${x.ios} | ${x.updateImgSeconds.toFixed(3)} s, ${x.updateImgMiBps} MiB/s | ${x.ddSeconds.toFixed(3)} s, ${x.ddMiBps} MiB/s | ${x.ratio} ${x.ratio >= 0.9 ? '✓' : '✗'} |`);
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await benchUpdateImg();
  console.log(`update-img vs dd, ${r.volumeMiB} MiB snapshot (${r.note})`);
  console.log('pattern    changed  blocks   MiB    I/Os   update-img          dd                  ratio');
  for (const x of r.rows) {
    console.log(
      `${x.pattern.padEnd(10)} ${String(x.percent).padStart(3)} %  ${String(x.changedBlocks).padStart(6)}  ${String(x.changedMiB).padStart(6)}  ${String(x.ios).padStart(6)}  ` +
        `${x.updateImgSeconds.toFixed(3)} s ${String(x.updateImgMiBps).padStart(7)} MiB/s  ${x.ddSeconds.toFixed(3)} s ${String(x.ddMiBps).padStart(7)} MiB/s  ${x.ratio}`,
    );
  }
}
