// SPDX-License-Identifier: GPL-2.0-only
// Guest code is bundled on the host (esbuild, the one tsx ships with) into a
// single ESM file without an inline source map: node in the guest then starts
// in ~3.6 s instead of ~6-7 s through tsx or with an inline map (measured
// under TCG on a loaded 2-core host; TCG makes every module load expensive).
// DBD_VM_TSX=1 runs the sources through tsx in the guest instead.
// In a bundle, import.meta.url is the bundle's URL: guest code must locate
// repository files through config.repo (the native addon: DATTOBD_NATIVE).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, SourceMap, type SourceMapPayload } from 'node:module';
import { basename, dirname, join, relative, resolve } from 'node:path';
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

let bundleSeq = 0;

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
  const entry = join(dir, `entry-${label}-${tag}-${process.pid}-${bundleSeq + 1}.ts`);
  writeFileSync(entry, src);
  // unique per call: concurrent boots of one process must not share (or delete) a bundle
  const out = join(dir, `guest-${label}-${process.pid}-${++bundleSeq}.mjs`);
  const esbuild = loadEsbuild();
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    // an external map: node does not read it (parsing an inline map cost ~2 s of guest
    // start-up under TCG); the host maps stack frames back with it (remapStack)
    sourcemap: 'external',
    logLevel: 'error',
    // CommonJS dependencies inside an ESM bundle need a require()
    banner: { js: "import { createRequire as __dbdCreateRequire } from 'node:module'; const require = __dbdCreateRequire(import.meta.url);" },
    external: ['*.node'],
  });
  rmSync(entry, { force: true });
  if (!existsSync(out)) throw new Error(`esbuild produced no ${out}`);
  return out;
}

/** Rewrite `<bundle>:line:col` stack frames to the original TypeScript positions. */
export function remapStack(text: string, bundle: string): string {
  const mapFile = `${bundle}.map`;
  if (!text.includes(basename(bundle)) || !existsSync(mapFile)) return text;
  let map: SourceMap;
  try {
    map = new SourceMap(JSON.parse(readFileSync(mapFile, 'utf8')) as SourceMapPayload);
  } catch {
    return text;
  }
  const re = new RegExp(`(?:file://)?${escapeRe(bundle)}:(\\d+):(\\d+)`, 'g');
  return text.replace(re, (whole, l: string, c: string) => {
    const e = map.findEntry(Number(l) - 1, Number(c) - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number };
    if (!e.originalSource || e.originalLine === undefined) return whole;
    const src = e.originalSource.replace(/^file:\/\//, '');
    const abs = src.startsWith('/') ? src : resolve(dirname(bundle), src);
    return `${relative(REPO, abs)}:${e.originalLine + 1}:${(e.originalColumn ?? 0) + 1}`;
  });
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
