// SPDX-License-Identifier: GPL-2.0-only
/**
 * Regenerate fixtures/ from the module: runs the fixture cases of
 * test/vm/tests/diff-fixtures.vm.ts in the VM (one kernel, default 6.12),
 * then copies every file the guest wrote to <run dir>/fixtures/ into
 * fixtures/ and rebuilds fixtures/manifest.json. Cases that fail (a module
 * feature missing) produce no file; their old fixture, if any, is kept.
 *
 *   npx tsx test/differential/make-fixtures.ts [kernel]
 *   npx tsx test/differential/make-fixtures.ts --from <kept run dir>   (copy only)
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FixtureEntry } from './fixture-manifest.js';

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const fromIdx = process.argv.indexOf('--from');
const from = fromIdx >= 0 ? process.argv[fromIdx + 1] : undefined;
const kernel = from ? '' : (process.argv[2] ?? '6.12');
const vmDir = resolve(process.env.DBD_VM_DIR ?? join(process.env.TMPDIR ?? '/tmp', 'dattobd-vm'));
const runs = join(vmDir, 'runs');
const startedAt = Date.now();

const r = from
  ? { status: 0 }
  : spawnSync('npx', ['tsx', 'test/vm/main.ts'], {
      cwd: repo,
      stdio: 'inherit',
      env: { ...process.env, DBD_VM_KERNELS: kernel, DBD_VM_TESTS: 'diff-fixtures.vm.ts:fixture', DBD_VM_SELFTEST: '0', DBD_VM_KEEP: '1' },
    });

// the run directory of this boot: the newest <kernel>-suite-* created after we started
const dirs = existsSync(runs)
  ? readdirSync(runs)
      .filter((d) => d.startsWith(`${kernel}-suite-`))
      .map((d) => join(runs, d))
      .filter((d) => statSync(d).mtimeMs >= startedAt - 1000)
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
  : [];
const src = from ? join(resolve(from), 'fixtures') : dirs.map((d) => join(d, 'fixtures')).find((d) => existsSync(d));
if (!src || !existsSync(src)) {
  console.error(`no fixtures were written by the guest (VM exit ${r.status}); nothing copied`);
  process.exit(1);
}
const out = join(repo, 'fixtures');
const manifestPath = join(out, 'manifest.json');
const old: FixtureEntry[] = existsSync(manifestPath) ? (JSON.parse(readFileSync(manifestPath, 'utf8')) as FixtureEntry[]) : [];
const byName = new Map(old.map((e) => [e.name, e]));
for (const f of readdirSync(src).filter((f) => f.endsWith('.json'))) {
  const entry = JSON.parse(readFileSync(join(src, f), 'utf8')) as FixtureEntry;
  copyFileSync(join(src, entry.file), join(out, entry.file));
  byName.set(entry.name, entry);
  console.log(`fixtures/${entry.file}: ${entry.length} bytes (${entry.kernel})`);
}
const list = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
writeFileSync(manifestPath, JSON.stringify(list, null, 2) + '\n');
console.log(`fixtures/manifest.json: ${list.length} entries`);
process.exit(r.status === 0 ? 0 : 2);
