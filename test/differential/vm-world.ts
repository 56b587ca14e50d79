// SPDX-License-Identifier: GPL-2.0-only
/**
 * Guest-side helpers of the differential VM tests: loop-backed volumes whose
 * filesystem is smaller than the device (the tail is the test region), raw
 * writes to that region, and reads of /dev/datto<N> and COW files.
 */
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../vm/guest/api.js';
import { MiB, type VolumeConfig } from './model.js';

/**
 * A loop device over a sparse file in the case's tmpfs, with ext4 on its
 * first `fsMiB` MiB. The returned config has the free space the filesystem
 * reports right after mkfs (for the emulator's capacity).
 */
export function loopVolume(t: VmContext, name: string, sizeMiB: number, fsMiB: number): VolumeConfig {
  const img = join(t.tmp, `${name}.img`);
  t.run(['truncate', '-s', `${sizeMiB}M`, img]);
  const dev = t.run(['losetup', '--find', '--show', img]).stdout.trim();
  // the loop device holds the file open: unlinking it now frees the guest's tmpfs
  // (guest RAM) when the runner detaches the loop device after the case
  rmSync(img);
  // no lazy init and no discard at mkfs: no background writes after mount
  t.run(['mkfs.ext4', '-F', '-q', '-b', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0,nodiscard', dev, `${fsMiB}M`]);
  const mnt = `/mnt/${name}`;
  mkdirSync(mnt, { recursive: true });
  t.run(['mount', dev, mnt]);
  const st = statfsSync(mnt);
  t.run(['umount', mnt]);
  return { dev, mnt, sizeBytes: sizeMiB * MiB, fsBytes: fsMiB * MiB, fsFreeBytes: st.bavail * st.bsize };
}

/** pwrite + fsync on the block device (buffered: the page cache flush issues the bios). */
export function writeDevice(dev: string, offset: number, data: Uint8Array): void {
  const fd = openSync(dev, 'r+');
  try {
    let done = 0;
    while (done < data.length) done += writeSync(fd, data, done, data.length - done, offset + done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Read `length` bytes of a file or device at `offset`. Throws the errno error of open/read. */
export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return out.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** Whole contents of a regular file. */
export function readWhole(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const out = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, out, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}
