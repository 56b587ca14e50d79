// SPDX-License-Identifier: GPL-2.0-only
// The guest can make and mount ext4 and xfs on its scratch disks, in the
// same run, and data written survives a remount.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmContext } from '../guest/api.js';

export async function ext4AndXfsOnGuestDisks(t: VmContext): Promise<void> {
  assert.ok(t.disks.length >= 2, `need two guest disks, have ${t.disks.join(', ')}`);
  const [a, b] = t.disks as [string, string];
  t.mkfs('ext4', a);
  t.mkfs('xfs', b);
  const ma = t.mount(a);
  const mb = t.mount(b);
  const mounts = readFileSync('/proc/mounts', 'utf8');
  assert.match(mounts, new RegExp(`^${a} ${ma} ext4 `, 'm'));
  assert.match(mounts, new RegExp(`^${b} ${mb} xfs `, 'm'));
  writeFileSync(join(ma, 'hello'), 'ext4 data\n');
  writeFileSync(join(mb, 'hello'), 'xfs data\n');
  t.sh(`dd if=/dev/urandom of=${ma}/blob bs=1M count=8 status=none && sync`);
  const sum = t.sh(`sha256sum ${ma}/blob | cut -d' ' -f1`).stdout.trim();
  t.umount(ma);
  t.umount(mb);
  t.mount(a, { dir: ma });
  t.mount(b, { dir: mb });
  assert.equal(readFileSync(join(ma, 'hello'), 'utf8'), 'ext4 data\n');
  assert.equal(readFileSync(join(mb, 'hello'), 'utf8'), 'xfs data\n');
  assert.equal(t.sh(`sha256sum ${ma}/blob | cut -d' ' -f1`).stdout.trim(), sum);
}

export async function fixtureModuleLoadsCleanly(t: VmContext): Promise<void> {
  const ko = t.config.fixtures.hello;
  assert.ok(ko, 'hello-module fixture was not built');
  t.insmod(ko);
  assert.ok(t.moduleLoaded('hello'));
  t.run(['rmmod', 'hello']);
  assert.ok(t.kmsg().some((l) => l.includes('dbd_hello: unloaded')), 'module exit message missing from the kernel log');
}
