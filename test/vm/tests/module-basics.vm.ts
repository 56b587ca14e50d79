// SPDX-License-Identifier: GPL-2.0-only
// First VM tests: dattobd.ko loads, exposes its control device and proc
// file, answers IOCTL_GET_FREE, and unloads cleanly (the harness checks the
// kernel log of every case for oopses, WARNINGs, etc.).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { VmContext } from '../guest/api.js';

export async function moduleLoadsAndUnloads(t: VmContext): Promise<void> {
  assert.equal(t.moduleLoaded(), false, 'dattobd must not be loaded at case start');
  t.loadModule();
  assert.equal(t.moduleLoaded(), true, 'dattobd is not in /proc/modules after insmod');
  assert.equal(readFileSync('/sys/module/dattobd/version', 'utf8').trim(), '0.12.1');
  t.unloadModule();
  assert.equal(t.moduleLoaded(), false, 'dattobd still in /proc/modules after rmmod');
  assert.equal(existsSync('/dev/datto-ctl'), false, '/dev/datto-ctl remains after rmmod');
  assert.equal(existsSync('/proc/datto-info'), false, '/proc/datto-info remains after rmmod');
}

export async function controlDeviceExists(t: VmContext): Promise<void> {
  t.loadModule();
  const st = statSync('/dev/datto-ctl');
  assert.ok(st.isCharacterDevice(), '/dev/datto-ctl is not a character device');
  // misc device: major 10 (Linux dev_t: major = bits 8..19 plus bits 32..)
  const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn) | Number((BigInt(st.rdev) >> 32n) & ~0xfffn);
  assert.equal(major, 10, `/dev/datto-ctl major is ${major}, expected 10 (misc)`);
  const devices = readFileSync('/proc/devices', 'utf8');
  assert.match(devices, /^\s*\d+ datto$/m, 'block driver "datto" not registered in /proc/devices');
}

export async function getFreeReturnsZero(t: VmContext): Promise<void> {
  t.loadModule();
  assert.equal(t.ioctl.getFree(), 0);
}

export async function procInfoIsJson(t: VmContext): Promise<void> {
  t.loadModule();
  const raw = readFileSync('/proc/datto-info', 'utf8');
  t.log(raw);
  const info = t.procInfo();
  assert.equal(info.version, '0.12.1');
  assert.deepEqual(info.devices, []);
  assert.equal(raw, '{\n\t"version": "0.12.1",\n\t"devices": [\n\n\t]\n}\n', 'exact empty /proc/datto-info text (SPEC §4.1)');
}

export async function unknownMinorInfoIsEnoent(t: VmContext): Promise<void> {
  t.loadModule();
  assert.throws(() => t.ioctl.info(0), (e: unknown) => (e as { code?: string }).code === 'ENOENT');
}
