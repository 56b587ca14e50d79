// SPDX-License-Identifier: GPL-2.0-only
/**
 * `.datto` files made by dattobd.ko in the VM (fixtures/, see
 * fixtures/README.md) are read by the TS codec and reloaded by the
 * emulator, which then keeps working on them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { changedBlocks, decodeHeader, geometry, validateCowFile } from '../../src/format/index.js';
import { repoRoot } from './core.js';
import { checkFixture, reloadInEmulator, type FixtureEntry } from './fixture-manifest.js';
import { BLOCK, sha, writeData } from './model.js';

const dir = join(repoRoot, 'fixtures');
const manifestPath = join(dir, 'manifest.json');
const manifest: FixtureEntry[] = existsSync(manifestPath) ? (JSON.parse(readFileSync(manifestPath, 'utf8')) as FixtureEntry[]) : [];

function load(e: FixtureEntry): Buffer {
  return gunzipSync(readFileSync(join(dir, e.file)));
}

describe('module-made .datto fixtures', () => {
  it('fixtures/manifest.json lists module-made files', () => {
    expect(manifest.length, `no fixtures in ${manifestPath}: run npx tsx test/differential/make-fixtures.ts`).toBeGreaterThan(0);
    for (const e of manifest) expect(existsSync(join(dir, e.file)), e.file).toBe(true);
  });

  for (const e of manifest) {
    describe(e.name, () => {
      it('is the file the manifest describes', () => {
        const bytes = load(e);
        expect(bytes.length).toBe(e.length);
        expect(sha(bytes)).toBe(e.sha256);
      });

      it('passes the codec checks and the emulator reloads it', () => {
        checkFixture(e, load(e));
      });

      if (e.clean) {
        it('the emulator keeps working on the reloaded file and closes it clean again', () => {
          const bytes = load(e);
          const h = decodeHeader(bytes);
          const em = reloadInEmulator(e, bytes);
          const first = e.fsBytes / BLOCK;
          if (e.mode === 'snapshot') {
            // the snapshot device shows the module-saved originals
            for (const [b, seed] of Object.entries(e.changedRegionBlocks)) {
              const got = em.readSnapshot(1, (first + Number(b)) * BLOCK, BLOCK);
              expect(Buffer.from(got).equals(Buffer.from(writeData(seed, Number(b), 1))), `snapshot block ${b}`).toBe(true);
            }
            // a new write is saved at the file's fpos
            const blk = first + 100;
            em.write('/dev/fx', blk * BLOCK, writeData(0x77, 100, 1));
            expect(em.readSnapshot(1, blk * BLOCK, BLOCK).every((x) => x === 0)).toBe(true);
            em.umount('/m');
            const after = em.world.volumes.get('/dev/fx')!.fs.readAll('/c.datto');
            const ha = decodeHeader(after);
            expect(ha.flags & 1).toBe(1);
            expect(ha.fpos).toBe(h.fpos + 1);
            expect(ha.nrChangedBlocks).toBe(h.nrChangedBlocks + 1);
            expect(validateCowFile(after, { sizeSectors: e.sizeSectors, expect: 'snapshot', requireClean: true, checkIndex: true }).ok).toBe(true);
          } else {
            // incremental: the next snapshot of the series has seqid + 1 and the same uuid
            em.ctl.transitionToSnapshot({ minor: 1, cow: '/m/next.datto', fallocatedSpace: 1 });
            const info = em.ctl.info(1);
            expect(info.state).toBe(3);
            expect(info.seqid).toBe(h.seqid + 1);
            const old = em.world.volumes.get('/dev/fx')!.fs.readAll('/c.datto');
            const g = geometry(e.sizeSectors);
            const changed = new Set(changedBlocks(old, Math.ceil(e.sizeSectors / 8)));
            for (const b of Object.keys(e.changedRegionBlocks)) expect(changed.has(first + Number(b)), `block ${b} changed`).toBe(true);
            expect(old.length).toBe(g.dataOffset);
            expect(decodeHeader(old).flags & 3).toBe(3);
          }
        });
      }
    });
  }
});
