// SPDX-License-Identifier: GPL-2.0-only
// The API of VM tests. A VM test file (test/vm/tests/<topic>.vm.ts) exports
// named async functions; each is one case and runs INSIDE the guest with a
// VmContext. Example:
//
//   import assert from 'node:assert/strict';
//   import type { VmContext } from '../guest/api.js';
//   export async function getFreeReturnsZero(t: VmContext) {
//     t.loadModule();
//     assert.equal(t.ioctl.getFree(), 0);
//   }
//
// Everything here is synchronous unless it says otherwise: a guest process
// start is expensive, so prefer few, larger shell commands.
import type { ChildProcess } from 'node:child_process';

export interface GuestConfig {
  kernel: { name: string; kver: string };
  repo: string;
  vmDir: string;
  runDir: string;
  /** absolute path of dattobd.ko built for this kernel, or null */
  moduleKo: string | null;
  /** why moduleKo is null (the build failure, abridged) */
  moduleError: string | null;
  fixtures: Record<string, string | null>;
  ioctlTool: string | null;
  disks: Array<{ dev: string; size: number }>;
  /** cases this guest runs, in order (after the queue's, if there is one) */
  tests: Array<{ file: string; cases: string[] }>;
  /**
   * Cases shared with the other guests of this kernel: the guest runs case i
   * when it creates `<dir>/claim-<i>` (mkdir: exactly one guest succeeds),
   * writing its boot's name into `<dir>/claim-<i>/boot`.
   */
  queue?: { dir: string; boot: string; cases: Array<{ file: string; name: string }> };
  /** default timeout of one command, ms */
  commandTimeoutMs: number;
  /** a case that takes longer fails, and this guest runs no further case */
  caseTimeoutMs: number;
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
  /** milliseconds */
  ms: number;
}

export interface ShOptions {
  /** do not throw on a non-zero exit status */
  allowFail?: boolean;
  input?: string | Buffer;
  timeoutMs?: number;
  cwd?: string;
  env?: Record<string, string>;
}

/** struct dattobd_info as printed by dbd-ioctl info (raw field names). */
export interface IoctlInfo {
  minor: number;
  state: number;
  error: number;
  cache_size: number;
  falloc_size: number;
  seqid: number;
  uuid: string;
  cow: string;
  bdev: string;
  version: number;
  nr_changed_blocks: number;
}

/** An ioctl (or any command) failed with an errno. */
export class GuestErrnoError extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    readonly op: string,
    message: string,
  ) {
    super(message);
    this.name = 'GuestErrnoError';
  }
}

/** Thrown by t.skip(): the case is reported as skipped with the reason. */
export class SkipCase extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'SkipCase';
  }
}

/**
 * ioctls through the dbd-ioctl tool (built from kernel/include/uapi/dattobd.h).
 * Failures throw GuestErrnoError with .code = 'EINVAL', 'EBUSY', ...
 */
export interface IoctlTool {
  getFree(): number;
  info(minor: number): IoctlInfo;
  setup(minor: number, bdev: string, cow: string, fallocMiB?: number, cacheBytes?: number): void;
  reloadSnap(minor: number, bdev: string, cow: string, cacheBytes?: number): void;
  reloadInc(minor: number, bdev: string, cow: string, cacheBytes?: number): void;
  destroy(minor: number): void;
  transitionInc(minor: number): void;
  transitionSnap(minor: number, cow: string, fallocMiB?: number): void;
  reconfigure(minor: number, cacheBytes: number): void;
  expand(minor: number, sizeMiB: number): void;
  autoExpand(minor: number, stepMiB: number, reservedMiB: number): void;
  /** ioctl nr with an int argument (probe unknown commands) */
  raw(nr: number): void;
}

export interface VmContext {
  readonly config: GuestConfig;
  readonly kernel: { name: string; kver: string };
  /** the guest's scratch disks, e.g. /dev/vda, /dev/vdb (contents undefined at case start) */
  readonly disks: readonly string[];
  /** repository root (read-only in the guest) */
  readonly repo: string;
  /** a fresh writable directory for this case (tmpfs) */
  readonly tmp: string;

  /** /bin/sh -c <script>; throws on non-zero exit unless allowFail */
  sh(script: string, opts?: ShOptions): ShResult;
  /** run argv without a shell */
  run(argv: readonly string[], opts?: ShOptions): ShResult;
  /** start a background process (e.g. fio during a snapshot); stopped after the case */
  spawn(argv: readonly string[], opts?: { cwd?: string }): ChildProcess;

  /** insmod the freshly built dattobd.ko (params as key=value) */
  loadModule(params?: Record<string, string | number>): void;
  /** rmmod dattobd; throws if it fails */
  unloadModule(): void;
  moduleLoaded(name?: string): boolean;
  /** insmod a .ko by path */
  insmod(ko: string, params?: Record<string, string | number>): void;
  /** modprobe from the guest kernel's module tree (ext4, xfs, loop, dm-flakey, ...) */
  modprobe(name: string): void;

  /** mkfs.ext4 / mkfs.xfs on a device (forced, quiet; ext4 without lazy init unless extraArgs has its own -E) */
  mkfs(kind: 'ext4' | 'xfs', dev: string, extraArgs?: readonly string[]): void;
  /** mount on a fresh directory under /mnt and return it; unmounted after the case */
  mount(dev: string, opts?: { type?: string; options?: string; dir?: string }): string;
  umount(dirOrDev: string): void;

  readonly ioctl: IoctlTool;
  /** JSON.parse of /proc/datto-info (throws with the raw text on a parse error) */
  procInfo(): { version: string; devices: Array<Record<string, unknown>> };

  /** kernel log lines written since this case started */
  kmsg(): string[];
  /** print a line to the case's log (shown on failure) */
  log(...args: unknown[]): void;
  /**
   * Before injecting a fault: kernel-log problems of `kind` (a logscan kind,
   * e.g. 'I/O error') whose line matches `pattern` are expected until the
   * case ends, in the case's and in the boot's log check. Name the faulty
   * device in the pattern, never a kind as a whole.
   */
  allowKernelLog(kind: string, pattern: RegExp, why: string): void;
  /** end the case as skipped; use only for a real, reported reason */
  skip(reason: string): never;
}

export type VmCase = (t: VmContext) => void | Promise<void>;
