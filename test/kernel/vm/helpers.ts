// SPDX-License-Identifier: GPL-2.0-only
// Helpers for the kernel VM tests (test/vm/tests/kernel-*.vm.ts): a
// partitioned scratch disk, self-describing data blocks, snapshot checks.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../../vm/guest/api.js';

export const BLOCK = 4096;

/** One MBR partition of sizeMiB starting at 1 MiB; returns its device path. */
export function partition(t: VmContext, disk: string, sizeMiB: number): string {
  const mbr = Buffer.alloc(512);
  const e = 446;
  mbr[e + 4] = 0x83;
  mbr.writeUInt32LE(2048, e + 8);
  mbr.writeUInt32LE(sizeMiB * 2048, e + 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = openSync(disk, 'r+');
  try {
    writeSync(fd, mbr, 0, 512, 0);
  } finally {
    closeSync(fd);
  }
  t.run(['blockdev', '--rereadpt', disk]);
  const part = `${disk}1`;
  for (let i = 0; i < 50 && !existsSync(part); i++) t.sh('sleep 0.1');
  if (!existsSync(part)) throw new Error(`${part} did not appear after re-reading the partition table`);
  return part;
}

// The block format in plain JS, shared with the overwriter script that
// runs as a separate node process in the guest.
const BLOCK_JS = `
function fill(buf, seed) {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 32; i < 4096; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
}
function sum(buf) {
  let h = 0x811c9dc5;
  for (let i = 32; i < 4096; i++) { h ^= buf[i]; h = Math.imul(h, 0x01000193) >>> 0; }
  return h;
}
function describedBlock(n, gen) {
  const b = Buffer.alloc(4096);
  b.write('DBDTEST1', 0, 'latin1');
  b.writeUInt32LE(n, 8);
  b.writeUInt32LE(gen, 16);
  fill(b, n * 1000003 + gen);
  b.writeUInt32LE(sum(b), 24);
  return b;
}
`;

const lib = new Function('Buffer', `${BLOCK_JS}; return { sum, describedBlock };`)(Buffer) as {
  sum: (b: Buffer) => number;
  describedBlock: (n: number, gen: number) => Buffer;
};
const sum = lib.sum;

/** A 4 KiB block that says which file block and generation it is. */
export const describedBlock = lib.describedBlock;

export function describedFile(blocks: number, gen: number): Buffer {
  const out = Buffer.alloc(blocks * BLOCK);
  for (let i = 0; i < blocks; i++) describedBlock(i, gen).copy(out, i * BLOCK);
  return out;
}

/** Block numbers of a described file that are not intact generation gen. */
export function badBlocks(path: string, gen: number): number[] {
  const data = readFileSync(path);
  const bad: number[] = [];
  for (let i = 0; i * BLOCK < data.length; i++) {
    const b = data.subarray(i * BLOCK, (i + 1) * BLOCK);
    const ok =
      b.length === BLOCK &&
      b.toString('latin1', 0, 8) === 'DBDTEST1' &&
      b.readUInt32LE(8) === i &&
      b.readUInt32LE(16) === gen &&
      b.readUInt32LE(24) === sum(b);
    if (!ok) bad.push(i);
  }
  return bad;
}

export function sha256(t: VmContext, path: string): string {
  return t.sh(`sha256sum '${path}' | cut -d' ' -f1`, { timeoutMs: 300_000 }).stdout.trim();
}

/**
 * A node script that overwrites random blocks of a described file with
 * generation gen (whole blocks, sub-4K pieces and unaligned ranges).
 */
export function overwriterScript(t: VmContext, file: string, blocks: number, gen: number, writes: number, seed: number): string {
  const helper = join(t.tmp, `overwrite-${seed}.mjs`);
  const src = `
import { openSync, writeSync, fsyncSync, closeSync } from 'node:fs';
const BLOCK = 4096;
${BLOCK_JS}
let r = ${seed} >>> 0 || 1;
const rnd = (n) => { r ^= r << 13; r >>>= 0; r ^= r >>> 17; r ^= r << 5; r >>>= 0; return r % n; };
const fd = openSync(${JSON.stringify(file)}, 'r+');
for (let i = 0; i < ${writes}; i++) {
  const n = rnd(${blocks});
  const b = describedBlock(n, ${gen});
  const kind = rnd(3);
  if (kind === 0) writeSync(fd, b, 0, BLOCK, n * BLOCK);
  else if (kind === 1) { const off = rnd(4000); writeSync(fd, b, off, 1 + rnd(96), n * BLOCK + off); }
  else { const off = 512 * rnd(8) + 7; const len = Math.min(BLOCK - off, 1000); writeSync(fd, b, off, len, n * BLOCK + off); }
  if (i % 64 === 0) fsyncSync(fd);
}
closeSync(fd);
`;
  require_write(helper, src);
  return helper;
}

function require_write(path: string, text: string): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export function errCode(e: unknown): string | undefined {
  return (e as { code?: string }).code;
}

/** md5 of every 4 KiB block of a device or file (read with O_DIRECT off). */
export function blockHashes(path: string): string[] {
  const fd = openSync(path, 'r');
  const out: string[] = [];
  const buf = Buffer.alloc(1 << 20);
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      for (let o = 0; o < n; o += BLOCK) out.push(createHash('md5').update(buf.subarray(o, Math.min(o + BLOCK, n))).digest('hex'));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * 4 KiB device blocks (relative to the fs's device) that hold a file's data;
 * with `only`, just those holding written data below a file offset.
 * Also used to leave the in-use COW file's own blocks out of comparisons of
 * a snapshot read at two moments: the driver writes its COW data without
 * copy-on-write (as dattobd does; those writes are marked for the next
 * increment instead), so a snapshot does not keep their raw contents.
 */
export function fileBlocks(t: VmContext, file: string, only?: { written: true; belowBytes: number }): Set<number> {
  const out = new Set<number>();
  const text = t.run(['filefrag', '-v', '-b512', file]).stdout;
  for (const m of text.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):[^\n]*/gm)) {
    const logical = Number(m[1]);
    const first = Number(m[2]);
    const last = Number(m[3]);
    if (!only) {
      for (let b = Math.floor(first / 8); b <= Math.floor(last / 8); b++) out.add(b);
      continue;
    }
    // only blocks holding written data (not preallocated) below a file offset
    if (/unwritten/.test(m[0])) continue;
    for (let sec = first; sec <= last; sec += 8) {
      if ((logical + sec - first) * 512 < only.belowBytes) out.add(Math.floor(sec / 8));
    }
  }
  return out;
}

/** Device block of each 4 KiB file block (index = file block), from filefrag. */
export function fileBlockMap(t: VmContext, file: string): number[] {
  const out: number[] = [];
  const text = t.run(['filefrag', '-v', '-b512', file]).stdout;
  for (const m of text.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):/gm)) {
    const logical = Number(m[1]);
    const first = Number(m[2]);
    const last = Number(m[3]);
    if (first % 8 || logical % 8) throw new Error(`${file}: extent at sector ${first} is not 4 KiB aligned (make the filesystem with 4 KiB blocks)`);
    for (let sec = first; sec <= last; sec += 8) out[(logical + sec - first) / 8] = sec / 8;
  }
  for (let i = 0; i < out.length; i++) if (out[i] === undefined) throw new Error(`${file}: block ${i} not mapped (hole?)\n${text}`);
  return out;
}

