// SPDX-License-Identifier: GPL-2.0-only
// The native ioctl binding against the real module: typed calls reach the
// right ioctl, and the raw entry points deliver malformed arguments the
// kernel must refuse (SPEC §1.2–1.4): NULL and wild pointers, over-long
// paths, unknown commands.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { VmContext } from '../guest/api.js';
import { IOCTL, STRUCT_SIZE } from '../../../src/abi/ioctl.js';
import { loadNative, type NativeBinding } from '../../../src/native/index.js';

function binding(t: VmContext): NativeBinding {
  const p = process.env['DATTOBD_NATIVE'];
  if (!p || !existsSync(p)) t.skip(`the ioctl binding is not built (${p ?? 'DATTOBD_NATIVE unset'}): run \`npm run build:native\` on the host`);
  if (!t.config.moduleKo) t.skip(`dattobd.ko did not build: ${t.config.moduleError ?? 'unknown'}`);
  return loadNative();
}

function errnoOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'no error';
}

export async function bindingTypedCalls(t: VmContext): Promise<void> {
  const b = binding(t);
  t.loadModule();
  b.setControlPath('/dev/datto-ctl');
  assert.equal(b.getFree(), 0);
  assert.equal(errnoOf(() => b.info(0)), 'ENOENT');
  assert.equal(errnoOf(() => b.info(255)), 'EINVAL');
  assert.equal(errnoOf(() => b.destroy(0)), 'ENOENT');
  assert.equal(errnoOf(() => b.transitionInc(1)), 'ENOENT');
  assert.equal(errnoOf(() => b.reconfigure({ minor: 2, cacheSize: 0 })), 'ENOENT');
  assert.equal(errnoOf(() => b.expandCowFile({ minor: 2, size: 1 })), 'ENOENT');
  assert.equal(errnoOf(() => b.reconfigureAutoExpand({ minor: 2, stepSize: 1, reservedSpace: 0 })), 'ENOENT');
  assert.equal(errnoOf(() => b.transitionSnap({ minor: 2, cow: '/x', fallocatedSpace: 0 })), 'ENOENT');
  // setup of an unmounted device: EINVAL ("illegal to perform setup while unmounted")
  assert.equal(errnoOf(() => b.setupSnap({ minor: 0, bdev: t.disks[0]!, cow: '/tmp/c', fallocatedSpace: 0, cacheSize: 0 })), 'EINVAL');
  assert.equal(errnoOf(() => b.setupSnap({ minor: 0, bdev: '/nonexistent', cow: '/tmp/c', fallocatedSpace: 0, cacheSize: 0 })), 'ENOENT');
}

export async function bindingMalformedArguments(t: VmContext): Promise<void> {
  const b = binding(t);
  t.loadModule();
  b.setControlPath('/dev/datto-ctl');
  const disk = t.disks[0]!;
  // NULL paths are EINVAL, in every command that takes one
  assert.equal(errnoOf(() => b.setupSnap({ minor: 0, bdev: null, cow: '/tmp/c', fallocatedSpace: 0, cacheSize: 0 })), 'EINVAL');
  assert.equal(errnoOf(() => b.setupSnap({ minor: 0, bdev: disk, cow: null, fallocatedSpace: 0, cacheSize: 0 })), 'EINVAL');
  assert.equal(errnoOf(() => b.reloadSnap({ minor: 0, bdev: null, cow: '/c', cacheSize: 0 })), 'EINVAL');
  assert.equal(errnoOf(() => b.reloadInc({ minor: 0, bdev: disk, cow: null, cacheSize: 0 })), 'EINVAL');
  // paths longer than PAGE_SIZE - 1 are EINVAL
  const long = '/' + 'a'.repeat(5000);
  assert.equal(errnoOf(() => b.reloadSnap({ minor: 0, bdev: long, cow: '/c', cacheSize: 0 })), 'EINVAL');
  // minor out of range
  assert.equal(errnoOf(() => b.reloadSnap({ minor: 1000, bdev: disk, cow: '/c', cacheSize: 0 })), 'EINVAL');
  // the parameter struct itself at a wild or NULL address: EFAULT
  for (const cmd of [IOCTL.SETUP_SNAP, IOCTL.RELOAD_SNAP, IOCTL.DESTROY, IOCTL.DATTOBD_INFO, IOCTL.GET_FREE, IOCTL.EXPAND_COW_FILE]) {
    assert.equal(errnoOf(() => b.ioctlWithPointer(cmd, 0)), 'EFAULT', `cmd 0x${cmd.toString(16)} with NULL`);
    assert.equal(errnoOf(() => b.ioctlWithPointer(cmd, 0xdead000000000000n)), 'EFAULT', `cmd 0x${cmd.toString(16)} with a kernel address`);
  }
  // string pointers inside a valid struct that point nowhere: EFAULT
  const setup = new Uint8Array(STRUCT_SIZE.setup_params);
  const dv = new DataView(setup.buffer);
  dv.setBigUint64(0, 0x10n, true); // bdev -> unmapped page
  dv.setBigUint64(8, 0x10n, true);
  assert.equal(errnoOf(() => b.rawIoctl(IOCTL.SETUP_SNAP, setup)), 'EFAULT');
  // unknown commands and a wrong size encoded in the number: EINVAL (not ENOTTY)
  assert.equal(errnoOf(() => b.rawIoctl(0x4004910c, new Uint8Array(8))), 'EINVAL');
  assert.equal(errnoOf(() => b.rawIoctl(IOCTL.SETUP_SNAP ^ 0x10000, new Uint8Array(64))), 'EINVAL');
  // raw GET_FREE writes the minor into the buffer
  const out = new Uint8Array(4).fill(0xff);
  assert.equal(b.rawIoctl(IOCTL.GET_FREE, out), 0);
  assert.equal(new DataView(out.buffer).getInt32(0, true), 0);
  // nothing was set up by any of this
  assert.deepEqual(t.procInfo().devices, []);
}
