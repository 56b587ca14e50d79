// SPDX-License-Identifier: GPL-2.0-only
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { COW_MAGIC, FLAG_CLEAN, FLAG_INDEX_ONLY, MIB } from '../../src/abi/constants.js';
import {
  assertValidCowFile,
  blocksCeil,
  cacheAllowance,
  changedBlocks,
  cowFileSize,
  dataCapacityBlocks,
  dataOffset,
  decodeEntries,
  decodeHeader,
  defaultCowSize,
  encodeEntries,
  encodeHeader,
  fallocMib,
  firstDataBlk,
  FormatError,
  geometry,
  indexBytes,
  newHeader,
  randomUuid,
  readIndexEntry,
  totalSects,
  uuidFromHex,
  uuidHex,
  validateCowFile,
  writeIndexEntry,
  type CowHeader,
} from '../../src/format/index.js';

const MIB256_SECTORS = 524288;

describe('geometry (SPEC §2.1, worked example §2.13)', () => {
  it('matches the 256 MiB worked example', () => {
    const g = geometry(MIB256_SECTORS);
    expect(g).toEqual({
      sizeSectors: 524288,
      nblocks: 65536,
      totalSects: 16,
      indexBytes: 524288,
      dataOffset: 528384,
      firstDataBlk: 129,
    });
    expect(defaultCowSize(MIB256_SECTORS)).toBe(26843545);
    expect(fallocMib(defaultCowSize(MIB256_SECTORS)) * MIB).toBe(26214400);
    expect(cowFileSize(MIB256_SECTORS, 50)).toBe(52428800);
    expect(52428800 - dataOffset(MIB256_SECTORS)).toBe(51900416);
    expect(dataCapacityBlocks(MIB256_SECTORS, 52428800)).toBe(12671);
  });

  it('uses floor for nblocks and ceil for sections (P14)', () => {
    // 4096 whole blocks + 7 sectors: floor keeps one section, ceil counts 4097 blocks
    const s = 4096 * 8 + 7;
    expect(totalSects(s)).toBe(1);
    expect(blocksCeil(s)).toBe(4097);
    expect(indexBytes(s)).toBe(32768);
    expect(firstDataBlk(s)).toBe(9);
    expect(totalSects(4097 * 8)).toBe(2);
    expect(totalSects(0)).toBe(0);
    expect(dataOffset(0)).toBe(4096);
  });

  it('computes the cache allowance of §2.12', () => {
    expect(cacheAllowance(314572800, 16)).toBe(Math.floor((314572800 - 16 * 24) / 32768));
    expect(cacheAllowance(100, 16)).toBe(0);
    expect(cacheAllowance(16 * 24 + 32768, 16)).toBe(1);
  });

  it('rejects negative or fractional sizes with a typed error', () => {
    expect(() => geometry(-1)).toThrow(FormatError);
    expect(() => defaultCowSize(1.5)).toThrow(FormatError);
  });
});

function sampleHeader(): CowHeader {
  return newHeader({ fpos: 129, fsize: 26843545, seqid: 3, uuid: uuidFromHex('00112233445566778899aabbccddeeff') });
}

describe('header codec (SPEC §2.2)', () => {
  it('encodes the exact little-endian layout', () => {
    const h = { ...sampleHeader(), flags: FLAG_CLEAN | FLAG_INDEX_ONLY, nrChangedBlocks: 12 };
    const b = encodeHeader(h);
    expect(b.length).toBe(64);
    expect(Array.from(b.slice(0, 4))).toEqual([0xa8, 0x12, 0, 0]);
    expect(b[4]).toBe(3);
    expect(b[8]).toBe(129);
    expect(b[24]).toBe(3);
    expect(b[32]).toBe(0x00);
    expect(b[47]).toBe(0xff);
    expect(b[48]).toBe(1);
    expect(b[56]).toBe(12);
    expect(decodeHeader(b)).toEqual(h);
  });

  it('round-trips arbitrary valid headers', () => {
    fc.assert(
      fc.property(
        fc.record({
          magic: fc.nat({ max: 0xffffffff }),
          flags: fc.nat({ max: 0xffffffff }),
          fpos: fc.maxSafeNat(),
          fsize: fc.maxSafeNat(),
          seqid: fc.maxSafeNat(),
          uuid: fc.uint8Array({ minLength: 16, maxLength: 16 }),
          version: fc.maxSafeNat(),
          nrChangedBlocks: fc.maxSafeNat(),
        }),
        (h) => {
          expect(decodeHeader(encodeHeader(h))).toEqual(h);
        },
      ),
    );
  });

  it('formats uuids as 32 lowercase hex digits', () => {
    const u = randomUuid();
    expect(uuidHex(u)).toMatch(/^[0-9a-f]{32}$/);
    expect(uuidFromHex(uuidHex(u))).toEqual(u);
    expect((u[6] ?? 0) >> 4).toBe(4);
    expect(() => uuidFromHex('xyz')).toThrow(FormatError);
  });
});

