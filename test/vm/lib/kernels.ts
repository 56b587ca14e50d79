// SPDX-License-Identifier: GPL-2.0-only
// Kernel selection: runs setup.sh (idempotent, cached) and reads the
// kernels.json it writes.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VM_TEST_DIR, vmDir } from './paths.js';

/** Debian's kernels: the default selection, prepared by setup.sh. */
export const KERNEL_NAMES = ['6.1', '6.12', '6.12-rt'] as const;
/** Selected only by name: the debug-kernel lane (test/vm/debug-kernel.sh). */
export const DEBUG_KERNEL = '6.12-debug';
export type KernelName = (typeof KERNEL_NAMES)[number] | typeof DEBUG_KERNEL;

export interface KernelInfo {
  name: KernelName;
  kver: string;
  /** directory for `make -C` */
  headers: string;
  vmlinuz: string;
  /** directory containing lib/modules/<kver> */
  modules: string;
}

export class HarnessError extends Error {
  constructor(message: string, readonly hint: string) {
    super(`${message}\n  hint: ${hint}`);
    this.name = 'HarnessError';
  }
}

/** Kernels selected by DBD_VM_KERNELS (comma list), default all three. */
export function selectedKernelNames(): KernelName[] {
  const raw = process.env.DBD_VM_KERNELS?.trim();
  if (!raw) return [...KERNEL_NAMES];
  const names = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!(KERNEL_NAMES as readonly string[]).includes(n) && n !== DEBUG_KERNEL) {
      throw new HarnessError(`unknown kernel '${n}' in DBD_VM_KERNELS`, `use a comma list of ${KERNEL_NAMES.join(', ')} or ${DEBUG_KERNEL}`);
    }
  }
  return names as KernelName[];
}

/** Run setup.sh for all kernels (so kernels.json is complete) and return the selected ones. */
export function prepareKernels(names: readonly KernelName[], log: (s: string) => void): KernelInfo[] {
  const t0 = Date.now();
  const r = spawnSync('bash', [join(VM_TEST_DIR, 'setup.sh')], {
    env: { ...process.env, DBD_VM_DIR: vmDir(), DBD_VM_KERNELS: KERNEL_NAMES.join(',') },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0) {
    throw new HarnessError(
      `VM setup failed (exit ${r.status ?? r.signal}):\n${(r.stderr ?? '').trim()}\n${(r.stdout ?? '').trim()}`,
      'setup.sh needs root and apt access to Debian repositories (run it directly to see each step: bash test/vm/setup.sh)',
    );
  }
  for (const l of (r.stdout ?? '').trim().split('\n')) if (l) log(l);
  log(`setup: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const file = join(vmDir(), 'kernels.json');
  if (!existsSync(file)) throw new HarnessError(`${file} missing after setup`, 'run bash test/vm/setup.sh and read its output');
  const all = JSON.parse(readFileSync(file, 'utf8')) as KernelInfo[];
  if (names.includes(DEBUG_KERNEL)) {
    const dbg = join(vmDir(), 'debug', 'kernel.json');
    if (!existsSync(dbg)) {
      throw new HarnessError(`${dbg} missing: the debug kernel is not built`, 'npm run test:vm:debug builds it first (bash test/vm/debug-kernel.sh, about 30 min)');
    }
    all.push(JSON.parse(readFileSync(dbg, 'utf8')) as KernelInfo);
  }
  return names.map((n) => {
    const k = all.find((x) => x.name === n);
    if (!k) throw new HarnessError(`kernel ${n} not in ${file}`, 'delete the file and rerun setup.sh');
    return k;
  });
}
