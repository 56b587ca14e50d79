// SPDX-License-Identifier: GPL-2.0-only
// dbdctl and update-img on the real module: the dattobd README backup cycle
// (setup-snapshot, full copy, transition-to-incremental, writes,
// transition-to-snapshot, update-img, verify, delete the old COW file,
// destroy) on ext4 and xfs, driven only through the two tools; plus their
// error reporting against the kernel. dbdctl/update-img run in-process
// (their main()), except one spawn of the real dbdctl entry point.
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../guest/api.js';
import { main as dbdctlMain } from '../../../src/cli/dbdctl-main.js';
import { main as updateImgMain } from '../../../src/cli/update-img-main.js';
import { fileBlocks } from '../../kernel/vm/helpers.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function capture(f: (o: { stdout: (s: string) => void; stderr: (s: string) => void }) => Promise<number>): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await f({ stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

function dbdctl(t: VmContext, ...argv: string[]): Promise<Run> {
  return capture(async (o) => {
    const r = await dbdctlMain(argv, { env: { ...process.env, DBDCTL_BACKEND: 'kernel' }, ...o });
    t.log(`$ dbdctl ${argv.join(' ')} -> ${r}`);
    return r;
  });
}

function updateImg(t: VmContext, ...argv: string[]): Promise<Run> {
  return capture(async (o) => {
    const r = await updateImgMain(argv, { env: { ...process.env, DBDCTL_BACKEND: 'kernel' }, stderrIsTTY: false, ...o });
    t.log(`$ update-img ${argv.join(' ')} -> ${r}`);
    return r;
  });
}

