// SPDX-License-Identifier: GPL-2.0-only
// The README's test command (`npm test`): type-check, the fast suite (vitest:
// unit, model-based, in-process differential), then the VM suite on every
// kernel. Prints one closing line `N passed, N failed[, N skipped]`.
//
// Environment: DBD_SKIP_VM=1 skips the VM suite (reported as skipped, never
// as passed); everything else is passed through to the suites.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const out = mkdtempSync(join(tmpdir(), 'dbd-test-'));
let passed = 0;
let failed = 0;
let skipped = 0;
const phases = [];
let phaseStart = Date.now();
function phaseDone(name) {
  const now = Date.now();
  phases.push(`${name} ${((now - phaseStart) / 1000).toFixed(0)} s`);
  phaseStart = now;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  return r.status ?? 1;
}

// 1. type-check the whole tree
console.log('== typecheck');
if (run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']) === 0) passed++;
else {
  console.log('typecheck FAILED');
  failed++;
}
phaseDone('typecheck');

// 2. fast suite
console.log('== fast suite (vitest)');
const vitestJson = join(out, 'vitest.json');
const vs = run('npx', [
  'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${vitestJson}`,
]);
if (existsSync(vitestJson)) {
  const j = JSON.parse(readFileSync(vitestJson, 'utf8'));
  passed += j.numPassedTests ?? 0;
  failed += j.numFailedTests ?? 0;
  skipped += (j.numPendingTests ?? 0) + (j.numTodoTests ?? 0);
  // a suite that failed to load counts as a failure even with no test counted
  if (vs !== 0 && (j.numFailedTests ?? 0) === 0) failed++;
} else {
  console.log('vitest produced no report');
  failed++;
}
phaseDone('fast suite');

// 3. VM suite
if (process.env.DBD_SKIP_VM === '1') {
  console.log('== VM suite skipped (DBD_SKIP_VM=1)');
  skipped++;
} else {
  console.log('== VM suite');
  const vmJson = join(out, 'vm.json');
  const vr = run('npx', ['tsx', 'test/vm/main.ts', '--json', vmJson]);
  if (existsSync(vmJson)) {
    const j = JSON.parse(readFileSync(vmJson, 'utf8'));
    passed += j.passed ?? 0;
    failed += j.failed ?? 0;
    skipped += j.skipped ?? 0;
    if (vr !== 0 && (j.failed ?? 0) === 0) failed++;
  } else {
    console.log('VM suite produced no report');
    failed++;
  }
  phaseDone('VM suite');
}

console.log('');
console.log(`npm test time: ${phases.join(', ')}`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
