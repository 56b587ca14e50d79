// SPDX-License-Identifier: GPL-2.0-only
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseProcInfo, ProcParseError, renderProcInfo, type ProcDevice } from '../../src/proc/index.js';

const EMPTY = '{\n\t"version": "0.12.1",\n\t"devices": [\n\n\t]\n}\n';

const full: ProcDevice = {
  minor: 1,
  cowFile: '/cow.snap',
  blockDevice: '/dev/loop0',
  maxCache: 314572800,
  fallocate: 26214400,
  cowSizeCurrent: 26843545,
  seqId: 1,
  uuid: '0123456789abcdef0123456789abcdef',
  version: 1,
  nrChangedBlocks: 12,
  autoExpand: { stepSizeMib: 100, reservedSpaceMib: 2 },
  error: -27,
  state: 3,
};

describe('/proc/datto-info renderer (SPEC §4.1)', () => {
  it('renders the empty form with its empty line', () => {
    expect(renderProcInfo({ version: '0.12.1', devices: [] })).toBe(EMPTY);
  });

  it('renders every field in order with tabs', () => {
    const text = renderProcInfo({ version: '0.12.1', devices: [full] });
    expect(text).toBe(
      '{\n\t"version": "0.12.1",\n\t"devices": [\n\t\t{\n' +
        '\t\t\t"minor": 1,\n\t\t\t"cow_file": "/cow.snap",\n\t\t\t"block_device": "/dev/loop0",\n' +
        '\t\t\t"max_cache": 314572800,\n\t\t\t"fallocate": 26214400,\n\t\t\t"cow_size_current": 26843545,\n' +
        '\t\t\t"seq_id": 1,\n\t\t\t"uuid": "0123456789abcdef0123456789abcdef",\n\t\t\t"version": 1,\n' +
        '\t\t\t"nr_changed_blocks": 12,\n\t\t\t"auto_expand": {\n\t\t\t\t"step_size_mib": 100,\n' +
        '\t\t\t\t"reserved_space_mib": 2\n\t\t\t},\n\t\t\t"error": -27,\n\t\t\t"state": 3\n\t\t}\n\t]\n}\n',
    );
    expect(JSON.parse(text)).toMatchObject({ version: '0.12.1', devices: [{ minor: 1, auto_expand: { step_size_mib: 100 } }] });
  });

  it('renders an unverified device with only the mandatory fields, sorted, comma-separated', () => {
    const u: ProcDevice = { minor: 0, cowFile: '/.datto', blockDevice: '/dev/sda1', maxCache: 314572800, state: 5 };
    const text = renderProcInfo({ version: '0.12.1', devices: [full, u] });
    expect(text.indexOf('"minor": 0')).toBeLessThan(text.indexOf('"minor": 1'));
    expect(text).toContain('\t\t\t"state": 5\n\t\t},\n\t\t{\n');
    expect(parseProcInfo(text).devices).toEqual([u, full]);
  });

  it('escapes strings so the output stays valid JSON', () => {
    const d: ProcDevice = { minor: 2, cowFile: '/we"ird\\\n\tname', blockDevice: '/dev/x', maxCache: 1, state: 4 };
    const text = renderProcInfo({ version: '0.12.1', devices: [d] });
    expect(JSON.parse(text).devices[0].cow_file).toBe(d.cowFile);
    expect(parseProcInfo(text).devices[0]).toEqual(d);
  });
});

const devArb: fc.Arbitrary<ProcDevice> = fc
  .record(
    {
      minor: fc.nat({ max: 254 }),
      cowFile: fc.string(),
      blockDevice: fc.string(),
      maxCache: fc.maxSafeNat(),
      fallocate: fc.maxSafeNat(),
      cowSizeCurrent: fc.maxSafeNat(),
      seqId: fc.maxSafeNat(),
      uuid: fc.stringMatching(/^[0-9a-f]{32}$/),
      version: fc.nat(),
      nrChangedBlocks: fc.maxSafeNat(),
      autoExpand: fc.record({ stepSizeMib: fc.maxSafeNat(), reservedSpaceMib: fc.maxSafeNat() }),
      error: fc.integer({ min: -133, max: -1 }),
      state: fc.nat({ max: 5 }),
    },
    { requiredKeys: ['minor', 'cowFile', 'blockDevice', 'maxCache', 'state'] },
  );

describe('/proc/datto-info parser', () => {
  it('parses the empty form', () => {
    expect(parseProcInfo(EMPTY)).toEqual({ version: '0.12.1', devices: [] });
  });

  it('round-trips render → parse and agrees with JSON.parse', () => {
    fc.assert(
      fc.property(fc.uniqueArray(devArb, { selector: (d) => d.minor, maxLength: 5 }), (devs) => {
        const text = renderProcInfo({ version: '0.12.1', devices: devs });
        const back = parseProcInfo(text);
        expect(back.devices).toEqual([...devs].sort((a, b) => a.minor - b.minor));
        expect(JSON.parse(text).devices.length).toBe(devs.length);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects malformed text with a typed error', () => {
    const good = renderProcInfo({ version: '0.12.1', devices: [full] });
    const bad = [
      '',
      EMPTY.slice(0, -1),
      EMPTY.replace('\n\n', '\n'),
      good.replace('"state": 3', '"state": x'),
      good.replace('\t\t\t"minor": 1,\n', ''),
      good.replace('"max_cache": 314572800,\n', '').replace('"fallocate"', '"max_cache": 314572800,\n\t\t\t"fallocate"').replace('"cow_file"', '"bogus": 1,\n\t\t\t"cow_file"'),
      good.replace('"seq_id": 1,', '"seq_id": 1'),
      good.replace('"cow_file": "/cow.snap"', '"cow_file": /cow.snap'),
      good + 'x',
      good.replace('  ', '\t'),
      good.replace('\t\t\t"uuid"', '    "uuid"'),
    ];
    for (const t of bad) {
      if (t === good) continue;
      expect(() => parseProcInfo(t), JSON.stringify(t)).toThrow(ProcParseError);
    }
  });

  it('throws only ProcParseError on random mutations', () => {
    const good = renderProcInfo({ version: '0.12.1', devices: [full] });
    fc.assert(
      fc.property(fc.nat({ max: good.length - 1 }), fc.nat({ max: 20 }), fc.string({ maxLength: 3 }), (at, del, ins) => {
        const t = good.slice(0, at) + ins + good.slice(at + del);
        try {
          parseProcInfo(t);
        } catch (e) {
          expect(e).toBeInstanceOf(ProcParseError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
