// SPDX-License-Identifier: GPL-2.0-only
// Harness self-test payload (run by main.ts in its own boot, not part of the
// normal suite): loading a module whose init hits WARN_ON(1) must make the
// harness report this case as failed, with the WARNING excerpt.
import type { VmContext } from '../guest/api.js';

export async function loadBrokenModule(t: VmContext): Promise<void> {
  const ko = t.config.fixtures.broken;
  if (!ko) throw new Error('broken-module fixture not built');
  t.insmod(ko);
}
