// SPDX-License-Identifier: GPL-2.0-only
/**
 * The kernel core (C, compiled in-process) against the TypeScript codec and
 * emulator: geometry, COW sizes, cache allowance, block ranges, the append
 * rule, auto-expand, header bytes, reload checks and index entries.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { FLAG_CLEAN, FLAG_INDEX_ONLY, MIB } from '../../src/abi/constants.js';
import { ERRNO } from '../../src/abi/errno.js';
import {
  blocksCeil,
  cacheAllowance,
  cowFileSize,
  dataCapacityBlocks,
  decodeEntries,
  decodeHeader,
  defaultCowSize,
  encodeEntries,
  encodeHeader,
  fallocMib,
  geometry,
  headerLayoutError,
  indexEntrySaved,
  indexEntryOffset,
  MAX_COW_MIB,
  readIndexEntry,
  validateCowFile,
  writeIndexEntry,
  type CowHeader,
} from '../../src/format/index.js';
import { autoGrow } from '../../emulator/tracer.js';
import type { CowManager } from '../../emulator/cow-manager.js';
import type { SnapDevice } from '../../emulator/snap-device.js';
import { loadCore, type Core } from './core.js';
import { fcParams } from './params.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
let core: Core;

beforeAll(() => {
  core = loadCore();
}, 180_000);

/** Sizes biased to the interesting edges: tiny, section and block boundaries, huge. */
const sizeSectors = fc.oneof(
  fc.nat(100),
  fc.integer({ min: 0, max: 40 }).map((k) => k * 32768),
  fc.tuple(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: -9, max: 9 })).map(([k, d]) => Math.max(0, k * 32768 + d)),
  fc.integer({ min: 0, max: 2 ** 40 }),
  fc.integer({ min: 0, max: 2 ** 44 }),
);

describe('geometry (dbd_geometry_init vs src/format/geometry)', () => {
  it('every field agrees for arbitrary partition sizes', () => {
    fc.assert(
      fc.property(sizeSectors, (s) => {
        const c = core.geometry(s);
        const t = geometry(s);
        expect({
          nblocks: c.nblocks,
          totalSects: c.totalSects,
          indexBytes: c.indexBytes,
          dataOffset: c.dataOffset,
          firstDataBlk: c.firstDataBlk,
        }).toEqual({
          nblocks: BigInt(t.nblocks),
          totalSects: BigInt(t.totalSects),
          indexBytes: BigInt(t.indexBytes),
          dataOffset: BigInt(t.dataOffset),
          firstDataBlk: BigInt(t.firstDataBlk),
        });
        // the in-memory index of the emulator's COW manager covers ceil(size/8) blocks (P14)
        const memSects = Math.max(t.totalSects, Math.ceil(blocksCeil(s) / 4096));
        expect(c.memSects).toBe(BigInt(memSects));
      }),
      fcParams(),
    );
  });

  it('matches the worked example of SPEC §2.13 (256 MiB)', () => {
    const g = core.geometry(524288);
    expect([g.nblocks, g.totalSects, g.indexBytes, g.dataOffset, g.firstDataBlk]).toEqual([65536n, 16n, 524288n, 528384n, 129n]);
    expect(core.defaultCowBytes(524288, 10)).toBe(26843545n);
    expect(core.cowFileBytes(524288, 0, 10)).toEqual({ bytes: 26843545n, rememberedMib: 25n });
  });
});

describe('COW sizes and cache allowance', () => {
  it('default size, -f size and remembered MiB agree with the codec', () => {
    // sizes past DBD_MAX_COW_MIB saturate on both sides (no wrapped product)
    const mibs = fc.oneof(fc.constant(0), fc.nat(1 << 20), fc.integer({ min: 2 ** 43 - 4, max: Number.MAX_SAFE_INTEGER }));
    fc.assert(
      fc.property(sizeSectors, fc.nat(100), mibs, (s, pct, mib) => {
        expect(core.defaultCowBytes(s, pct)).toBe(BigInt(defaultCowSize(s, pct)));
        const c = core.cowFileBytes(s, mib, pct);
        const bytes = cowFileSize(s, mib, pct);
        expect(c.bytes).toBe(BigInt(bytes));
        // (a saturated size is past 2^53 bytes: fallocMib's domain ends there, the division does not)
        expect(c.rememberedMib).toBe(Number.isSafeInteger(bytes) ? BigInt(fallocMib(bytes)) : BigInt(bytes) / BigInt(MIB));
        expect(c.bytes <= BigInt(MAX_COW_MIB) * BigInt(MIB)).toBe(true);
      }),
      fcParams(),
    );
  });

  it('cached sections allowed agree with the codec', () => {
    const cache = fc.oneof(fc.nat(1 << 20), fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(314572800));
    fc.assert(
      fc.property(cache, fc.nat(1 << 24), (c, sects) => {
        expect(core.cacheSectionsAllowed(c, sects)).toBe(BigInt(cacheAllowance(c, sects)));
      }),
      fcParams(),
    );
  });
});

