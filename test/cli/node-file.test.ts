// SPDX-License-Identifier: GPL-2.0-only
// Block device sizes for the kernel backend come from sysfs by dev_t.
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { devMajorMinor, sysfsBlockDeviceSize } from '../../src/driver/node-file.js';

describe('dev_t decoding (glibc encoding)', () => {
  it('decodes small and large majors/minors', () => {
    expect(devMajorMinor(0x0801)).toEqual({ major: 8, minor: 1 }); // sda1
    expect(devMajorMinor(0xfd00)).toEqual({ major: 253, minor: 0 }); // dm-0
    expect(devMajorMinor(0x10010303)).toEqual({ major: 259, minor: 0x10003 }); // makedev(259, 65539)
    expect(devMajorMinor(0x0a8e)).toEqual({ major: 10, minor: 142 });
  });

  it('agrees with the kernel for /dev/null (1:3)', () => {
    expect(devMajorMinor(statSync('/dev/null').rdev)).toEqual({ major: 1, minor: 3 });
  });
});

describe('sysfs size', () => {
  it('reads <sys>/dev/block/<maj>:<min>/size in sectors', () => {
    const sys = mkdtempSync(join(tmpdir(), 'dbd-sys-'));
    try {
      mkdirSync(join(sys, 'dev', 'block', '252:3'), { recursive: true });
      writeFileSync(join(sys, 'dev', 'block', '252:3', 'size'), '655360\n');
      expect(sysfsBlockDeviceSize((252 << 8) | 3, sys)).toBe(655360 * 512);
      expect(sysfsBlockDeviceSize((252 << 8) | 4, sys)).toBeUndefined();
    } finally {
      rmSync(sys, { recursive: true, force: true });
    }
  });
});
