// SPDX-License-Identifier: GPL-2.0-only
// The benchmark's filesystems, prepared once per boot and kept mounted
// outside /mnt (the case runner unmounts /mnt/* after each case; these
// mounts survive, so every case measures the same layout):
//   /dev/vda → /run/dbd-bench: the traced device (snapshots, COW files)
//   /dev/vdb → /run/dbd-raw:   the same layout, never tracked (raw side)
// Both hold a DATA_MIB data file written once; vda is prefilled completely
// so the host image has no unallocated holes left (first writes to a
// sparse image cost more than later ones).
import { mkdirSync, readFileSync } from 'node:fs';
import type { VmContext } from '../../test/vm/guest/api.js';

export const DATA_MIB = 256;
/** MiB of the file the busy (buffered) writer of the latency case rewrites */
export const BUSY_MIB = 128;

export interface BenchFs {
  dev: string;
  devBytes: number;
  mnt: string;
  data: string;
  busy: string;
  cow: string;
  cow2: string;
  /** byte offset on the device of the data file's first block */
  dataDevOffset: number;
}

export interface BenchDisks {
  traced: BenchFs;
  /** untracked twin, or null if the guest has only one disk */
  raw: BenchFs | null;
}

function mounted(dir: string): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
}

function prepare(t: VmContext, dev: string, mnt: string, prefillAll: boolean): BenchFs {
  const devBytes = Number(t.run(['blockdev', '--getsize64', dev]).stdout.trim());
  const fs = {
    dev,
    devBytes,
    mnt,
    data: `${mnt}/data.bin`,
    busy: `${mnt}/busy.bin`,
    cow: `${mnt}/.datto`,
    cow2: `${mnt}/.datto2`,
  };
  if (!mounted(mnt)) {
    const t0 = Date.now();
    if (prefillAll) {
      t.sh(`dd if=/dev/zero of=${dev} bs=4M count=${Math.floor(devBytes / 4194304)} oflag=direct status=none`, { timeoutMs: 300_000 });
    }
    t.mkfs('ext4', dev, ['-E', 'lazy_itable_init=0,lazy_journal_init=0']);
    mkdirSync(mnt, { recursive: true });
    t.run(['mount', '-o', 'noatime', dev, mnt]);
    t.sh(
      `dd if=/dev/zero of=${fs.data} bs=4M count=${DATA_MIB / 4} oflag=direct conv=fsync status=none && ` +
        `dd if=/dev/zero of=${fs.busy} bs=4M count=${BUSY_MIB / 4} oflag=direct conv=fsync status=none && sync`,
      { timeoutMs: 300_000 },
    );
    t.log(`bench fs ${dev} ready in ${Date.now() - t0} ms`);
  }
  return { ...fs, dataDevOffset: firstBlockOffset(t, fs.data) };
}

export function ensureBenchDisks(t: VmContext): BenchDisks {
  const [a, b] = t.disks;
  if (!a) throw new Error('the benchmark needs a guest disk');
  const traced = prepare(t, a, '/run/dbd-bench', true);
  const raw = b ? prepare(t, b, '/run/dbd-raw', false) : null;
  return { traced, raw };
}

/** device byte offset of the file's first block */
function firstBlockOffset(t: VmContext, file: string): number {
  const out = t.run(['filefrag', '-e', '-b4096', file]).stdout;
  // rows: "   0:        0..   32767:      34816..     67583:  32768: ..."
  const m = /^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\./m.exec(out);
  if (!m) throw new Error(`cannot parse filefrag output:\n${out}`);
  return Number(m[1]) * 4096;
}

export function removeCow(t: VmContext, fs: BenchFs): void {
  t.sh(`rm -f ${fs.cow} ${fs.cow2} && sync`);
}
