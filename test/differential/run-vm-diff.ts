// SPDX-License-Identifier: GPL-2.0-only
/**
 * Run the VM differential (test/vm/tests/diff-model.vm.ts) with parameters
 * from this process's environment, and print the number of sequences and
 * commands executed per kernel.
 *
 *   DBD_DIFF_RUNS=200 DBD_DIFF_SEED=42 npx tsx test/differential/run-vm-diff.ts
 *
 * The VM harness does not pass the host's environment into the guest, so the
 * DBD_DIFF_* variables are written to <DBD_VM_DIR>/diff-params-<pid>.json
 * (pid of the harness process, which names the run directories; other
 * concurrent runs never read it), removed afterwards. Other DBD_VM_*
 * variables (kernels, timeouts) are passed to the harness as usual.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const vmDir = resolve(process.env.DBD_VM_DIR ?? join(process.env.TMPDIR ?? '/tmp', 'dattobd-vm'));
const params: Record<string, string> = {};
for (const k of ['DBD_DIFF_RUNS', 'DBD_DIFF_SEED', 'DBD_DIFF_PATH', 'DBD_DIFF_MIN', 'DBD_DIFF_MAX', 'DBD_DIFF_REPLAY']) {
  const v = process.env[k];
  if (v !== undefined) params[k] = v;
}
// a new seed unless one is given (the test suite's default is a fixed one)
if (params['DBD_DIFF_SEED'] === undefined || params['DBD_DIFF_SEED'] === 'random') {
  params['DBD_DIFF_SEED'] = String(Math.floor(Math.random() * 2 ** 31));
  console.log(`DBD_DIFF_SEED=${params['DBD_DIFF_SEED']}`);
}
// node --import tsx runs main.ts in the child process itself: its pid names the run dirs
const child = spawn(process.execPath, ['--import', 'tsx', 'test/vm/main.ts'], {
  cwd: repo,
  stdio: 'inherit',
  env: { DBD_VM_SELFTEST: '0', DBD_VM_CASE_TIMEOUT: '300', ...process.env, DBD_VM_TESTS: process.env.DBD_VM_TESTS ?? 'diff-model', DBD_VM_KEEP: '1' },
});
const pid = child.pid;
const paramsFile = join(vmDir, `diff-params-${pid}.json`);
writeFileSync(paramsFile, JSON.stringify(params) + '\n');
const status = await new Promise<number>((res) => child.on('exit', (code) => res(code ?? 1)));
rmSync(paramsFile, { force: true });

const runs = join(vmDir, 'runs');
const perKernel = new Map<string, { sequences: number; commands: number; ms: number; excluded: string[] }>();
if (existsSync(runs)) {
  for (const d of readdirSync(runs)) {
    const dir = join(runs, d);
    if (!d.endsWith(`-${pid}`)) continue;
    for (const f of readdirSync(dir).filter((x) => /^diff-stats-\d+\.json$/.test(x))) {
      const s = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
        kernel: string;
        sequences: number;
        commands: number;
        ms: number;
        excluded: string[];
        firstDivergence?: string;
        timing?: Record<string, { n: number; kernel: number; emu: number; cmp: number }>;
      };
      if (s.firstDivergence) console.log(`first divergence (${dir}/${f}):\n${s.firstDivergence}`);
      if (process.env.DBD_DIFF_TIMING && s.timing) {
        for (const [k, v] of Object.entries(s.timing)) console.log(`  ${k}: n=${v.n} module ${(v.kernel / v.n).toFixed(0)} ms, emulator ${(v.emu / v.n).toFixed(0)} ms, compare ${(v.cmp / v.n).toFixed(0)} ms`);
      }
      const k = perKernel.get(s.kernel) ?? { sequences: 0, commands: 0, ms: 0, excluded: s.excluded };
      k.sequences += s.sequences;
      k.commands += s.commands;
      k.ms += s.ms;
      perKernel.set(s.kernel, k);
    }
  }
}
for (const [k, s] of perKernel) {
  console.log(`differential [${k}]: ${s.sequences} sequences, ${s.commands} commands in ${(s.ms / 1000).toFixed(1)} s${s.excluded.length ? ` (left out: ${s.excluded.join(', ')})` : ''}`);
}
if (!perKernel.size) console.log('differential: no statistics found (did the guest run the cases?)');
process.exit(status);
