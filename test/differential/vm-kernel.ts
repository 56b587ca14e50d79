// SPDX-License-Identifier: GPL-2.0-only
/**
 * Guest side of the VM differential: the same commands as runOnEmulator
 * (model.ts), executed on dattobd.ko. ioctls go in-process through the
 * native binding (KernelControl); origin writes are pwrite + fsync on the
 * loop device, in the region after the filesystem; only mount / umount /
 * discard / module reload start a process.
 */
import { closeSync, existsSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../vm/guest/api.js';
import { ERRNO } from '../../src/abi/errno.js';
import { DriverError } from '../../src/driver/errors.js';
import { KernelControl } from '../../src/driver/kernel-backend.js';
import { BLOCK, clipCount, outcomeOf, overflowData, regionOffset, sha, writeData, type Cmd, type Outcome, type VolumeConfig, type WorldConfig } from './model.js';
import { readAt, writeDevice } from './vm-world.js';

function errnoError(e: unknown): never {
  const code = (e as NodeJS.ErrnoException).code;
  const errno = code && code in ERRNO ? ERRNO[code as keyof typeof ERRNO] : ERRNO.EIO;
  throw new DriverError(errno, 'io', (e as Error).message);
}

/** Drop the page cache so that reads of /dev/dattoN reach the driver. */
function dropCaches(): void {
  writeFileSync('/proc/sys/vm/drop_caches', '1');
}

export class KernelWorld {
  readonly ctl = new KernelControl();
  /** open fds of /dev/datto<minor> (busy), per minor */
  private readonly fds = new Map<number, number[]>();
  /** mount state the model sees: undefined = unmounted */
  readonly mounted: (undefined | { ro: boolean })[];

  constructor(
    private readonly t: VmContext,
    readonly cfg: WorldConfig,
  ) {
    this.mounted = cfg.vols.map(() => undefined);
  }

  /**
   * Reset between sequences without rebooting: close snapshot fds, destroy
   * every minor, mount every volume rw, remove COW files, zero the region.
   */
  reset(): void {
    this.closeAll();
    for (let m = 0; m < this.cfg.maxDevices; m++) outcomeOf(() => this.ctl.destroy(m));
    this.cfg.vols.forEach((v, i) => {
      const st = this.mounted[i];
      if (st?.ro) this.t.run(['mount', '-o', 'remount,rw', v.mnt]);
      else if (!st) this.t.run(['mount', v.dev, v.mnt]);
      this.mounted[i] = { ro: false };
      for (const f of readdirSync(v.mnt)) if (f !== 'lost+found') rmSync(join(v.mnt, f), { recursive: true, force: true });
      writeDevice(v.dev, v.fsBytes, new Uint8Array(regionBytes(this.cfg)));
    });
  }

  closeAll(): void {
    for (const list of this.fds.values()) for (const fd of list) closeSync(fd);
    this.fds.clear();
  }

  private volOfMinor(minor: number): VolumeConfig {
    const r = outcomeOf(() => this.ctl.info(minor));
    const bdev = r.outcome === 'OK' ? (r.value as { bdev: string }).bdev : undefined;
    return this.cfg.vols.find((v) => v.dev === bdev) ?? this.cfg.vols[0]!;
  }

  run(c: Cmd): { outcome: Outcome; value?: unknown } {
    const cfg = this.cfg;
    const V = (i: number): VolumeConfig => cfg.vols[i]!;
    const ctl = this.ctl;
    switch (c.k) {
      case 'setup': {
        const v = V(c.vol);
        return outcomeOf(() => ctl.setupSnapshot({ minor: c.minor, bdev: v.dev, cow: `${v.mnt}/${cfg.cowNames[c.cow]}`, fallocatedSpace: c.mib, cacheSize: c.cache }));
      }
      case 'reloadSnap':
      case 'reloadInc': {
        const v = V(c.vol);
        const p = { minor: c.minor, bdev: v.dev, cow: `/${cfg.cowNames[c.cow]}`, cacheSize: c.cache };
        return outcomeOf(() => (c.k === 'reloadSnap' ? ctl.reloadSnapshot(p) : ctl.reloadIncremental(p)));
      }
      case 'destroy':
        return outcomeOf(() => ctl.destroy(c.minor));
      case 'transInc':
        return outcomeOf(() => ctl.transitionToIncremental(c.minor));
      case 'info':
        return outcomeOf(() => ctl.info(c.minor));
      case 'transSnap': {
        const v = this.volOfMinor(c.minor);
        return outcomeOf(() => ctl.transitionToSnapshot({ minor: c.minor, cow: `${v.mnt}/${cfg.cowNames[c.cow]}`, fallocatedSpace: c.mib }));
      }
      case 'reconfigure':
        return outcomeOf(() => ctl.reconfigure({ minor: c.minor, cacheSize: c.cache }));
      case 'getFree':
        return outcomeOf(() => ctl.getFreeMinor());
      case 'expand':
        return outcomeOf(() => ctl.expandCowFile({ minor: c.minor, size: c.mib }));
      case 'autoExpand':
        return outcomeOf(() => ctl.reconfigureAutoExpand({ minor: c.minor, stepSize: c.step, reservedSpace: c.reserved }));
      case 'mount': {
        const v = V(c.vol);
        if (this.mounted[c.vol]) return { outcome: 'EBUSY' };
        return this.shell(['mount', ...(c.ro ? ['-o', 'ro'] : []), v.dev, v.mnt], () => (this.mounted[c.vol] = { ro: c.ro }));
      }
      case 'umount': {
        const v = V(c.vol);
        if (!this.mounted[c.vol]) return { outcome: 'EINVAL' };
        return this.shell(['umount', v.mnt], () => (this.mounted[c.vol] = undefined));
      }
      case 'remount': {
        const v = V(c.vol);
        const st = this.mounted[c.vol];
        if (!st) return { outcome: 'EINVAL' };
        return this.shell(['mount', '-o', `remount,${c.ro ? 'ro' : 'rw'}`, v.mnt], () => (st.ro = c.ro));
      }
      case 'write': {
        const v = V(c.vol);
        const n = clipCount(cfg, c.block, c.count);
        return outcomeOf(() => writeDevice(v.dev, regionOffset(v, c.block), writeData(c.seed, c.block, n)));
      }
      case 'discard': {
        const v = V(c.vol);
        const n = clipCount(cfg, c.block, c.count);
        return this.shell(['blkdiscard', '-o', String(regionOffset(v, c.block)), '-l', String(n * BLOCK), v.dev], () => undefined);
      }
      case 'cowFull': {
        const v = V(c.vol);
        return outcomeOf(() => writeDevice(v.dev, regionOffset(v, cfg.regionBlocks), overflowData(cfg)));
      }
      case 'readSnap':
        return outcomeOf(() => {
          const v = this.volOfMinor(c.minor);
          const path = `/dev/datto${c.minor}`;
          if (c.minor >= cfg.maxDevices || !existsSync(path)) throw new DriverError(ERRNO.ENOENT, 'read', `${path} does not exist`);
          dropCaches();
          try {
            return sha(readAt(path, regionOffset(v, 0), cfg.regionBlocks * BLOCK));
          } catch (e) {
            // a buffered read turns every bio error into EIO (page cache); the
            // driver's own status (e.g. EBUSY for a dormant device) shows with O_DIRECT
            if ((e as NodeJS.ErrnoException).code === 'EIO') this.directReadErrno(path, regionOffset(v, 0));
            errnoError(e);
          }
        });
      case 'open':
        return outcomeOf(() => {
          const path = `/dev/datto${c.minor}`;
          if (c.minor >= cfg.maxDevices || !existsSync(path)) throw new DriverError(ERRNO.ENOENT, 'open', `${path} does not exist`);
          let fd: number;
          try {
            fd = openSync(path, 'r');
          } catch (e) {
            errnoError(e);
          }
          this.fds.set(c.minor, [...(this.fds.get(c.minor) ?? []), fd]);
        });
      case 'close':
        return outcomeOf(() => {
          const list = this.fds.get(c.minor);
          const fd = list?.pop();
          if (fd === undefined) throw new DriverError(ERRNO.EBADF, 'close', `/dev/datto${c.minor} is not open`);
          closeSync(fd);
        });
      case 'reboot': {
        // clean reboot: close everything, unmount (active devices go dormant), reload the module
        this.closeAll();
        for (const [i, v] of this.cfg.vols.entries()) {
          if (!this.mounted[i]) continue;
          const r = this.shell(['umount', v.mnt], () => (this.mounted[i] = undefined));
          if (r.outcome !== 'OK') return r; // reported as a divergence (the emulator's reboot succeeds)
        }
        return outcomeOf(() => {
          this.t.unloadModule();
          this.t.loadModule({ max_snap_devices: this.cfg.maxDevices });
        });
      }
    }
  }

  /** One O_DIRECT block read through dd; throws DriverError with the driver's errno if it fails. */
  private directReadErrno(path: string, offset: number): void {
    const r = this.t.run(['dd', `if=${path}`, 'of=/dev/null', 'bs=4096', 'count=1', `skip=${offset / BLOCK}`, 'iflag=direct', 'status=none'], { allowFail: true });
    if (r.code === 0) return;
    const known: [RegExp, number][] = [
      [/Device or resource busy/, ERRNO.EBUSY],
      [/Input\/output error/, ERRNO.EIO],
      [/No such device/, ERRNO.ENODEV],
    ];
    for (const [re, errno] of known) if (re.test(r.stderr)) throw new DriverError(errno, 'read', `O_DIRECT read of ${path}: ${r.stderr.trim()}`);
  }

  private shell(argv: string[], onOk: () => unknown): { outcome: Outcome } {
    const r = this.t.run(argv, { allowFail: true });
    if (r.code !== 0) return { outcome: `EXIT${r.code}:${r.stderr.trim().split('\n')[0] ?? ''}` };
    onOk();
    return { outcome: 'OK' };
  }
}

export function regionBytes(cfg: WorldConfig): number {
  return (cfg.regionBlocks + cfg.overflowBlocks) * BLOCK;
}
