// SPDX-License-Identifier: GPL-2.0-only
/**
 * Which driver the tools talk to: the kernel module (default) or the pure
 * TypeScript emulator (`DBDCTL_BACKEND=emulator` or the hidden `--backend`
 * option; an emulator started this way is empty — tests pass their own).
 */
import { kernelBackend } from '../driver/kernel-backend.js';
import type { Backend } from '../driver/types.js';

export type BackendName = 'kernel' | 'emulator';

export const BACKEND_ENV = 'DBDCTL_BACKEND';

export class BackendChoiceError extends Error {
  constructor(value: string) {
    super(`unknown backend "${value}" (${BACKEND_ENV} or --backend): use "kernel" or "emulator"`);
    this.name = 'BackendChoiceError';
  }
}

export function backendName(option: string | undefined, env: NodeJS.ProcessEnv): BackendName {
  const v = option ?? env[BACKEND_ENV] ?? 'kernel';
  if (v !== 'kernel' && v !== 'emulator') throw new BackendChoiceError(v);
  return v;
}

export async function createBackend(name: BackendName): Promise<Backend> {
  if (name === 'kernel') return kernelBackend();
  // Loaded only when asked for, so the kernel path never pulls in the emulator.
  const { Emulator } = await import('../../emulator/index.js');
  return new Emulator().backend();
}
