// SPDX-License-Identifier: GPL-2.0-only
// Direct (PVH) boot: QEMU can start an uncompressed ELF vmlinux with a PVH
// entry note (CONFIG_PVH=y in all three Debian kernels), which skips the
// bzImage's self-decompression — slow under TCG, above all for 6.1's xz.
// The ELF is cut out of the bzImage once and cached next to it.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelInfo } from './kernels.js';

const FORMATS: ReadonlyArray<{ magic: Buffer; cmd: string[] }> = [
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), cmd: ['xz', '-dc'] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), cmd: ['zstd', '-dc'] },
  { magic: Buffer.from([0x1f, 0x8b, 0x08]), cmd: ['gzip', '-dc'] },
];

/** Path of the cached uncompressed vmlinux, or null when it cannot be made. */
export function pvhKernel(k: KernelInfo): string | null {
  const out = join(k.modules, 'boot', `vmlinux-pvh-${k.kver}`);
  if (existsSync(out)) return out;
  const image = readFileSync(k.vmlinuz);
  for (const f of FORMATS) {
    const off = image.indexOf(f.magic);
    if (off < 0) continue;
    // the stream is followed by other data: the decompressor complains, the output is whole
    const r = spawnSync(f.cmd[0] as string, f.cmd.slice(1), { input: image.subarray(off), maxBuffer: 512 << 20 });
    const elf = r.stdout;
    if (!elf || elf.length < 1 << 20 || elf.readUInt32BE(0) !== 0x7f454c46) continue;
    // XEN_ELFNOTE_PHYS32_ENTRY (18) lives in a "Xen" note: require the name at least
    if (elf.indexOf(Buffer.from('Xen\0')) < 0) return null;
    const tmp = `${out}.tmp${process.pid}`;
    writeFileSync(tmp, elf);
    try {
      renameSync(tmp, out);
    } catch {
      rmSync(tmp, { force: true });
    }
    return out;
  }
  return null;
}
