// SPDX-License-Identifier: GPL-2.0-only
// Every file of kernel/ passes the kernel's checkpatch.pl (--no-tree -f)
// without errors or warnings.  checkpatch comes from the Debian package
// linux-source-6.12 (/usr/src/linux-source-6.12.tar.xz), or from
// $CHECKPATCH (path to checkpatch.pl, with spelling.txt and
// const_structs.checkpatch next to it).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const kernelDir = join(root, 'kernel');
const TARBALL = '/usr/src/linux-source-6.12.tar.xz';

function findCheckpatch(): string {
  if (process.env.CHECKPATCH) return process.env.CHECKPATCH;
  const dir = join(tmpdir(), 'dbd-checkpatch-6.12');
  const found = (): string | undefined => {
    if (!existsSync(dir)) return undefined;
    for (const d of readdirSync(dir)) {
      const p = join(dir, d, 'scripts', 'checkpatch.pl');
      if (existsSync(p)) return p;
    }
    return undefined;
  };
  const have = found();
  if (have) return have;
  if (!existsSync(TARBALL)) {
    throw new Error(`checkpatch.pl not available: install the Debian package linux-source-6.12 (${TARBALL}) or set CHECKPATCH`);
  }
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('tar', ['-xJf', TARBALL, '-C', dir, '--wildcards',
    '*/scripts/checkpatch.pl', '*/scripts/spelling.txt', '*/scripts/const_structs.checkpatch'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`extracting checkpatch from ${TARBALL} failed: ${r.stderr}`);
  const p = found();
  if (!p) throw new Error(`checkpatch.pl not found in ${TARBALL}`);
  return p;
}

function kernelFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...kernelFiles(p));
    else if (/\.(c|h)$|^(Kbuild|Makefile)$/.test(name)) out.push(p);
  }
  return out.sort();
}

describe('kernel/ coding style', () => {
  it('checkpatch.pl --no-tree -f reports no errors or warnings', () => {
    const checkpatch = findCheckpatch();
    const files = kernelFiles(kernelDir);
    expect(files.length).toBeGreaterThan(10);
    const r = spawnSync('perl', [checkpatch, '--no-tree', '-f', '--terse', '--show-types', ...files.map((f) => relative(root, f))], {
      cwd: root,
      encoding: 'utf8',
    });
    const problems = r.stdout.split('\n').filter((l) => /: (ERROR|WARNING):/.test(l));
    expect(problems, problems.join('\n')).toEqual([]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 120_000);
});
