// SPDX-License-Identifier: GPL-2.0-only
// Discovery of VM test files and their cases (on the host).
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO, VM_TEST_DIR } from './paths.js';

export interface TestFile {
  /** repo-relative path, e.g. test/vm/tests/module.vm.ts */
  file: string;
  cases: string[];
  /**
   * Declared known failures: `export const knownFailures = { caseName: 'reason' }`
   * in the test file. Such a case still runs; a failure is reported as XFAIL
   * with its reason and error (counted as skipped, never as passed), a pass as
   * XPASS (counted as passed, with a note to remove the declaration).
   */
  known?: Record<string, string>;
}

/** Every test/vm/tests/*.vm.ts with its exported functions (cases), sorted. */
export async function discoverTests(dir = join(VM_TEST_DIR, 'tests')): Promise<TestFile[]> {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.vm.ts'))
    .sort();
  const out: TestFile[] = [];
  for (const f of files) {
    const abs = join(dir, f);
    const mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
    const cases = Object.keys(mod)
      .filter((k) => typeof mod[k] === 'function')
      .sort();
    const known = mod.knownFailures && typeof mod.knownFailures === 'object'
      ? (mod.knownFailures as Record<string, string>) : undefined;
    out.push({ file: relative(REPO, abs), cases, ...(known ? { known } : {}) });
  }
  return out;
}

/** Keep cases whose "file:case" contains one of the comma-separated substrings. */
export function filterTests(tests: readonly TestFile[], filter: string | undefined): TestFile[] {
  const subs = (filter ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (!subs.length) return tests.map((t) => ({ ...t, cases: [...t.cases] }));
  return tests
    .map((t) => ({ ...t, cases: t.cases.filter((c) => subs.some((s) => `${t.file}:${c}`.includes(s))) }))
    .filter((t) => t.cases.length > 0);
}
