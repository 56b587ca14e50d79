// SPDX-License-Identifier: GPL-2.0-only
// Locations used by the VM harness on the host.
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const VM_TEST_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = resolve(VM_TEST_DIR, '..', '..');

/** Cache/work directory: $DBD_VM_DIR, else $TMPDIR/dattobd-vm. */
export function vmDir(): string {
  return resolve(process.env.DBD_VM_DIR ?? join(process.env.TMPDIR ?? tmpdir(), 'dattobd-vm'));
}
