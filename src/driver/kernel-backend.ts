// SPDX-License-Identifier: GPL-2.0-only
/**
 * The kernel backend: the dattobd module through the native ioctl binding
 * (loaded lazily on the first control call), /proc/datto-info, and node:fs
 * for /dev/datto<N>, COW files and images.
 */
import { readFileSync } from 'node:fs';
import { CTL_DEVICE_PATH, PROC_INFO_PATH } from '../abi/constants.js';
import { ERRNO } from '../abi/errno.js';
import { isNativeErrnoError, loadNative, NativeBindingMissingError, type NativeBinding, type U64 } from '../native/index.js';
import { DriverError } from './errors.js';
import { fsError, nodeIo } from './node-file.js';
import type { Backend, DeviceInfo, DriverControl } from './types.js';

/** The module is not loaded: /dev/datto-ctl or /proc/datto-info is missing. */
export class ModuleNotLoadedError extends DriverError {
  constructor(op: string, path: string) {
    super(
      ERRNO.ENOENT,
      op,
      `the dattobd kernel module does not appear to be loaded (${path} is missing)`,
      'load it with `modprobe dattobd` (or `insmod dattobd.ko` from a build tree), then retry',
    );
    this.name = 'ModuleNotLoadedError';
  }
}

/** The native ioctl binding is not built. */
export class BindingMissingError extends DriverError {
  constructor(op: string, cause: NativeBindingMissingError) {
    super(ERRNO.ENOSYS, op, cause.message, 'run `npm run build:native` in the dattobd-ts checkout');
    this.name = 'BindingMissingError';
  }
}

function num(v: U64): number {
  return typeof v === 'bigint' ? Number(v) : v;
}

export interface KernelBackendOptions {
  /** Control device path (default /dev/datto-ctl). */
  ctlPath?: string;
  /** /proc file path (default /proc/datto-info). */
  procPath?: string;
  /** Binding to use instead of loading the addon (tests). */
  binding?: NativeBinding;
}

export class KernelControl implements DriverControl {
  private bindingCache: NativeBinding | undefined;
  private readonly ctlPath: string;
  private readonly procPath: string;

  constructor(opts: KernelBackendOptions = {}) {
    this.bindingCache = opts.binding;
    this.ctlPath = opts.ctlPath ?? CTL_DEVICE_PATH;
    this.procPath = opts.procPath ?? PROC_INFO_PATH;
  }

  private binding(op: string): NativeBinding {
    if (!this.bindingCache) {
      try {
        this.bindingCache = loadNative();
      } catch (e) {
        if (e instanceof NativeBindingMissingError) throw new BindingMissingError(op, e);
        throw e;
      }
    }
    if (this.bindingCache.getControlPath() !== this.ctlPath) this.bindingCache.setControlPath(this.ctlPath);
    return this.bindingCache;
  }

  /** Run one binding call, converting its errors into DriverError. */
  private call<T>(op: string, f: (b: NativeBinding) => T): T {
    const b = this.binding(op);
    try {
      return f(b);
    } catch (e) {
      if (isNativeErrnoError(e)) {
        if (e.syscall === 'open' && e.code === 'ENOENT') throw new ModuleNotLoadedError(op, this.ctlPath);
        const msg = e.syscall === 'open' ? `cannot open ${e.path}: ${e.code}` : `${op}: ${e.code}`;
        throw new DriverError(e.errno, op, msg);
      }
      throw e;
    }
  }

  setupSnapshot(p: Parameters<DriverControl['setupSnapshot']>[0]): void {
    this.call('setup-snapshot', (b) => b.setupSnap(p));
  }
  reloadSnapshot(p: Parameters<DriverControl['reloadSnapshot']>[0]): void {
    this.call('reload-snapshot', (b) => b.reloadSnap(p));
  }
  reloadIncremental(p: Parameters<DriverControl['reloadIncremental']>[0]): void {
    this.call('reload-incremental', (b) => b.reloadInc(p));
  }
  destroy(minor: number): void {
    this.call('destroy', (b) => b.destroy(minor));
  }
  transitionToIncremental(minor: number): void {
    this.call('transition-to-incremental', (b) => b.transitionInc(minor));
  }
  transitionToSnapshot(p: Parameters<DriverControl['transitionToSnapshot']>[0]): void {
    this.call('transition-to-snapshot', (b) => b.transitionSnap(p));
  }
  reconfigure(p: Parameters<DriverControl['reconfigure']>[0]): void {
    this.call('reconfigure', (b) => b.reconfigure(p));
  }
  info(minor: number): DeviceInfo {
    const i = this.call('info', (b) => b.info(minor));
    return {
      minor: i.minor,
      state: num(i.state),
      error: i.error,
      cacheSize: num(i.cacheSize),
      fallocSize: num(i.fallocSize),
      seqid: num(i.seqid),
      uuid: i.uuid,
      cow: i.cow,
      bdev: i.bdev,
      version: num(i.version),
      nrChangedBlocks: num(i.nrChangedBlocks),
    };
  }
  getFreeMinor(): number {
    return this.call('get-free-minor', (b) => b.getFree());
  }
  expandCowFile(p: Parameters<DriverControl['expandCowFile']>[0]): void {
    this.call('expand-cow-file', (b) => b.expandCowFile(p));
  }
  reconfigureAutoExpand(p: Parameters<DriverControl['reconfigureAutoExpand']>[0]): void {
    this.call('reconfigure-auto-expand', (b) => b.reconfigureAutoExpand(p));
  }
  procInfo(): string {
    try {
      return readFileSync(this.procPath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ModuleNotLoadedError('info', this.procPath);
      throw fsError(e, 'read', this.procPath);
    }
  }
}

export function kernelBackend(opts: KernelBackendOptions = {}): Backend {
  const ctl = new KernelControl(opts);
  const io = nodeIo((path) => {
    const b = opts.binding ?? tryLoadNative();
    if (!b) throw new DriverError(ERRNO.ENOSYS, 'size', `cannot determine the size of ${path}: sysfs has no entry and the native binding is not built`);
    return num(b.blockDeviceSize(path));
  });
  return { name: 'kernel', ctl, io };
}

function tryLoadNative(): NativeBinding | undefined {
  try {
    return loadNative();
  } catch {
    return undefined;
  }
}
