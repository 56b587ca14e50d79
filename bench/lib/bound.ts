// SPDX-License-Identifier: GPL-2.0-only
// The driver's bound on in-flight COW data (original data read but not yet
// written to the COW file): from kernel/README.md when it states one in
// MiB, else from the constants in kernel/snap.c (the throttle limit plus
// one read batch, which the mrf thread may add after the limit is reached).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function inflightBound(repo: string): { mib: number | null; source: string } {
  const readme = join(repo, 'kernel', 'README.md');
  if (existsSync(readme)) {
    const text = readFileSync(readme, 'utf8');
    const m = /in-flight[^\n]{0,160}?(\d+)\s*MiB/i.exec(text);
    if (m) return { mib: Number(m[1]), source: `kernel/README.md: "${m[0].trim().slice(0, 160)}"` };
  }
  const snap = join(repo, 'kernel', 'snap.c');
  if (existsSync(snap)) {
    const text = readFileSync(snap, 'utf8');
    const limit = /#define\s+DBD_PENDING_LIMIT\s+(\d+)/.exec(text);
    const batch = /#define\s+DBD_BATCH_PAGES\s+(\d+)/.exec(text);
    if (limit) {
      const pages = Number(limit[1]) + (batch ? Number(batch[1]) : 0);
      const mib = (pages * 4096) / 2 ** 20;
      return {
        mib,
        source: `kernel/snap.c: DBD_PENDING_LIMIT ${limit[1]} pages${batch ? ` + one mrf batch DBD_BATCH_PAGES ${batch[1]} pages` : ''}, 4 KiB each`,
      };
    }
  }
  return { mib: null, source: 'no bound found in kernel/README.md or kernel/snap.c' };
}
