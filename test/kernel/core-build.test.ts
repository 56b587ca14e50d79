// SPDX-License-Identifier: GPL-2.0-only
// Builds kernel/core (the driver's kernel-independent decision logic) in
// userspace with -Wall -Wextra -Werror and runs its C unit test.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const coreDir = join(root, 'kernel', 'core');

describe('kernel core (userspace build)', () => {
  it('compiles warning-free and passes its C unit test', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'dbd-core-')), 'core_test');
    const sources = readdirSync(coreDir)
      .filter((f) => f.endsWith('.c'))
      .map((f) => join(coreDir, f));
    expect(sources.length).toBeGreaterThan(0);
    const cc = spawnSync(
      'gcc',
      ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', '-I', coreDir, '-o', out,
        join(root, 'test', 'kernel', 'core_test.c'), ...sources],
      { encoding: 'utf8' },
    );
    expect(cc.stderr, 'gcc diagnostics').toBe('');
    expect(cc.status).toBe(0);
    const run = spawnSync(out, [], { encoding: 'utf8' });
    expect(run.stdout).toContain('core ok');
    expect(run.status).toBe(0);
  });

  it('has no kernel includes outside the shim', () => {
    for (const f of readdirSync(coreDir)) {
      if (f === 'dbd_shim.h') continue;
      const r = spawnSync('grep', ['-n', '#include <linux/', join(coreDir, f)], { encoding: 'utf8' });
      expect(r.stdout, f).toBe('');
    }
  });
});