describe('append rule (dbd_cow_alloc_block) vs the codec capacity', () => {
  it('a block is allocated exactly while capacity remains', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 36 }), fc.integer({ min: 0, max: 2 ** 44 }), fc.nat(5000), (s, fsize, k) => {
        const first = geometry(s).firstDataBlk;
        const cap = dataCapacityBlocks(s, fsize);
        const r = core.cowAllocBlock(first + k, fsize);
        if (k < cap) {
          expect(r).toEqual({ rc: 0, fpos: BigInt(first + k + 1), blk: BigInt(first + k) });
        } else {
          expect(r.rc).toBe(-ERRNO.EFBIG);
          expect(r.fpos).toBe(BigInt(first + k));
        }
        // the emulator's own test (appendCow): full when fpos*4096 >= fsize
        expect(r.rc === 0).toBe((first + k) * 4096 < fsize);
      }),
      fcParams(),
    );
  });
});

describe('auto-expand decision vs the emulator', () => {
  it('dbd_auto_expand_allowed equals the emulator autoGrow decision', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(0), fc.nat(1 << 16)),
        fc.oneof(fc.constant(0), fc.nat(1 << 16)),
        fc.constantFrom(512, 1024, 4096, 65536),
        fc.oneof(fc.nat(1 << 20), fc.integer({ min: 0, max: 2 ** 40 })),
        (step, reserved, bsize, bavail) => {
          let grew = 0;
          const dev = {
            autoExpand: { stepMib: step, reservedMib: reserved },
            vol: { fs: { statfs: () => ({ bsize, bavail }) } },
          } as unknown as SnapDevice;
          const cm = { expand: (b: number) => void (grew += b) } as unknown as CowManager;
          const emu = autoGrow(dev)(cm);
          expect(core.autoExpandAllowed(step, reserved, true, bsize, bavail)).toBe(emu);
          expect(grew).toBe(emu ? step * MIB : 0);
        },
      ),
      fcParams(),
    );
  });

  it('statfs failure grows only without a reservation (SPEC §2.9)', () => {
    expect(core.autoExpandAllowed(10, 0, false, 0, 0)).toBe(true);
    expect(core.autoExpandAllowed(10, 1, false, 4096, 1 << 30)).toBe(false);
    expect(core.autoExpandAllowed(0, 0, false, 4096, 1 << 30)).toBe(false);
  });
});

describe('block range of a write', () => {
  it('dbd_block_range equals the emulator tracer formula on sector-aligned I/O', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: 1 << 20 }), (start, nr) => {
        const r = core.blockRange(start, nr);
        if (nr === 0) {
          expect(r.rc).toBe(-ERRNO.EINVAL);
          return;
        }
        const off = start * 512;
        const len = nr * 512;
        expect(r).toEqual({ rc: 0, first: BigInt(Math.floor(off / 4096)), last: BigInt(Math.ceil((off + len) / 4096) - 1) });
      }),
      fcParams(),
    );
  });
});

const u64safe = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const headerArb = fc.record({
  magic: fc.oneof(fc.constant(4776), fc.integer({ min: 0, max: 0xffffffff })),
  flags: fc.oneof(fc.nat(7), fc.integer({ min: 0, max: 0xffffffff })),
  fpos: u64safe,
  fsize: u64safe,
  seqid: u64safe,
  uuid: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  version: fc.oneof(fc.nat(2), u64safe),
  nrChangedBlocks: u64safe,
});

describe('header bytes (dbd_header_encode/decode vs src/format/header)', () => {
  it('encoding a header gives identical 64 bytes', () => {
    fc.assert(
      fc.property(headerArb, (h) => {
        expect(Buffer.from(encodeHeader(h)).equals(core.headerEncode(h))).toBe(true);
      }),
      fcParams(),
    );
  });

  it('decoding 64 arbitrary bytes gives the same fields (or the codec reports a value beyond 2^53)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.boolean(), (bytes, small) => {
        if (small) for (const off of [0x0f, 0x17, 0x1f, 0x37, 0x3f]) bytes[off] = 0; // keep u64 fields safe
        const c = core.headerDecode(bytes);
        const big = [c.fpos, c.fsize, c.seqid, c.version, c.nrChangedBlocks].some((v) => v > MAX_SAFE);
        if (big) {
          expect(() => decodeHeader(bytes)).toThrow(expect.objectContaining({ code: 'VALUE_TOO_LARGE' }));
          return;
        }
        const t = decodeHeader(bytes);
        expect({ ...c, uuid: Array.from(c.uuid) }).toEqual({
          magic: t.magic,
          flags: t.flags,
          fpos: BigInt(t.fpos),
          fsize: BigInt(t.fsize),
          seqid: BigInt(t.seqid),
          uuid: Array.from(t.uuid),
          version: BigInt(t.version),
          nrChangedBlocks: BigInt(t.nrChangedBlocks),
        });
        expect(Buffer.from(encodeHeader(t)).equals(Buffer.from(bytes))).toBe(true);
      }),
      fcParams(),
    );
  });
});