/** 4 KiB blocks whose contents differ between two files of the same size (count, and the first `max`). */
function differingBlocks(a: string, b: string, max: number, ignore: ReadonlySet<number>): { count: number; first: number[] } {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  const ba = Buffer.alloc(1 << 20);
  const bb = Buffer.alloc(1 << 20);
  const first: number[] = [];
  let count = 0;
  try {
    for (let off = 0; ; off += ba.length) {
      const na = readSync(fa, ba, 0, ba.length, off);
      const nb = readSync(fb, bb, 0, bb.length, off);
      if (na !== nb) throw new Error(`${a} and ${b} differ in length near ${off}`);
      if (na === 0) break;
      if (ba.subarray(0, na).equals(bb.subarray(0, nb))) continue;
      for (let o = 0; o < na; o += 4096) {
        if (!ignore.has((off + o) / 4096) && !ba.subarray(o, Math.min(na, o + 4096)).equals(bb.subarray(o, Math.min(na, o + 4096)))) {
          count++;
          if (first.length < max) first.push((off + o) / 4096);
        }
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  return { count, first };
}

async function ok(t: VmContext, ...argv: string[]): Promise<string> {
  const r = await dbdctl(t, ...argv);
  assert.equal(r.code, 0, `dbdctl ${argv.join(' ')} failed (${r.code}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function info(t: VmContext, minor: number): Promise<Record<string, unknown>> {
  return JSON.parse(await ok(t, '--json', 'info', String(minor))) as Record<string, unknown>;
}

function requireBinding(t: VmContext): void {
  const p = process.env['DATTOBD_NATIVE'];
  if (!p || !existsSync(p)) t.skip(`the ioctl binding is not built (${p ?? 'DATTOBD_NATIVE unset'}): run \`npm run build:native\` on the host`);
  if (!t.config.moduleKo) t.skip(`dattobd.ko did not build: ${t.config.moduleError ?? 'unknown'}`);
}

/**
 * A small traced volume keeps TCG time low: a loop device over a sparse file
 * on the second disk (320 MiB: mkfs.xfs refuses less than 300 MiB).
 */
function smallVolume(t: VmContext, fs: 'ext4' | 'xfs'): { vol: string; mnt: string; bk: string } {
  const spare = t.disks[1]!;
  t.mkfs('ext4', spare);
  const bk = t.mount(spare);
  t.modprobe('loop');
  t.sh(`truncate -s 320M ${bk}/vol.raw`);
  const vol = t.sh(`losetup -f --show ${bk}/vol.raw`).stdout.trim();
  t.mkfs(fs, vol);
  const mnt = t.mount(vol);
  return { vol, mnt, bk };
}

async function backupCycle(t: VmContext, fs: 'ext4' | 'xfs', writeDuringSnapshot: boolean): Promise<void> {
  requireBinding(t);
  t.loadModule();
  const { vol, mnt, bk } = smallVolume(t, fs);
  const img = join(bk, 'full.img');
  t.sh(`dd if=/dev/urandom of=${mnt}/a bs=1M count=12 status=none && mkdir ${mnt}/d && echo one > ${mnt}/d/f && sync`);

  // 1. snapshot + full backup
  await ok(t, 'setup-snapshot', '-f', '32', vol, `${mnt}/.datto`, '0');
  assert.deepEqual(await ok(t, 'get-free-minor'), '1\n');
  let i = await info(t, 0);
  assert.equal(i['state'], 3);
  assert.equal(i['block_device'], vol);
  assert.equal(i['cow_file'], '/.datto');
  assert.equal(i['seq_id'], 1);
  // writes after the snapshot point must not show in the snapshot, and must be in the next increment
  if (writeDuringSnapshot) t.sh(`dd if=/dev/zero of=${mnt}/a bs=1M count=2 seek=3 conv=notrunc status=none && echo two > ${mnt}/d/f && sync`);
  t.sh(`dd if=/dev/datto0 of=${img} bs=1M conv=sparse status=none`);
  const table = await ok(t, 'info');
  assert.match(table, /^MINOR +STATE +BLOCK DEVICE/);
  assert.match(table, new RegExp(`^0 +active snapshot +${vol} +/\\.datto `, 'm'));

  // 2. incremental tracking
  await ok(t, 'transition-to-incremental', '0');
  i = await info(t, 0);
  assert.equal(i['state'], 2);
  assert.equal(existsSync('/dev/datto0'), false, '/dev/datto0 still exists in incremental mode');
  t.sh(
    `dd if=/dev/urandom of=${mnt}/b bs=1M count=4 status=none && ` +
      `dd if=/dev/urandom of=${mnt}/a bs=4k count=37 seek=1001 conv=notrunc status=none && echo three > ${mnt}/d/f && sync`,
  );

  // 3. next snapshot, then bring the image up to date
  await ok(t, 'transition-to-snapshot', '-f', '32', `${mnt}/.datto2`, '0');
  i = await info(t, 0);
  assert.equal(i['state'], 3);
  assert.equal(i['seq_id'], 2);
  assert.equal(i['cow_file'], '/.datto2');

  // validation against the kernel: the in-use COW file is refused, the image untouched
  // (size and nanosecond mtime: any write would change the mtime; hashing the image is slow under TCG)
  const stamp = `stat -c '%s %y' ${img}`;
  const before = t.sh(stamp).stdout;
  const bad = await updateImg(t, '/dev/datto0', `${mnt}/.datto2`, img);
  assert.equal(bad.code, 3, `update-img with the current COW file: ${bad.stderr}`);
  assert.match(bad.stderr, /the image was not modified/);
  assert.equal(t.sh(stamp).stdout, before);

  const u = await updateImg(t, '/dev/datto0', `${mnt}/.datto`, img);
  t.log(u.stdout, u.stderr);
  assert.equal(u.code, 0, `update-img failed:\n${u.stderr}`);
  assert.match(u.stdout, /copying complete: \d+ blocks changed, 0 errors/);
  const changed = Number(/copying complete: (\d+) blocks/.exec(u.stdout)?.[1]);
  assert.ok(changed >= 4 * 256 + 37, `only ${changed} blocks marked changed; at least ${4 * 256 + 37} were written`);
  // the current COW file's own blocks are left out: the module writes them without
  // copy-on-write, so the snapshot does not keep their raw contents (see fileBlocks)
  const diff = differingBlocks('/dev/datto0', img, 8, fileBlocks(t, `${mnt}/.datto2`));
  if (diff.count > 0) {
    // Which blocks differ, and did the old COW file mark them as changed?
    const fd = openSync(`${mnt}/.datto`, 'r');
    const entries = diff.first.map((b) => {
      const e = Buffer.alloc(8);
      readSync(fd, e, 0, 8, 4096 + 8 * b);
      return `block ${b}: index entry ${e.readBigUInt64LE(0)}`;
    });
    closeSync(fd);
    assert.fail(`image differs from /dev/datto0 after update-img in ${diff.count} blocks; first:\n${entries.join('\n')}`);
  }

  // the image is a consistent filesystem with the second snapshot's contents
  // ext4 is frozen clean; an xfs snapshot keeps a dirty log (SPEC §5.7), which xfs_repair -n reports,
  // so xfs is checked by mounting with norecovery and comparing contents only
  if (fs === 'ext4') t.sh(`e2fsck -fn ${img}`);
  const view = t.mount(img, { options: fs === 'xfs' ? 'ro,loop,norecovery,nouuid' : 'ro,loop,noload' });
  assert.equal(t.sh(`cat ${view}/d/f`).stdout, 'three\n');
  t.sh(`cmp ${view}/b ${mnt}/b`);
  t.umount(view);

  // 4. the old COW file may now be deleted; destroy ends the series
  t.sh(`rm ${mnt}/.datto`);
  await ok(t, 'destroy', '0');
  assert.deepEqual(JSON.parse(await ok(t, '--json', 'info')), { version: '0.12.1', devices: [] });
  assert.equal(existsSync(`${mnt}/.datto2`), false, 'destroy of an active snapshot deletes its COW file');
  // release the loop device so the disk holding its backing file can be unmounted
  t.umount(mnt);
  t.run(['losetup', '-d', vol]);
}

export async function cliBackupCycleExt4(t: VmContext): Promise<void> {
  await backupCycle(t, 'ext4', false);
}

export async function cliBackupCycleXfs(t: VmContext): Promise<void> {
  await backupCycle(t, 'xfs', false);
}

/** Blocks written while the first snapshot is active are changed relative to it (SPEC §2.4). */
export async function cliBackupCycleWritesDuringSnapshotExt4(t: VmContext): Promise<void> {
  await backupCycle(t, 'ext4', true);
}

export async function cliReportsKernelErrors(t: VmContext): Promise<void> {
  requireBinding(t);
  // module not loaded: exit 3 with advice, no ioctl attempted
  const nl = await dbdctl(t, 'get-free-minor');
  assert.equal(nl.code, 3);
  assert.match(nl.stderr, /module does not appear to be loaded[\s\S]*modprobe dattobd/);

  t.loadModule();
  const vol = t.disks[0]!;
  t.mkfs('ext4', vol);
  const e1 = await dbdctl(t, 'setup-snapshot', vol, '/tmp/x.datto', '0');
  assert.equal(e1.code, 1);
  assert.match(e1.stderr, /^dbdctl: setup-snapshot failed: EINVAL \(Invalid argument\)\n.* is not mounted read-write/);

  const mnt = t.mount(vol);
  await ok(t, 'setup-snapshot', '-f', '32', vol, `${mnt}/.datto`, '3');
  const busy = await dbdctl(t, 'setup-snapshot', vol, `${mnt}/.other`, '3');
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /EBUSY/);

  const fd = openSync('/dev/datto3', 'r');
  try {
    const e2 = await dbdctl(t, '--json', 'transition-to-incremental', '3');
    assert.equal(e2.code, 1);
    const doc = JSON.parse(e2.stdout) as { error: { code: string; explanation: string } };
    assert.equal(doc.error.code, 'EBUSY');
    assert.equal(doc.error.explanation, '/dev/datto3 is still open or mounted: unmount it and stop every program reading it, then retry');
  } finally {
    closeSync(fd);
  }
  const e3 = await dbdctl(t, 'transition-to-snapshot', `${mnt}/.d2`, '3');
  assert.equal(e3.code, 1);
  assert.match(e3.stderr, /EINVAL[\s\S]*not in active incremental mode/);
  const e4 = await dbdctl(t, 'destroy', '4');
  assert.equal(e4.code, 1);
  assert.match(e4.stderr, /ENOENT \(No such file or directory\)\nno dattobd device is set up on minor 4/);
  const e5 = await dbdctl(t, 'info', '100');
  assert.equal(e5.code, 1);
  assert.match(e5.stderr, /EINVAL/);
  const usage = await dbdctl(t, 'destroy', 'x');
  assert.equal(usage.code, 2);
  await ok(t, 'destroy', '3');

  const w = await updateImg(t, '/dev/null', '/dev/null', '/dev/null');
  assert.equal(w.code, 3, w.stderr);
  assert.match(w.stderr, /does not appear to be a dattobd snapshot device/);
}

/** The real entry point, as a user runs it (node + the tsx loader start slowly under TCG). */
export async function cliEntryPoint(t: VmContext): Promise<void> {
  requireBinding(t);
  t.loadModule();
  const v = t.run(['node', '--import', 'tsx', 'src/cli/dbdctl.ts', '--json', 'get-free-minor'], { cwd: t.repo, timeoutMs: 110_000 });
  assert.deepEqual(JSON.parse(v.stdout), { minor: 0 });
  t.log(`dbdctl process start to exit: ${v.ms} ms`);
}
