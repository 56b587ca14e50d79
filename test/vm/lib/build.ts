// SPDX-License-Identifier: GPL-2.0-only
// Build step: out-of-tree module builds per kernel (warnings are errors) in
// private copies under $DBD_VM_DIR/build/<kernel>/, and the dbd-ioctl tool.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelInfo } from './kernels.js';
import { REPO, VM_TEST_DIR, vmDir } from './paths.js';

export interface BuildResult {
  ok: boolean;
  /** path of the .ko when ok */
  ko: string | null;
  seconds: number;
  /** compiler output (full on failure) */
  output: string;
}

/**
 * Build the module in `srcDir` (a directory with a Kbuild file) against one
 * kernel's headers. The source is copied to a private build directory so
 * parallel builds for different kernels never share object files.
 */
export function buildModule(k: KernelInfo, srcDir: string, label: string, koName: string): BuildResult {
  const t0 = Date.now();
  const dir = join(vmDir(), 'build', k.name, label);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  if (!existsSync(srcDir)) {
    return { ok: false, ko: null, seconds: 0, output: `source directory ${srcDir} does not exist` };
  }
  // copy sources only (no stale objects from someone's in-tree build)
  cpSync(srcDir, dir, {
    recursive: true,
    filter: (src) => !/\.(o|ko|mod|mod\.c|cmd|a)$|\/\.tmp_versions|Module\.symvers$|modules\.order$/.test(src),
  });
  const r = spawnSync(
    'make',
    ['-C', k.headers, `M=${dir}`, 'KCFLAGS=-Werror', `-j${process.env.DBD_VM_MAKE_JOBS ?? '2'}`, 'modules'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 },
  );
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const ko = join(dir, koName);
  const seconds = (Date.now() - t0) / 1000;
  if (r.status !== 0 || !existsSync(ko)) {
    return { ok: false, ko: null, seconds, output: output.trim() || `make exited ${r.status ?? r.signal}` };
  }
  // kbuild prints warnings on stderr even with -Werror only for non-fatal ones (e.g. modpost)
  if (/\bWARNING:|warning:/.test(r.stderr ?? '')) {
    return { ok: false, ko: null, seconds, output: `warnings are errors:\n${output.trim()}` };
  }
  return { ok: true, ko, seconds, output };
}

/** The project's module: kernel/ → dattobd.ko. */
export function buildDattobd(k: KernelInfo): BuildResult {
  const src = join(REPO, 'kernel');
  if (!existsSync(join(src, 'Kbuild')) && !existsSync(join(src, 'Makefile'))) {
    return { ok: false, ko: null, seconds: 0, output: `kernel/Kbuild not found in ${src}: the module has not been written yet` };
  }
  return buildModule(k, src, 'dattobd', 'dattobd.ko');
}

export function buildFixture(k: KernelInfo, name: 'hello-module' | 'broken-module'): BuildResult {
  const ko = name === 'hello-module' ? 'hello.ko' : 'broken.ko';
  return buildModule(k, join(VM_TEST_DIR, 'fixtures', name), name, ko);
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
  if (fresh) return { ok: true, ko: out, seconds: 0, output: '' };
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, src], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  return { ok: r.status === 0, ko: r.status === 0 ? out : null, seconds: (Date.now() - t0) / 1000, output };
}
