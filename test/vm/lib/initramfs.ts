// SPDX-License-Identifier: GPL-2.0-only
// The guest's initramfs: static busybox, the /init script, and the modules
// needed to reach the host's root over 9p (virtio_pci, virtio_blk, 9p with
// their dependencies, decompressed for busybox insmod). Cached per kernel and
// content hash in $DBD_VM_DIR/initramfs/.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { HarnessError, type KernelInfo } from './kernels.js';
import { VM_TEST_DIR, vmDir } from './paths.js';

const BOOT_MODULES = ['virtio_pci', 'virtio_blk', '9pnet_virtio', '9p'];
const BUSYBOX = '/bin/busybox';

interface ModIndex {
  deps: Map<string, string[]>; // rel path -> deps (rel paths)
  byName: Map<string, string>; // module name -> rel path
  builtin: Set<string>;
}

function modName(rel: string): string {
  return basename(rel).replace(/\.ko(\.xz|\.zst|\.gz)?$/, '').replace(/-/g, '_');
}

function readIndex(modDir: string): ModIndex {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of readFileSync(join(modDir, 'modules.dep'), 'utf8').split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const rel = m[1] as string;
    deps.set(rel, (m[2] ?? '').split(/\s+/).filter(Boolean));
    byName.set(modName(rel), rel);
  }
  const builtin = new Set<string>();
  const bf = join(modDir, 'modules.builtin');
  if (existsSync(bf)) for (const l of readFileSync(bf, 'utf8').split('\n')) if (l) builtin.add(modName(l));
  return { deps, byName, builtin };
}

/** Modules to insmod, dependencies first. */
export function bootModuleOrder(modDir: string, wanted: readonly string[] = BOOT_MODULES): string[] {
  const idx = readIndex(modDir);
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (rel: string): void => {
    if (seen.has(rel)) return;
    seen.add(rel);
    for (const d of idx.deps.get(rel) ?? []) visit(d);
    order.push(rel);
  };
  for (const w of wanted) {
    const name = w.replace(/-/g, '_');
    const rel = idx.byName.get(name);
    if (rel) visit(rel);
    else if (!idx.builtin.has(name)) {
      throw new HarnessError(`module ${w} is neither a module nor built in (${modDir})`, 'the kernel config lacks 9p/virtio support');
    }
  }
  return order;
}

/** Build (or reuse) the initramfs for one kernel; returns its path. */
export function buildInitramfs(k: KernelInfo): string {
  const modDir = join(k.modules, 'lib', 'modules', k.kver);
  const order = bootModuleOrder(modDir);
  const init = readFileSync(join(VM_TEST_DIR, 'guest', 'init.sh'));
  const hash = createHash('sha256')
    .update(init)
    .update(order.join('\n'))
    .update(readFileSync(BUSYBOX))
    .digest('hex')
    .slice(0, 16);
  const outDir = join(vmDir(), 'initramfs');
  const out = join(outDir, `${k.kver}-${hash}.cpio`);
  if (existsSync(out)) return out;

  if (!existsSync(BUSYBOX)) throw new HarnessError(`${BUSYBOX} missing`, 'apt-get install busybox-static');
  const stage = join(outDir, `stage-${k.kver}-${process.pid}`);
  rmSync(stage, { recursive: true, force: true });
  for (const d of ['bin', 'dev', 'proc', 'sys', 'lib/mods', 'host', 'stash']) mkdirSync(join(stage, d), { recursive: true });
  copyFileSync(BUSYBOX, join(stage, 'bin', 'busybox'));
  chmodSync(join(stage, 'bin', 'busybox'), 0o755);
  writeFileSync(join(stage, 'init'), init, { mode: 0o755 });
  const names: string[] = [];
  for (const rel of order) {
    const src = join(modDir, rel);
    const name = basename(rel).replace(/\.(xz|zst|gz)$/, '');
    const dst = join(stage, 'lib', 'mods', name);
    if (rel.endsWith('.xz')) {
      const r = spawnSync('sh', ['-c', 'xz -dc "$1" > "$2"', 'sh', src, dst]);
      if (r.status !== 0) throw new HarnessError(`xz -d ${src} failed`, 'install xz-utils');
    } else if (rel.endsWith('.zst')) {
      const r = spawnSync('sh', ['-c', 'zstd -qdc "$1" > "$2"', 'sh', src, dst]);
      if (r.status !== 0) throw new HarnessError(`zstd -d ${src} failed`, 'install zstd');
    } else {
      copyFileSync(src, dst);
    }
    names.push(name);
  }
  writeFileSync(join(stage, 'lib', 'mods', 'order'), names.join('\n') + '\n');
  mkdirSync(outDir, { recursive: true });
  const tmp = `${out}.tmp${process.pid}`;
  const r = spawnSync('sh', ['-c', 'cd "$1" && find . | cpio -o -H newc --quiet > "$2"', 'sh', stage, tmp]);
  rmSync(stage, { recursive: true, force: true });
  if (r.status !== 0) throw new HarnessError(`cpio failed: ${r.stderr?.toString()}`, 'install cpio');
  renameSync(tmp, out);
  return out;
}