/** Runs of consecutive blocks, [first, count] in block order. */
export function blockRuns(blocks: Iterable<number>): Array<[number, number]> {
  const sorted = [...blocks].sort((a, b) => a - b);
  const out: Array<[number, number]> = [];
  for (const b of sorted) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === b) last[1]++;
    else out.push([b, 1]);
  }
  return out;
}

export interface CowHeader {
  magic: number;
  flags: number;
  fpos: bigint;
  fsize: bigint;
  seqid: bigint;
  uuid: string;
  version: bigint;
  nrChanged: bigint;
}

export function readCowHeader(path: string): CowHeader {
  const b = Buffer.alloc(64);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, b, 0, 64, 0);
  } finally {
    closeSync(fd);
  }
  return {
    magic: b.readUInt32LE(0),
    flags: b.readUInt32LE(4),
    fpos: b.readBigUInt64LE(8),
    fsize: b.readBigUInt64LE(16),
    seqid: b.readBigUInt64LE(24),
    uuid: b.toString('hex', 32, 48),
    version: b.readBigUInt64LE(48),
    nrChanged: b.readBigUInt64LE(56),
  };
}

/** Non-zero index entries of a COW file: block -> entry. */
export function readCowIndex(path: string, blocks: number): Map<number, bigint> {
  const buf = Buffer.alloc(blocks * 8);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, buf.length, 4096);
  } finally {
    closeSync(fd);
  }
  const out = new Map<number, bigint>();
  for (let i = 0; i < blocks; i++) {
    const v = buf.readBigUInt64LE(i * 8);
    if (v !== 0n) out.set(i, v);
  }
  return out;
}

/** SPEC §2.1 data_offset for a volume of size_sectors. */
export function dataOffset(sizeSectors: number): number {
  const nblocks = Math.floor(sizeSectors / 8);
  return 4096 + Math.ceil(nblocks / 4096) * 32768;
}

/** update-img: copy every block marked in the COW index from snap to image. */
export function applyChangedBlocks(snap: string, image: string, changed: Iterable<number>): number {
  const s = openSync(snap, 'r');
  const d = openSync(image, 'r+');
  const b = Buffer.alloc(BLOCK);
  let n = 0;
  try {
    for (const blk of changed) {
      const got = readSync(s, b, 0, BLOCK, blk * BLOCK);
      if (got !== BLOCK) throw new Error(`short read of block ${blk} from ${snap}`);
      writeSync(d, b, 0, BLOCK, blk * BLOCK);
      n++;
    }
  } finally {
    closeSync(s);
    closeSync(d);
  }
  return n;
}

/** umount, and on failure say what the kernel logged (dattobd lines). */
export function umountExplained(t: VmContext, dir: string): void {
  try {
    t.umount(dir);
  } catch (e) {
    const log = t.kmsg().filter((l) => /datto|EXT4|XFS/.test(l)).slice(-15).join('\n');
    throw new Error(`${(e as Error).message}\nkernel log:\n${log}`);
  }
}

