// SPDX-License-Identifier: GPL-2.0-only
// Guest code is bundled on the host (esbuild, the one tsx ships with) into a
// single ESM file: node in the guest then starts ~2x faster than through the
// tsx loader (TCG makes every module resolution and transform expensive).
// DBD_VM_TSX=1 runs the sources through tsx in the guest instead.
// In a bundle, import.meta.url is the bundle's URL: guest code must locate
// repository files through config.repo (the native addon: DATTOBD_NATIVE).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { REPO, VM_TEST_DIR, vmDir } from './paths.js';
import type { TestFile } from './suite.js';

interface EsbuildApi {
  build(o: Record<string, unknown>): Promise<{ errors: unknown[] }>;
}

function loadEsbuild(): EsbuildApi {
  // esbuild is a dependency of tsx (a devDependency of the project)
  const req = createRequire(createRequire(join(REPO, 'package.json')).resolve('tsx/package.json'));
  return req('esbuild') as EsbuildApi;
}

/** Bundle the guest runner with the given test files; returns the .mjs path. */
export async function bundleGuest(tests: readonly TestFile[], label: string): Promise<string> {
  const dir = join(vmDir(), 'bundle');
  mkdirSync(dir, { recursive: true });
  const lines: string[] = [];
  const entries: string[] = [];
  tests.forEach((t, i) => {
    lines.push(`import * as m${i} from ${JSON.stringify(join(REPO, t.file))};`);
    entries.push(`${JSON.stringify(t.file)}: m${i}`);
  });
  lines.push(`(globalThis as { __dbdVmModules?: unknown }).__dbdVmModules = { ${entries.join(', ')} };`);
  lines.push(`await import(${JSON.stringify(join(VM_TEST_DIR, 'guest', 'runner.ts'))});`);
  const src = lines.join('\n') + '\n';
  const tag = createHash('sha256').update(src).digest('hex').slice(0, 12);
  const entry = join(dir, `entry-${label}-${tag}-${process.pid}.ts`);
  writeFileSync(entry, src);
  const out = join(dir, `guest-${label}-${process.pid}.mjs`);
  const esbuild = loadEsbuild();
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    sourcemap: 'inline',
    logLevel: 'error',
    // CommonJS dependencies inside an ESM bundle need a require()
    banner: { js: "import { createRequire as __dbdCreateRequire } from 'node:module'; const require = __dbdCreateRequire(import.meta.url);" },
    external: ['*.node'],
  });
  if (!existsSync(out)) throw new Error(`esbuild produced no ${out}`);
  return out;
}
