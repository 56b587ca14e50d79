// SPDX-License-Identifier: GPL-2.0-only
// Kernel memory figures from /proc/meminfo (KiB). The driver's memory is
// slab (kmalloc), vmalloc (kvmalloc'd bitmaps) and pages it allocates
// directly (COW data read but not yet saved), which are on no LRU list:
// "unaccounted" = MemTotal - MemFree - LRU - Slab - KernelStack -
// PageTables - Percpu - VmallocUsed.
import { readFileSync } from 'node:fs';

export type Meminfo = Record<string, number>;

export function readMeminfo(): Meminfo {
  const out: Meminfo = {};
  for (const line of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const m = /^([\w()]+):\s+(\d+)/.exec(line);
    if (m) out[m[1] as string] = Number(m[2]);
  }
  return out;
}

const g = (m: Meminfo, k: string): number => m[k] ?? 0;

/** KiB of kernel memory on no LRU list and in no other counter (direct page allocations). */
export function unaccountedKiB(m: Meminfo): number {
  return (
    g(m, 'MemTotal') -
    g(m, 'MemFree') -
    g(m, 'Active') -
    g(m, 'Inactive') -
    g(m, 'Unevictable') -
    g(m, 'Slab') -
    g(m, 'KernelStack') -
    g(m, 'PageTables') -
    g(m, 'SecPageTables') -
    g(m, 'Percpu') -
    g(m, 'VmallocUsed')
  );
}

export interface KernelMem {
  slabUnreclaimKiB: number;
  vmallocKiB: number;
  unaccountedKiB: number;
}

export function kernelMem(m: Meminfo = readMeminfo()): KernelMem {
  return { slabUnreclaimKiB: g(m, 'SUnreclaim'), vmallocKiB: g(m, 'VmallocUsed'), unaccountedKiB: unaccountedKiB(m) };
}

export function memTotal(k: KernelMem): number {
  return k.slabUnreclaimKiB + k.vmallocKiB + k.unaccountedKiB;
}

export function memDelta(after: KernelMem, before: KernelMem): KernelMem {
  return {
    slabUnreclaimKiB: after.slabUnreclaimKiB - before.slabUnreclaimKiB,
    vmallocKiB: after.vmallocKiB - before.vmallocKiB,
    unaccountedKiB: after.unaccountedKiB - before.unaccountedKiB,
  };
}