/** The reload decision of the codec's validator (only the checks SPEC §2.10 names). */
function codecReloadErrno(bytes: Uint8Array, indexOnly: boolean): number {
  const r = validateCowFile(bytes, { requireClean: true, expect: indexOnly ? 'incremental' : 'snapshot', fileLength: Number.MAX_SAFE_INTEGER });
  const codes = new Set(r.errors.map((e) => e.code));
  return codes.has('BAD_MAGIC') || codes.has('NOT_CLEAN') || codes.has('MODE_MISMATCH') ? -ERRNO.EINVAL : 0;
}

const reloadHeaderArb = headerArb.map((h) => ({
  ...h,
  // most cases near valid: the right magic, flags among the meaningful bits
  magic: h.magic % 3 === 0 ? h.magic : 4776,
  flags: h.flags % 5 === 0 ? h.flags : h.flags & 7,
}));

describe('reload / reopen header checks (dbd_header_check_reload)', () => {
  it('agree with the codec validator', () => {
    fc.assert(
      fc.property(reloadHeaderArb, fc.boolean(), (h, indexOnly) => {
        const bytes = encodeHeader(h);
        expect(core.headerCheckReload(bytes, indexOnly)).toBe(codecReloadErrno(bytes, indexOnly));
      }),
      fcParams(),
    );
  });

  it('the VMALLOC_UPPER bit and the version are ignored', () => {
    const base: CowHeader = { magic: 4776, flags: FLAG_CLEAN, fpos: 9, fsize: 1 << 20, seqid: 1, uuid: new Uint8Array(16), version: 0, nrChangedBlocks: 0 };
    for (const flags of [FLAG_CLEAN, FLAG_CLEAN | 4]) {
      for (const version of [0, 1, 7]) {
        expect(core.headerCheckReload(encodeHeader({ ...base, flags, version }), false)).toBe(0);
        expect(core.headerCheckReload(encodeHeader({ ...base, flags: flags | FLAG_INDEX_ONLY, version }), true)).toBe(0);
      }
    }
  });
});

describe('snapshot index entries point at saved data (dbd_index_entry_saved)', () => {
  it('agree with the emulator (src/format/header indexEntrySaved), around the first data block and fpos', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 8, max: 2 ** 34 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.constantFrom('first', 'fpos', 'any'),
        fc.integer({ min: -2, max: 2 }),
        (sizeSectors, fposAny, mode, delta) => {
          const geo = geometry(sizeSectors);
          const fpos = geo.firstDataBlk + (fposAny % 1000);
          const base = mode === 'first' ? geo.firstDataBlk : mode === 'fpos' ? fpos : fposAny;
          const value = Math.max(0, base + delta);
          expect(core.indexEntrySaved(value, sizeSectors, fpos)).toBe(indexEntrySaved(value, geo, fpos));
        },
      ),
      fcParams(),
    );
    const g = geometry(2097152); // 1 GiB: first data block 513
    expect(g.firstDataBlk).toBe(513);
    expect(core.indexEntrySaved(512, 2097152, 600)).toBe(false);
    expect(core.indexEntrySaved(513, 2097152, 600)).toBe(true);
    expect(core.indexEntrySaved(599, 2097152, 600)).toBe(true);
    expect(core.indexEntrySaved(600, 2097152, 600)).toBe(false);
    expect(indexEntrySaved(513, g, 513)).toBe(false);
  });
});