describe('index entries (SPEC §2.4)', () => {
  it('reads and writes entries at 4096 + 8*b', () => {
    const file = new Uint8Array(4096 + 8 * 10);
    writeIndexEntry(file, 3, 129);
    writeIndexEntry(file, 7, 1);
    expect(file[4096 + 24]).toBe(129);
    expect(readIndexEntry(file, 3)).toBe(129);
    expect(readIndexEntry(file, 4)).toBe(0);
    expect(readIndexEntry(file, 1000)).toBe(0); // past EOF reads as unchanged
    expect(changedBlocks(file, 10)).toEqual([3, 7]);
    expect(() => writeIndexEntry(file, 1000, 1)).toThrow(FormatError);
  });

  it('bulk codec round-trips large values', () => {
    const vals = [0, 1, 129, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER];
    expect(Array.from(decodeEntries(encodeEntries(vals)))).toEqual(vals);
  });
});

function makeFile(sizeSectors: number, h: Partial<CowHeader>, fileLen?: number): Uint8Array {
  const g = geometry(sizeSectors);
  const full = { ...newHeader({ fpos: g.firstDataBlk, fsize: fileLen ?? g.dataOffset + 8 * 4096, seqid: 1, uuid: randomUuid() }), ...h };
  const bytes = new Uint8Array(fileLen ?? full.fsize);
  encodeHeader(full, bytes);
  return bytes;
}

const codesOf = (bytes: Uint8Array, o: Parameters<typeof validateCowFile>[1]): string[] =>
  validateCowFile(bytes, o).errors.map((e) => e.code);

describe('validator', () => {
  const S = 8 * 256; // 1 MiB volume: first data block 9, data offset 36864

  it('accepts a clean snapshot file and a clean index-only file', () => {
    const snap = makeFile(S, { flags: FLAG_CLEAN, fpos: 11 });
    writeIndexEntry(snap, 0, 9);
    writeIndexEntry(snap, 5, 10);
    expect(codesOf(snap, { sizeSectors: S, expect: 'snapshot', requireClean: true, checkIndex: true })).toEqual([]);
    const inc = makeFile(S, { flags: FLAG_CLEAN | FLAG_INDEX_ONLY, fsize: dataOffset(S) }, dataOffset(S));
    writeIndexEntry(inc, 2, 1);
    expect(codesOf(inc, { sizeSectors: S, expect: 'incremental', requireClean: true, checkIndex: true })).toEqual([]);
    expect(assertValidCowFile(inc, { sizeSectors: S }).seqid).toBe(1);
  });

  it('reports each defect with its code', () => {
    expect(codesOf(new Uint8Array(10), {})).toEqual(['TRUNCATED']);
    expect(codesOf(makeFile(S, { magic: 1 }), {})).toEqual(['BAD_MAGIC']);
    expect(codesOf(makeFile(S, { version: 2 }), {})).toEqual(['UNKNOWN_VERSION']);
    expect(codesOf(makeFile(S, { flags: 8 }), {})).toEqual(['UNKNOWN_FLAGS']);
    expect(codesOf(makeFile(S, {}), { requireClean: true })).toEqual(['NOT_CLEAN']);
    expect(codesOf(makeFile(S, { flags: FLAG_INDEX_ONLY }), { expect: 'snapshot' })).toContain('MODE_MISMATCH');
    expect(codesOf(makeFile(S, { flags: FLAG_INDEX_ONLY }), { sizeSectors: S })).toEqual(['INDEX_ONLY_WITH_DATA']);
    expect(codesOf(makeFile(S, { fpos: 100 }), { sizeSectors: S })).toEqual(['FPOS_BEYOND_FSIZE']);
    expect(codesOf(makeFile(S, { fpos: 3 }), { sizeSectors: S })).toEqual(['FPOS_BEFORE_DATA']);
    expect(codesOf(makeFile(S, { fsize: 5000 }, 5000), { sizeSectors: S })).toContain('FSIZE_BEFORE_DATA');
    const short = makeFile(S, {});
    expect(codesOf(short.slice(0, 8192), {})).toEqual(['TRUNCATED']);
    const badIdx = makeFile(S, {});
    writeIndexEntry(badIdx, 4, 5);
    expect(codesOf(badIdx, { sizeSectors: S, checkIndex: true })).toEqual(['INDEX_ENTRY_INVALID']);
    const big = makeFile(S, {});
    big.fill(0xff, 8, 16);
    expect(codesOf(big, {})).toEqual(['VALUE_TOO_LARGE']);
  });

  it('never throws anything but FormatError on random bytes (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 5000 }),
        fc.option(fc.nat({ max: 1 << 20 })),
        fc.boolean(),
        (bytes, sizeSectors, magicPrefix) => {
          if (magicPrefix && bytes.length >= 4) {
            bytes[0] = COW_MAGIC & 0xff;
            bytes[1] = COW_MAGIC >> 8;
            bytes[2] = 0;
            bytes[3] = 0;
          }
          const o = { sizeSectors: sizeSectors ?? undefined, checkIndex: true, requireClean: true, expect: 'snapshot' as const };
          const r = validateCowFile(bytes, o);
          expect(r.ok).toBe(r.errors.length === 0);
          for (const e of r.errors) expect(e).toBeInstanceOf(FormatError);
          try {
            decodeHeader(bytes);
            assertValidCowFile(bytes, o);
          } catch (e) {
            expect(e).toBeInstanceOf(FormatError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
