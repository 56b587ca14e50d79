// SPDX-License-Identifier: GPL-2.0-only
// Build step: out-of-tree module builds per kernel (warnings are errors) in
// private copies under $DBD_VM_DIR/build/<kernel>/, and the dbd-ioctl tool.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { KernelInfo } from './kernels.js';
import { REPO, VM_TEST_DIR, vmDir } from './paths.js';

export interface BuildResult {
  ok: boolean;
  /** path of the .ko when ok */
  ko: string | null;
  seconds: number;
  /** compiler output (full on failure) */
  output: string;
  /** an identical earlier build was reused */
  cached: boolean;
}

/** Hash of every source file below dir (paths + contents), for the build cache. */
function treeHash(dir: string, extra: string): string {
  const h = createHash('sha256').update(extra);
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !BUILD_PRODUCT.test(p)) h.update(relative(dir, p)).update('\0').update(readFileSync(p)).update('\0');
    }
  };
  walk(dir);
  return h.digest('hex').slice(0, 16);
}

const BUILD_PRODUCT = /\.(o|ko|mod|mod\.c|cmd|a|order|symvers)$|\/\.tmp_versions|\/\.[^/]*\.cmd$/;

interface Prepared {
  t0: number;
  base: string;
  dir: string;
  tmp: string;
  ko: string;
  koName: string;
  label: string;
  args: string[];
}

