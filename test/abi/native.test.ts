// SPDX-License-Identifier: GPL-2.0-only
// The node-addon-api binding: built from the UAPI header (its compiled view of
// the ABI must equal src/abi), errors carry errno name/number, and the kernel
// backend turns them into DriverError / "module not loaded". Runs on the host
// without the module: the control device is replaced by /dev/null or a
// missing path.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { IOCTL, STRUCT_SIZE } from '../../src/abi/ioctl.js';
import { DriverError } from '../../src/driver/errors.js';
import { KernelControl, ModuleNotLoadedError, kernelBackend } from '../../src/driver/kernel-backend.js';
import { isNativeErrnoError, loadNative, nativeAddonCandidates, type NativeBinding } from '../../src/native/index.js';

const root = resolve(import.meta.dirname, '..', '..');
let b: NativeBinding;

beforeAll(() => {
  if (!nativeAddonCandidates({}).some((p) => existsSync(p))) {
    const r = spawnSync('npm', ['run', 'build:native'], { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`npm run build:native failed:\n${r.stdout}\n${r.stderr}`);
  }
  b = loadNative({});
}, 120_000);

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('native binding', () => {
  it('was compiled against the same ABI as src/abi', () => {
    const ts = Object.fromEntries(Object.entries(IOCTL).map(([k, v]) => [k, v >>> 0]));
    expect(b.abi.ioctl).toEqual(ts);
    expect(b.abi.structSize).toEqual(STRUCT_SIZE);
  });

  it('reports a missing control device as open/ENOENT', () => {
    b.setControlPath('/nonexistent/datto-ctl');
    const e = thrown(() => b.getFree());
    expect(isNativeErrnoError(e)).toBe(true);
    expect(e).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open', path: '/nonexistent/datto-ctl' });
  });

  it('reports an ioctl failure with errno name and number (ENOTTY on /dev/null)', () => {
    b.setControlPath('/dev/null');
    for (const f of [
      () => b.getFree(),
      () => b.info(0),
      () => b.destroy(0),
      () => b.setupSnap({ minor: 0, bdev: '/dev/x', cow: null, fallocatedSpace: 0, cacheSize: 0 }),
      () => b.rawIoctl(IOCTL.GET_FREE, new Uint8Array(4)),
      () => b.ioctlWithPointer(IOCTL.DESTROY, 0xdeadbeefn),
    ]) {
      expect(thrown(f)).toMatchObject({ code: 'ENOTTY', errno: 25, syscall: 'ioctl' });
    }
  });

  it('refuses arguments the ABI cannot carry', () => {
    expect(thrown(() => b.destroy(-1))).toBeInstanceOf(RangeError);
    expect(thrown(() => b.destroy(2 ** 32))).toBeInstanceOf(RangeError);
    expect(thrown(() => b.destroy(1.5))).toBeInstanceOf(RangeError);
    expect(thrown(() => b.reconfigure({ minor: 0, cacheSize: 2n ** 64n }))).toBeInstanceOf(RangeError);
    expect(thrown(() => b.setupSnap({ minor: 0, bdev: 'a\0b', cow: '/c', fallocatedSpace: 0, cacheSize: 0 }))).toBeInstanceOf(TypeError);
  });

  it('reads the size of a block device or says why not', () => {
    expect(thrown(() => b.blockDeviceSize('/dev/null'))).toMatchObject({ code: 'ENOTTY' });
    expect(thrown(() => b.blockDeviceSize('/nonexistent'))).toMatchObject({ code: 'ENOENT', syscall: 'open' });
  });
});

describe('kernel backend over the binding', () => {
  it('turns a missing control device into ModuleNotLoadedError with advice', () => {
    const ctl = new KernelControl({ binding: b, ctlPath: '/nonexistent/datto-ctl', procPath: '/nonexistent/datto-info' });
    const e = thrown(() => ctl.getFreeMinor());
    expect(e).toBeInstanceOf(ModuleNotLoadedError);
    expect((e as DriverError).hint).toContain('modprobe dattobd');
    expect(thrown(() => ctl.procInfo())).toBeInstanceOf(ModuleNotLoadedError);
  });

  it('turns an ioctl errno into a DriverError naming the operation', () => {
    const ctl = new KernelControl({ binding: b, ctlPath: '/dev/null' });
    const e = thrown(() => ctl.transitionToIncremental(3));
    expect(e).toBeInstanceOf(DriverError);
    expect(e).toMatchObject({ code: 'ENOTTY', errno: 25, op: 'transition-to-incremental' });
  });

  it('reads and writes files positionally through node:fs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbd-kb-'));
    try {
      const p = join(dir, 'f');
      writeFileSync(p, Buffer.alloc(10000, 1));
      const io = kernelBackend({ binding: b }).io;
      const f = io.openReadWrite(p);
      expect(f.size()).toBe(10000);
      expect(f.write(new Uint8Array([7, 8, 9]), 4096)).toBe(3);
      const buf = new Uint8Array(8);
      expect(f.read(buf, 4094)).toBe(8);
      expect([...buf]).toEqual([1, 1, 7, 8, 9, 1, 1, 1]);
      expect(f.read(new Uint8Array(100), 9990)).toBe(10);
      f.close();
      expect(io.exists(p)).toBe(true);
      expect(io.realpath(join(dir, '.', 'f'))).toBe(p);
      expect(thrown(() => io.openRead(join(dir, 'missing')))).toMatchObject({ code: 'ENOENT', op: 'open' });
      expect(thrown(() => io.realpath(join(dir, 'missing')))).toMatchObject({ code: 'ENOENT' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