describe('reload / reopen layout checks (dbd_header_check_layout)', () => {
  const layoutArb = fc
    .record({
      sizeSectors: fc.integer({ min: 8, max: 2 ** 34 }),
      indexOnly: fc.boolean(),
      fposDelta: fc.integer({ min: -3, max: 3 }),
      fposMode: fc.constantFrom('first', 'end', 'file', 'any'),
      fsize: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 52 })),
      fileDelta: fc.integer({ min: -8192, max: 8192 }),
      fileMode: fc.constantFrom('fsize', 'index', 'any'),
      any: fc.integer({ min: 0, max: 2 ** 40 }),
    })
    .map((r) => {
      const geo = geometry(r.sizeSectors);
      const fileBase = r.fileMode === 'fsize' ? r.fsize : r.fileMode === 'index' ? geo.dataOffset : r.any;
      const fileBytes = Math.max(0, fileBase + r.fileDelta);
      const fposBase =
        r.fposMode === 'first' ? geo.firstDataBlk : r.fposMode === 'end' ? Math.ceil(r.fsize / 4096) : r.fposMode === 'file' ? Math.floor(fileBytes / 4096) : r.any;
      return { ...r, geo, fileBytes, fpos: Math.max(0, fposBase + r.fposDelta) };
    });

  it('agree with the emulator (src/format/header headerLayoutError)', () => {
    fc.assert(
      fc.property(layoutArb, (r) => {
        const h: CowHeader = {
          magic: 4776,
          flags: FLAG_CLEAN | (r.indexOnly ? FLAG_INDEX_ONLY : 0),
          fpos: r.fpos,
          fsize: r.fsize,
          seqid: 1,
          uuid: new Uint8Array(16),
          version: 1,
          nrChangedBlocks: 0,
        };
        const ts = headerLayoutError(h, r.geo, r.indexOnly, r.fileBytes) ? -ERRNO.EINVAL : 0;
        expect(core.headerCheckLayout(encodeHeader(h), r.sizeSectors, r.indexOnly, r.fileBytes)).toBe(ts);
      }),
      fcParams(),
    );
  });

  it('a fresh or full snapshot file passes; appends into the index, past the end or past the file fail', () => {
    const size = 2097152; // 1 GiB: data_offset 528384, first data block 129 (SPEC 2.13)
    const g = geometry(size);
    const fsize = 26843545; // the default 10 %, not a multiple of 4096
    const h = (fpos: number, fs = fsize): Uint8Array =>
      encodeHeader({ magic: 4776, flags: FLAG_CLEAN, fpos, fsize: fs, seqid: 1, uuid: new Uint8Array(16), version: 1, nrChangedBlocks: 0 });
    expect(core.headerCheckLayout(h(g.firstDataBlk), size, false, fsize)).toBe(0);
    // full: the last append at floor(fsize / 4096) made the file one block longer
    const full = Math.ceil(fsize / 4096);
    expect(core.headerCheckLayout(h(full), size, false, full * 4096)).toBe(0);
    expect(core.headerCheckLayout(h(1), size, false, fsize)).toBe(-ERRNO.EINVAL);
    expect(core.headerCheckLayout(h(g.firstDataBlk - 1), size, false, fsize)).toBe(-ERRNO.EINVAL);
    expect(core.headerCheckLayout(h(full + 1), size, false, (full + 1) * 4096)).toBe(-ERRNO.EINVAL);
    expect(core.headerCheckLayout(h(1000), size, false, 999 * 4096)).toBe(-ERRNO.EINVAL);
    expect(core.headerCheckLayout(h(g.firstDataBlk), size, false, g.dataOffset - 1)).toBe(-ERRNO.EINVAL);
    // index-only: fpos is not used, the index must be there
    const io = encodeHeader({ magic: 4776, flags: FLAG_CLEAN | FLAG_INDEX_ONLY, fpos: 1, fsize: g.dataOffset, seqid: 2, uuid: new Uint8Array(16), version: 1, nrChangedBlocks: 0 });
    expect(core.headerCheckLayout(io, size, true, g.dataOffset)).toBe(0);
    expect(core.headerCheckLayout(io, size, true, g.dataOffset - 4096)).toBe(-ERRNO.EINVAL);
  });
});

describe('index entries', () => {
  it('entry bytes and offsets agree with src/format/cow-index', () => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(0), fc.constant(1), u64safe), fc.integer({ min: 0, max: 2 ** 40 }), (value, block) => {
        const c = core.indexEntryEncode(value);
        expect(Buffer.from(encodeEntries([value])).equals(c)).toBe(true);
        expect(core.indexEntryDecode(c)).toBe(BigInt(value));
        expect(decodeEntries(c)[0]).toBe(value);
        expect(core.indexEntryOffset(block)).toBe(BigInt(indexEntryOffset(block)));
        // placing the C-encoded entry at the C offset is what the codec reads back
        const small = block % 4096;
        const file = new Uint8Array(4096 + 8 * 4096);
        file.set(c, Number(core.indexEntryOffset(small)));
        expect(readIndexEntry(file, small)).toBe(value);
        const file2 = new Uint8Array(file.length);
        writeIndexEntry(file2, small, value);
        expect(Buffer.from(file2).equals(Buffer.from(file))).toBe(true);
      }),
      fcParams(),
    );
  });
});
