// SPDX-License-Identifier: GPL-2.0-only
/**
 * /proc/datto-info: the kernel core's JSON escaping and per-device
 * formatter (C) against the emulator's /proc rendering (src/proc), byte for
 * byte, on emulator command sequences with awkward COW file names.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Emulator } from '../../emulator/index.js';
import { parseProcInfo } from '../../src/proc/parse.js';
import { loadCore, type Core } from './core.js';
import { newEmulatorWorld, runOnEmulator, sequenceArb, showCmd, type WorldConfig } from './model.js';
import { fcParams } from './params.js';

let core: Core;
beforeAll(() => {
  core = loadCore();
}, 180_000);

const MiB = 1048576;

/**
 * DEL (0x7f) was once escaped by the C core (\u007f) and passed raw by the TS
 * renderer (JSON.stringify); both are valid JSON, the C core now does what
 * JSON.stringify does. The regression case below keeps it that way.
 */

/** Strings a JS path can hold that are UTF-8 encodable (no lone surrogates). */
const pathString = fc
  .string({
    unit: fc.oneof(
      fc.constantFrom('"', '\\', '\n', '\t', '\b', '\f', '\r', '\x00', '\x01', '\x1f', 'é', '€', '\u2028', '😀', '/'),
      fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    ),
    maxLength: 40,
  })
  .filter((s) => wellFormed(s));

function wellFormed(s: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

function jsEscape(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

describe('dbd_json_escape vs JSON.stringify', () => {
  it('escapes every well-formed string exactly like the TS renderer', () => {
    fc.assert(
      fc.property(pathString, (s) => {
        const cut = s.includes('\0') ? s.slice(0, s.indexOf('\0')) : s; // C strings end at NUL
        const r = core.jsonEscape(cut);
        expect(r.out.toString('utf8')).toBe(jsEscape(cut));
        expect(r.len).toBe(Buffer.byteLength(jsEscape(cut)));
        // the output parses back to the input
        expect(JSON.parse(`"${r.out.toString('utf8')}"`)).toBe(cut);
      }),
      fcParams(),
    );
  });

  it('bytes that are not UTF-8 become \\u00XX and the result is valid JSON', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), (raw) => {
        const bytes = raw.map((b) => (b === 0 ? 0x41 : b));
        const out = core.jsonEscape(bytes).out.toString('utf8');
        const back = JSON.parse(`"${out}"`) as string;
        // valid UTF-8 input comes back unchanged; otherwise each bad byte is U+00XX
        const decoded = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
        if (!decoded.includes('\ufffd')) expect(back).toBe(decoded);
        expect(out).not.toMatch(/[\x00-\x1f]/);
      }),
      fcParams(),
    );
  });

  it('truncates like snprintf: a prefix of the full escape, NUL inside size, nothing written beyond', () => {
    fc.assert(
      fc.property(pathString, fc.nat(120), (s, size) => {
        const cut = s.includes('\0') ? s.slice(0, s.indexOf('\0')) : s;
        const full = Buffer.from(jsEscape(cut));
        const r = core.jsonEscape(cut, size);
        expect(r.len).toBe(full.length);
        expect(r.guardOk).toBe(true);
        expect(r.out.equals(full.subarray(0, Math.max(0, Math.min(full.length, size - 1))))).toBe(true);
      }),
      fcParams(),
    );
  });

  it('regression: DEL 0x7f is passed through by both sides', () => {
    expect(core.jsonEscape('a\x7fb').out.toString()).toBe(jsEscape('a\x7fb'));
  });
});

/** /proc/datto-info as the kernel core formats it, from the emulator's device facts. */
function coreProcText(e: Emulator): string {
  const parts: Buffer[] = [core.procHead()];
  let first = true;
  for (const d of e.world.devices) {
    if (!d) continue;
    const cm = d.unverified ? undefined : d.cm;
    parts.push(
      core.procDev(
        {
          minor: d.minor,
          cowFile: d.cowPath,
          blockDevice: d.bdevPath,
          maxCache: d.cacheSize || e.world.defaultCacheSize,
          unverified: d.unverified,
          hasCow: cm !== undefined,
          fallocateBytes: d.fallocMib * MiB,
          cowSizeCurrent: cm?.fsize ?? 0,
          seqId: cm?.seqid ?? 0,
          uuid: cm?.uuid ?? new Uint8Array(16),
          version: cm?.version ?? 0,
          nrChangedBlocks: cm?.nrChanged ?? 0,
          hasAutoExpand: d.autoExpand !== undefined,
          stepSizeMib: d.autoExpand?.stepMib ?? 0,
          reservedSpaceMib: d.autoExpand?.reservedMib ?? 0,
          error: d.error,
          state: d.state,
        },
        first,
      ),
    );
    first = false;
  }
  parts.push(core.procTail());
  return Buffer.concat(parts).toString('utf8');
}

const cfg: WorldConfig = {
  vols: [
    { dev: '/dev/loop0', mnt: '/mnt/l0', sizeBytes: 24 * MiB, fsBytes: 16 * MiB, fsFreeBytes: 14 * MiB },
    { dev: '/dev/vd"b\\1', mnt: '/mnt/odd', sizeBytes: 20 * MiB, fsBytes: 16 * MiB, fsFreeBytes: 14 * MiB },
  ],
  maxDevices: 4,
  regionBlocks: 64,
  overflowBlocks: 300,
  cowNames: ['cow0', 'quote"d', 'back\\slash', 'tab\there', 'new\nline', 'ctl\x01\x1f', 'ünï€ode😀', '.datto'],
  fallocMibs: [1, 2],
};

describe('/proc/datto-info: kernel core formatter vs emulator renderer', () => {
  it('no devices: identical text (with the empty line)', () => {
    const e = newEmulatorWorld(cfg);
    expect(coreProcText(e)).toBe(e.ctl.procInfo());
    expect(coreProcText(e)).toBe('{\n\t"version": "0.12.1",\n\t"devices": [\n\n\t]\n}\n');
  });

  it('identical bytes after every command of random sequences, and the text parses', () => {
    let devicesSeen = 0;
    fc.assert(
      fc.property(sequenceArb(cfg, { exclude: ['cowFull', 'readSnap'], minLength: 10, maxLength: 40 }), fc.nat(), (cmds, seed) => {
        const e = newEmulatorWorld(cfg, seed);
        e.mount(cfg.vols[0]!.dev, cfg.vols[0]!.mnt);
        e.mount(cfg.vols[1]!.dev, cfg.vols[1]!.mnt);
        const log: string[] = [];
        for (const c of cmds) {
          log.push(showCmd(cfg, c));
          runOnEmulator(e, cfg, c);
          const want = e.ctl.procInfo();
          const got = coreProcText(e);
          if (got !== want) throw new Error(`divergence after:\n  ${log.join('\n  ')}\nC:\n${got}\nTS:\n${want}`);
          devicesSeen += parseProcInfo(got).devices.length;
        }
      }),
      fcParams(0.1),
    );
    expect(devicesSeen).toBeGreaterThan(100);
  });
});
