// SPDX-License-Identifier: GPL-2.0-only
// The TypeScript mirrors in src/abi/ must match kernel/include/uapi/dattobd.h
// exactly as gcc compiles it: every ioctl number, struct size, field offset and
// constant. A header define without a TS mirror fails too (add the mirror).
import { beforeAll, describe, expect, it } from 'vitest';
import * as C from '../../src/abi/constants.js';
import { DATTO_IOCTL_MAGIC, FIELD_OFFSET, IOCTL, PATH_MAX_DATTO, STRUCT_SIZE } from '../../src/abi/ioctl.js';
import { compileAbi, parseHeader as parseHeaderForTest, readHeaderShape, type CompiledAbi, type HeaderShape } from './header.js';

/** Header numeric define -> the TS value that mirrors it. */
const NUMBER_MIRRORS: Record<string, number> = {
  DATTO_IOCTL_MAGIC,
  PATH_MAX_DATTO,
  COW_UUID_SIZE: C.COW_UUID_SIZE,
  COW_BLOCK_LOG_SIZE: C.COW_BLOCK_LOG_SIZE,
  COW_BLOCK_SIZE: C.COW_BLOCK_SIZE,
  COW_HEADER_SIZE: C.COW_HEADER_SIZE,
  COW_MAGIC: C.COW_MAGIC,
  COW_CLEAN: C.COW_CLEAN,
  COW_INDEX_ONLY: C.COW_INDEX_ONLY,
  COW_VMALLOC_UPPER: C.COW_VMALLOC_UPPER,
  COW_VERSION_0: C.COW_VERSION_0,
  COW_VERSION_CHANGED_BLOCKS: C.COW_VERSION_CHANGED_BLOCKS,
  SNAPSHOT: C.SNAPSHOT,
  ACTIVE: C.ACTIVE,
  UNVERIFIED: C.UNVERIFIED,
};

/** Header string define -> the TS string built from it. */
const STRING_MIRRORS: Record<string, (v: string) => [string, string]> = {
  DATTOBD_VERSION: (v) => [v, C.DATTOBD_VERSION],
  DATTO_CTL_NAME: (v) => [`/dev/${v}`, C.CTL_DEVICE_PATH],
  DATTO_BLKDEV_NAME: (v) => [`/dev/${v}`, C.SNAPSHOT_DEVICE_PREFIX],
  DATTO_PROC_NAME: (v) => [`/proc/${v}`, C.PROC_INFO_PATH],
};

let shape: HeaderShape;
let abi: CompiledAbi;

beforeAll(() => {
  shape = readHeaderShape();
  abi = compileAbi(shape);
});

describe('UAPI header as compiled by gcc', () => {
  it('contains the whole ABI (guards against a parser that finds nothing)', () => {
    expect([...shape.structs.keys()].sort()).toEqual(Object.keys(STRUCT_SIZE).sort());
    expect(Object.keys(abi.ioctl)).toHaveLength(11);
  });

  it('has the ioctl numbers of src/abi/ioctl.ts', () => {
    const ts = Object.fromEntries(Object.entries(IOCTL).map(([k, v]) => [k, v >>> 0]));
    expect(abi.ioctl).toEqual(ts);
  });

  it('matches the x86_64 numbers of SPEC §1.3 literally', () => {
    expect(abi.ioctl).toMatchObject({
      SETUP_SNAP: 0x40289101,
      RELOAD_SNAP: 0x40209102,
      RELOAD_INC: 0x40209103,
      DESTROY: 0x40049104,
      TRANSITION_INC: 0x40049105,
      TRANSITION_SNAP: 0x40189106,
      RECONFIGURE: 0x40109107,
      DATTOBD_INFO: 0xa0509108,
      GET_FREE: 0x80049109,
      EXPAND_COW_FILE: 0x4010910a,
      RECONFIGURE_AUTO_EXPAND: 0x4018910b,
    });
  });

  it('has the struct sizes of STRUCT_SIZE', () => {
    expect(abi.structSize).toEqual(STRUCT_SIZE);
  });

  it('has every field, at the offsets of FIELD_OFFSET', () => {
    for (const [s, offs] of Object.entries(abi.fieldOffset)) {
      expect(FIELD_OFFSET[s as keyof typeof FIELD_OFFSET], `struct ${s}`).toEqual(offs);
    }
  });

  it('lays fields out without overlap inside the struct', () => {
    for (const [s, offs] of Object.entries(abi.fieldOffset)) {
      const size = abi.structSize[s]!;
      const fields = Object.entries(offs).sort((a, b) => a[1] - b[1]);
      for (let i = 0; i < fields.length; i++) {
        const [name, off] = fields[i]!;
        const end = off + abi.fieldSize[s]![name]!;
        const next = i + 1 < fields.length ? fields[i + 1]![1] : size;
        expect(end, `${s}.${name} overlaps the next field`).toBeLessThanOrEqual(next);
      }
    }
    expect(abi.fieldSize['dattobd_info']).toMatchObject({ uuid: C.COW_UUID_SIZE, cow: PATH_MAX_DATTO, bdev: PATH_MAX_DATTO });
    expect(abi.fieldSize['cow_header']!['uuid']).toBe(C.COW_UUID_SIZE);
    expect(C.COW_HEADER_BYTES).toBe(abi.structSize['cow_header']);
  });

  it('has a TS mirror with the same value for every numeric define', () => {
    const missing = Object.keys(abi.numbers).filter((n) => !(n in NUMBER_MIRRORS));
    expect(missing, 'header defines without a mirror in src/abi (add one and map it here)').toEqual([]);
    for (const [n, v] of Object.entries(abi.numbers)) expect(NUMBER_MIRRORS[n], n).toBe(v);
  });

  it('has a TS mirror for every string define', () => {
    const missing = Object.keys(abi.strings).filter((n) => !(n in STRING_MIRRORS));
    expect(missing).toEqual([]);
    for (const [n, v] of Object.entries(abi.strings)) {
      const [fromHeader, ts] = STRING_MIRRORS[n]!(v);
      expect(ts, n).toBe(fromHeader);
    }
  });

  it('agrees with the derived TS constants', () => {
    expect(C.COW_BLOCK_SIZE).toBe(1 << C.COW_BLOCK_LOG_SIZE);
    expect(C.FLAG_CLEAN).toBe(1 << abi.numbers['COW_CLEAN']!);
    expect(C.FLAG_INDEX_ONLY).toBe(1 << abi.numbers['COW_INDEX_ONLY']!);
    expect(C.FLAG_VMALLOC_UPPER).toBe(1 << abi.numbers['COW_VMALLOC_UPPER']!);
    expect(C.STATE_SNAPSHOT | C.STATE_ACTIVE | C.STATE_UNVERIFIED).toBe(
      (1 << abi.numbers['SNAPSHOT']!) | (1 << abi.numbers['ACTIVE']!) | (1 << abi.numbers['UNVERIFIED']!),
    );
  });
});

describe('header parser', () => {
  it('finds fields of arrays, pointers and continued macros', () => {
    const s = parseHeaderForTest(
      'struct a {\n char *p; /* c */\n unsigned long long x[4];\n __u8 u[N];\n};\n#define IOCTL_X \\\n _IOW(1, 2, int)\n#define F(x) x\n',
    );
    expect(s.structs.get('a')).toEqual(['p', 'x', 'u']);
    expect(s.defines.get('IOCTL_X')).toBe('_IOW(1, 2, int)');
    expect(s.defines.has('F')).toBe(false);
  });
});
