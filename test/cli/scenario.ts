// SPDX-License-Identifier: GPL-2.0-only
/**
 * The dattobd README backup cycle on the emulator, driven through dbdctl:
 * setup-snapshot, full copy of /dev/datto0 into an image, transition to
 * incremental, writes, transition-to-snapshot with a new COW file. Leaves
 * everything ready for `update-img /dev/datto0 <old cow> <image>`.
 */
import { expect } from 'vitest';
import { Emulator } from '../../emulator/index.js';
import type { Backend } from '../../src/driver/types.js';
import { dbdctl } from './run-cli.js';

export const MIB = 1048576;

/** Deterministic pseudo-random numbers (xorshift32). */
export function rng(seed: number): () => number {
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

export function pattern(len: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = Math.floor(r() * 256);
  return out;
}

export interface Cycle {
  emu: Emulator;
  b: Backend;
  sizeBytes: number;
  image: string;
  oldCow: string;
  newCow: string;
}

export async function ok(argv: string[], b: Backend): Promise<void> {
  const r = await dbdctl(argv, b);
  expect(r, `dbdctl ${argv.join(' ')}`).toEqual({ code: 0, stdout: '', stderr: '' });
}

export function readAll(b: Backend, path: string): Uint8Array {
  const f = b.io.openRead(path);
  try {
    const out = new Uint8Array(f.size());
    expect(f.read(out, 0)).toBe(out.length);
    return out;
  } finally {
    f.close();
  }
}

export function writeAt(b: Backend, path: string, offset: number, data: Uint8Array): void {
  const f = b.io.openReadWrite(path);
  try {
    f.write(data, offset);
  } finally {
    f.close();
  }
}

/**
 * Run a cycle up to the second snapshot. `writes` are [offset, length] pairs
 * applied to the live volume while incremental.
 */
export async function backupCycle(o: {
  sizeBytes?: number;
  /** Written while incremental. */
  writes: [number, number][];
  /** Written while the first snapshot is active, after the full copy (COWed, then kept as changed). */
  snapshotWrites?: [number, number][];
  seed?: number;
  falloc?: number;
}): Promise<Cycle> {
  const sizeBytes = o.sizeBytes ?? 64 * MIB;
  const emu = new Emulator({ random: rng(o.seed ?? 7) });
  emu.addVolume({ path: '/dev/sda1', sizeBytes });
  emu.mount('/dev/sda1', '/mnt');
  emu.write('/dev/sda1', 0, pattern(Math.min(sizeBytes, 8 * MIB), 1));
  const b = emu.backend();
  await ok(['setup-snapshot', '-f', String(o.falloc ?? 16), '/dev/sda1', '/mnt/.datto1', '0'], b);
  emu.createFile('/backup/img', sizeBytes);
  writeAt(b, '/backup/img', 0, readAll(b, '/dev/datto0'));
  let seed = 100;
  for (const [off, len] of o.snapshotWrites ?? []) emu.write('/dev/sda1', off, pattern(len, seed++));
  await ok(['transition-to-incremental', '0'], b);
  for (const [off, len] of o.writes) emu.write('/dev/sda1', off, pattern(len, seed++));
  await ok(['transition-to-snapshot', '-f', String(o.falloc ?? 16), '/mnt/.datto2', '0'], b);
  return { emu, b, sizeBytes, image: '/backup/img', oldCow: '/mnt/.datto1', newCow: '/mnt/.datto2' };
}