/** Cache lookup and private copy of the sources; a BuildResult when nothing is to be built. */
function prepare(k: KernelInfo, srcDir: string, label: string, koName: string): Prepared | BuildResult {
  const t0 = Date.now();
  if (!existsSync(srcDir)) {
    return { ok: false, ko: null, seconds: 0, output: `source directory ${srcDir} does not exist`, cached: false };
  }
  const flags = ['KCFLAGS=-Werror'];
  const hash = treeHash(srcDir, `${k.kver}\0${flags.join(' ')}`);
  const base = join(vmDir(), 'build', k.name);
  const dir = join(base, `${label}-${hash}`);
  const ko = join(dir, koName);
  if (existsSync(join(dir, '.ok')) && existsSync(ko)) {
    return { ok: true, ko, seconds: (Date.now() - t0) / 1000, output: readFileSync(join(dir, '.ok'), 'utf8'), cached: true };
  }
  const tmp = `${dir}.tmp${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  cpSync(srcDir, tmp, { recursive: true, filter: (src) => !BUILD_PRODUCT.test(src) });
  const args = ['-C', k.headers, `M=${tmp}`, ...flags, `-j${process.env.DBD_VM_MAKE_JOBS ?? '2'}`, 'modules'];
  return { t0, base, dir, tmp, ko, koName, label, args };
}

function finish(p: Prepared, status: number | null, stdout: string, stderr: string): BuildResult {
  const output = `${stdout}${stderr}`;
  const seconds = (Date.now() - p.t0) / 1000;
  let fail: string | null = null;
  if (status !== 0 || !existsSync(join(p.tmp, p.koName))) fail = output.trim() || `make exited ${status}`;
  // -Werror covers the compiler; modpost and kbuild warnings are failures too
  else if (/\bWARNING:|warning:/.test(stderr)) fail = `warnings are errors:\n${output.trim()}`;
  if (fail) {
    rmSync(p.tmp, { recursive: true, force: true });
    return { ok: false, ko: null, seconds, output: fail, cached: false };
  }
  writeFileSync(join(p.tmp, '.ok'), output);
  try {
    renameSync(p.tmp, p.dir);
  } catch {
    // another process finished the same build first: use its result
    rmSync(p.tmp, { recursive: true, force: true });
  }
  pruneOld(p.base, p.label, p.dir);
  return { ok: true, ko: p.ko, seconds, output, cached: false };
}

/**
 * Build the module in `srcDir` (a directory with a Kbuild file) against one
 * kernel's headers. The sources are copied to a private directory
 * ($DBD_VM_DIR/build/<kernel>/<label>-<source hash>) so parallel builds, and
 * other processes using the same $DBD_VM_DIR, never share or delete each
 * other's objects. A finished build of identical sources is reused.
 */
export function buildModule(k: KernelInfo, srcDir: string, label: string, koName: string): BuildResult {
  const p = prepare(k, srcDir, label, koName);
  if ('ok' in p) return p;
  const r = spawnSync('make', p.args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  return finish(p, r.status, r.stdout ?? '', r.stderr ?? '');
}

/** buildModule without blocking the event loop (boots of other kernels keep running). */
export async function buildModuleAsync(k: KernelInfo, srcDir: string, label: string, koName: string): Promise<BuildResult> {
  const p = prepare(k, srcDir, label, koName);
  if ('ok' in p) return p;
  const child = spawn('make', p.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const status = await new Promise<number | null>((res) => {
    child.on('error', (e) => {
      stderr += `cannot run make: ${e.message}\n`;
      res(null);
    });
    child.on('close', (code) => res(code));
  });
  return finish(p, status, stdout, stderr);
}

/**
 * Remove older builds of the same label: keep the newest three, and anything
 * younger than an hour (another run may still boot with it).
 */
function pruneOld(base: string, label: string, keep: string): void {
  const olds = readdirSync(base)
    .filter((n) => n.startsWith(`${label}-`) && !n.includes('.tmp') && join(base, n) !== keep)
    .map((n) => ({ p: join(base, n), t: statSync(join(base, n)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const o of olds.slice(3)) if (Date.now() - o.t > 3600_000) rmSync(o.p, { recursive: true, force: true });
}

/** The project's module: kernel/ → dattobd.ko. */
export function buildDattobd(k: KernelInfo): BuildResult {
  const src = join(REPO, 'kernel');
  if (!existsSync(join(src, 'Kbuild')) && !existsSync(join(src, 'Makefile'))) {
    return { ok: false, ko: null, seconds: 0, output: `kernel/Kbuild not found in ${src}: the module has not been written yet`, cached: false };
  }
  return buildModule(k, src, 'dattobd', 'dattobd.ko');
}

export function buildFixture(k: KernelInfo, name: 'hello-module' | 'broken-module'): BuildResult {
  const ko = name === 'hello-module' ? 'hello.ko' : 'broken.ko';
  return buildModule(k, join(VM_TEST_DIR, 'fixtures', name), name, ko);
}

export async function buildDattobdAsync(k: KernelInfo): Promise<BuildResult> {
  const src = join(REPO, 'kernel');
  if (!existsSync(join(src, 'Kbuild')) && !existsSync(join(src, 'Makefile'))) {
    return { ok: false, ko: null, seconds: 0, output: `kernel/Kbuild not found in ${src}: the module has not been written yet`, cached: false };
  }
  return buildModuleAsync(k, src, 'dattobd', 'dattobd.ko');
}

export async function buildFixtureAsync(k: KernelInfo, name: 'hello-module' | 'broken-module'): Promise<BuildResult> {
  const ko = name === 'hello-module' ? 'hello.ko' : 'broken.ko';
  return buildModuleAsync(k, join(VM_TEST_DIR, 'fixtures', name), name, ko);
}

/** Build the dbd-ioctl tool (host gcc; the guest runs host binaries). */
export function buildIoctlTool(): BuildResult {
  const t0 = Date.now();
  const src = join(VM_TEST_DIR, 'tools', 'dbd-ioctl.c');
  const hdr = join(REPO, 'kernel', 'include', 'uapi', 'dattobd.h');
  const out = join(vmDir(), 'build', 'tools', 'dbd-ioctl');
  mkdirSync(join(vmDir(), 'build', 'tools'), { recursive: true });
  const fresh =
    existsSync(out) &&
    statSync(out).mtimeMs > Math.max(statSync(src).mtimeMs, statSync(hdr).mtimeMs);
  if (fresh) return { ok: true, ko: out, seconds: 0, output: '', cached: true };
  const tmp = `${out}.tmp${process.pid}`;
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', tmp, src], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status === 0) renameSync(tmp, out); // atomic: a running guest may be executing the old one
  else rmSync(tmp, { force: true });
  return { ok: r.status === 0, ko: r.status === 0 ? out : null, seconds: (Date.now() - t0) / 1000, output, cached: false };
}

/**
 * The node-addon-api binding (src/native, `npm run build:native`) that guest
 * tests may use in-process: built when missing or older than its sources.
 * Returns null when src/native does not exist.
 */
export async function ensureNativeBinding(): Promise<BuildResult | null> {
  const t0 = Date.now();
  const dir = join(REPO, 'src', 'native');
  if (!existsSync(join(dir, 'binding.gyp'))) return null;
  const out = join(dir, 'build', 'Release', 'dattobd_native.node');
  const sources = readdirSync(dir)
    .filter((f) => /\.(cc|cpp|c|h|gyp)$/.test(f))
    .map((f) => join(dir, f))
    .concat(join(REPO, 'kernel', 'include', 'uapi', 'dattobd.h'));
  const newest = Math.max(...sources.filter((f) => existsSync(f)).map((f) => statSync(f).mtimeMs));
  if (existsSync(out) && statSync(out).mtimeMs >= newest) return { ok: true, ko: out, seconds: 0, output: '', cached: true };
  const child = spawn('npm', ['run', '--silent', 'build:native'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const status = await new Promise<number | null>((res) => {
    child.on('error', (e) => {
      output += `cannot run npm: ${e.message}\n`;
      res(null);
    });
    child.on('close', (code) => res(code));
  });
  const ok = status === 0 && existsSync(out);
  return { ok, ko: ok ? out : null, seconds: (Date.now() - t0) / 1000, output: output.trim(), cached: false };
}
