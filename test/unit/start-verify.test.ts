// SPDX-License-Identifier: GPL-2.0-only
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Emulator } from '../../emulator/index.js';
import { compareFiles, compareWith, fullCopy } from '../../src/start/verify.js';
import { Rng, runWorkload } from '../../src/start/workload.js';

describe('npm start helpers', () => {
  it('full copy + compare detect a single flipped byte', () => {
    const e = new Emulator();
    e.addVolume({ path: '/dev/sdb', sizeBytes: 3 << 20 });
    e.mount('/dev/sdb', '/m');
    runWorkload(e, '/dev/sdb', 3 << 20, new Rng(5), 200);
    e.ctl.setupSnapshot({ minor: 0, bdev: '/dev/sdb', cow: '/m/c', fallocatedSpace: 1, cacheSize: 0 });
    e.createFile('/img', 3 << 20);
    fullCopy(e.io, '/dev/datto0', '/img', 3 << 20);
    expect(compareFiles(e.io, '/img', '/dev/datto0', 3 << 20)).toEqual({ firstByte: -1, blocks: 0 });
    const f = e.io.openReadWrite('/img');
    f.write(new Uint8Array([1 ^ e.readSnapshot(0, 777777, 1)[0]!]), 777777);
    f.close();
    expect(compareFiles(e.io, '/img', '/dev/datto0', 3 << 20)).toEqual({ firstByte: 777777, blocks: 1 });
    expect(compareWith(e.io, '/dev/datto0', e.readSnapshot(0, 0, 3 << 20)).blocks).toBe(0);
  });

  it('npm start runs the backup cycle and verifies every image (exit 0)', () => {
    const out = execFileSync('npx', ['tsx', 'src/start.ts'], {
      env: { ...process.env, DBD_START_CYCLES: '3', DBD_START_MIB: '16' },
      encoding: 'utf8',
    });
    expect(out).toContain('done: all images verified');
    expect(out.match(/OK: bit-for-bit identical/g)?.length).toBe(8);
    expect(out).not.toContain('MISMATCH');
    expect(out).toContain('reload-incremental');
  });
});
