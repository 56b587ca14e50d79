// SPDX-License-Identifier: GPL-2.0-only
// Every dbdctl sub-command against the emulator: golden human and JSON
// output, state changes visible through `info`, and the driver's errors.
import { beforeEach, describe, expect, it } from 'vitest';
import { Emulator } from '../../emulator/index.js';
import type { Backend } from '../../src/driver/types.js';
import { dbdctl, type CliRun } from './run-cli.js';
import { MIB, ok, rng } from './scenario.js';

let emu: Emulator;
let b: Backend;

beforeEach(() => {
  emu = new Emulator({ random: rng(42) });
  emu.addVolume({ path: '/dev/sda1', sizeBytes: 64 * MIB });
  emu.addVolume({ path: '/dev/sdb1', sizeBytes: 32 * MIB });
  emu.mount('/dev/sda1', '/mnt');
  b = emu.backend();
});

const run = (...argv: string[]): Promise<CliRun> => dbdctl(argv, b);
const json = async (...argv: string[]): Promise<unknown> => {
  const r = await run('--json', ...argv);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout);
};

/** Assert a driver error: exit 1, the first two stderr lines exactly, then the driver's own detail. */
async function driverError(argv: string[], first: string, explanation: string): Promise<void> {
  const r = await run(...argv);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n');
  expect(lines[0]).toBe(first);
  expect(lines[1]).toBe(explanation);
  expect(r.stderr).not.toMatch(/dmesg/);
  const j = await run('--json', ...argv);
  expect(j.code).toBe(1);
  const doc = JSON.parse(j.stdout);
  expect(doc).toMatchObject({ ok: false, exitCode: 1, error: { code: first.split(' ')[3], explanation } });
}

const UUID = /^[0-9a-f]{32}$/;

describe('info', () => {
  it('with no devices', async () => {
    expect(await run('info')).toEqual({ code: 0, stdout: 'no dattobd devices are set up\n', stderr: '' });
    expect(await json('info')).toEqual({ version: '0.12.1', devices: [] });
  });

  it('lists devices as a table and one device in detail, with /proc field names in JSON', async () => {
    await ok(['setup-snapshot', '-f', '8', '-c', '1048576', '/dev/sda1', '/mnt/.datto', '2'], b);
    const uuid = (emu.ctl.info(2).uuid);
    expect(uuid).toMatch(UUID);
    expect(await run('info')).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'MINOR  STATE            BLOCK DEVICE  COW FILE  COW SIZE  CHANGED  SEQ  ERROR\n' +
        '2      active snapshot  /dev/sda1     /.datto   8 MiB     0        1    -\n',
    });
    expect(await run('info', '2')).toEqual({
      code: 0,
      stderr: '',
      stdout:
        'minor:              2\n' +
        'state:              3 (active snapshot)\n' +
        'block_device:       /dev/sda1\n' +
        'cow_file:           /.datto\n' +
        'max_cache:          1048576 (1 MiB)\n' +
        'fallocate:          8388608 (8 MiB)\n' +
        'cow_size_current:   8388608 (8 MiB)\n' +
        'seq_id:             1\n' +
        `uuid:               ${uuid}\n` +
        'version:            1\n' +
        'nr_changed_blocks:  0\n',
    });
    const device = {
      minor: 2,
      cow_file: '/.datto',
      block_device: '/dev/sda1',
      max_cache: 1048576,
      fallocate: 8388608,
      cow_size_current: 8388608,
      seq_id: 1,
      uuid,
      version: 1,
      nr_changed_blocks: 0,
      state: 3,
    };
    const all = await json('info');
    expect(all).toEqual({ version: '0.12.1', devices: [device] });
    expect(Object.keys((all as { devices: object[] }).devices[0]!)).toEqual(Object.keys(device));
    expect(await json('info', '2')).toEqual(device);
  });

  it('a minor that does not exist or is out of range', async () => {
    await driverError(['info', '5'], 'dbdctl: info failed: ENOENT (No such file or directory)', 'no dattobd device is set up on minor 5 (see `dbdctl info`)');
    await driverError(['info', '30'], 'dbdctl: info failed: EINVAL (Invalid argument)', 'the minor is not below the module parameter max_snap_devices (24 unless changed)');
  });
});

describe('the backup cycle sub-commands change the state', () => {
  it('setup-snapshot, transition-to-incremental, transition-to-snapshot, destroy', async () => {
    expect(await run('setup-snapshot', '-f', '8', '/dev/sda1', '/mnt/.datto', '0')).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await json('setup-snapshot', '/dev/sdb1', '/x', '1')).toMatchObject({ ok: false, command: 'setup-snapshot', error: { code: 'EINVAL' } });
    expect(emu.io.exists('/dev/datto0')).toBe(true);
    emu.write('/dev/sda1', 0, new Uint8Array(3 * 4096).fill(1));
    expect(await json('info', '0')).toMatchObject({ state: 3, nr_changed_blocks: 3 });
    expect(await json('transition-to-incremental', '0')).toEqual({ ok: true, command: 'transition-to-incremental', minor: 0 });
    expect(await json('info', '0')).toMatchObject({ state: 2, cow_file: '/.datto' });
    expect(emu.io.exists('/dev/datto0')).toBe(false);
    expect(await json('transition-to-snapshot', '-f', '8', '/mnt/.datto.2', '0')).toEqual({
      ok: true,
      command: 'transition-to-snapshot',
      minor: 0,
      device: '/dev/datto0',
    });
    expect(await json('info', '0')).toMatchObject({ state: 3, seq_id: 2, cow_file: '/.datto.2' });
    expect(await run('destroy', '0')).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await json('info')).toEqual({ version: '0.12.1', devices: [] });
  });

  it('get-free-minor', async () => {
    expect(await run('get-free-minor')).toEqual({ code: 0, stdout: '0\n', stderr: '' });
    await ok(['setup-snapshot', '-f', '8', '/dev/sda1', '/mnt/.datto', '0'], b);
    expect(await run('get-free-minor')).toEqual({ code: 0, stdout: '1\n', stderr: '' });
    expect(await json('get-free-minor')).toEqual({ minor: 1 });
  });

  it('get-free-minor when every minor is used', async () => {
    const small = new Emulator({ maxSnapDevices: 1, random: rng(1) });
    small.addVolume({ path: '/dev/sda1', sizeBytes: 16 * MIB });
    small.mount('/dev/sda1', '/m');
    await ok(['setup-snapshot', '-f', '2', '/dev/sda1', '/m/c', '0'], small.backend());
    const r = await dbdctl(['get-free-minor'], small.backend());
    expect(r).toEqual({
      code: 1,
      stdout: '',
      stderr: expect.stringMatching(
        /^dbdctl: get-free-minor failed: ENOENT \(No such file or directory\)\nevery minor is in use: destroy a device or load the module with a larger max_snap_devices\n/,
      ),
    });
  });

  it('reconfigure, expand-cow-file, reconfigure-auto-expand', async () => {
    await ok(['setup-snapshot', '-f', '8', '/dev/sda1', '/mnt/.datto', '0'], b);
    await ok(['reconfigure', '-c', '2097152', '0'], b);
    expect(await json('info', '0')).toMatchObject({ max_cache: 2097152 });
    await ok(['expand-cow-file', '4', '0'], b);
    expect(await json('info', '0')).toMatchObject({ cow_size_current: 12 * MIB, fallocate: 8 * MIB });
    await ok(['reconfigure-auto-expand', '-r', '2', '16', '0'], b);
    expect(await json('info', '0')).toMatchObject({ auto_expand: { step_size_mib: 16, reserved_space_mib: 2 } });
    const detail = await run('info', '0');
    expect(detail.stdout).toContain('auto_expand:        step 16 MiB, reserved 2 MiB\n');
  });

  it('reload-snapshot and reload-incremental make unverified devices', async () => {
    await driverError(
      ['reload-snapshot', '/dev/sda1', '/.datto', '0'],
      'dbdctl: reload-snapshot failed: EINVAL (Invalid argument)',
      '/dev/sda1 is mounted read-write (reload is for a volume not yet mounted read-write, e.g. early at boot; use setup-snapshot on a mounted volume), or a path is too long, or the minor is not below the module parameter max_snap_devices (24 unless changed)',
    );
    await ok(['reload-incremental', '-c', '65536', '/dev/sdb1', '/.datto', '1'], b);
    expect(await json('info', '1')).toEqual({ minor: 1, cow_file: '/.datto', block_device: '/dev/sdb1', max_cache: 65536, state: 4 });
    const r = await run('info');
    expect(r.stdout).toBe(
      'MINOR  STATE                   BLOCK DEVICE  COW FILE  COW SIZE  CHANGED  SEQ  ERROR\n' +
        '1      unverified incremental  /dev/sdb1     /.datto   -         -        -    -\n',
    );
  });
});

describe('driver errors through the emulator', () => {
  beforeEach(async () => {
    await ok(['setup-snapshot', '-f', '8', '/dev/sda1', '/mnt/.datto', '0'], b);
  });

  it('setup-snapshot on a busy minor', async () => {
    await driverError(
      ['setup-snapshot', '/dev/sda1', '/mnt/.d2', '0'],
      'dbdctl: setup-snapshot failed: EBUSY (Device or resource busy)',
      'minor 0 is already in use (pick another with `dbdctl get-free-minor` or destroy it), or the filesystem is frozen (fsfreeze -u <mount point>)',
    );
  });

  it('setup-snapshot of an unmounted volume', async () => {
    await driverError(
      ['setup-snapshot', '/dev/sdb1', '/mnt/.d2', '1'],
      'dbdctl: setup-snapshot failed: EINVAL (Invalid argument)',
      '/dev/sdb1 is not mounted read-write, or the COW file is not on that same filesystem or is not a regular file, or the block device is already tracked by another minor, or a path is longer than 4095 bytes, or the minor is not below the module parameter max_snap_devices (24 unless changed)',
    );
  });

  it('transition-to-incremental while the snapshot is open', async () => {
    emu.openSnapshot(0);
    await driverError(
      ['transition-to-incremental', '0'],
      'dbdctl: transition-to-incremental failed: EBUSY (Device or resource busy)',
      '/dev/datto0 is still open or mounted: unmount it and stop every program reading it, then retry',
    );
    await driverError(
      ['destroy', '0'],
      'dbdctl: destroy failed: EBUSY (Device or resource busy)',
      '/dev/datto0 is still open or mounted: unmount it and stop every program reading it, then retry',
    );
    emu.closeSnapshot(0);
    await ok(['transition-to-incremental', '0'], b);
  });

  it('commands in the wrong state', async () => {
    await driverError(
      ['transition-to-snapshot', '/mnt/.d2', '0'],
      'dbdctl: transition-to-snapshot failed: EINVAL (Invalid argument)',
      'minor 0 is not in active incremental mode (state 2) or has failed, or the new COW file is not on the traced filesystem or not a regular file, or the minor is not below the module parameter max_snap_devices (24 unless changed)',
    );
    await ok(['transition-to-incremental', '0'], b);
    await driverError(
      ['expand-cow-file', '10', '0'],
      'dbdctl: expand-cow-file failed: EINVAL (Invalid argument)',
      "minor 0 is not an active snapshot (state 3) or has failed — only an active snapshot's COW file can grow — or the minor is not below the module parameter max_snap_devices (24 unless changed)",
    );
    await driverError(
      ['reconfigure-auto-expand', '10', '0'],
      'dbdctl: reconfigure-auto-expand failed: EINVAL (Invalid argument)',
      'minor 0 is not an active snapshot (state 3) or has failed — auto-expand applies only to an active snapshot — or the minor is not below the module parameter max_snap_devices (24 unless changed)',
    );
    await driverError(
      ['transition-to-incremental', '0'],
      'dbdctl: transition-to-incremental failed: EINVAL (Invalid argument)',
      'minor 0 is not an active snapshot (state 3) or has failed (see `dbdctl info 0`), or the minor is not below the module parameter max_snap_devices (24 unless changed)',
    );
  });

  it('minors that do not exist', async () => {
    for (const cmd of [['destroy', '3'], ['transition-to-incremental', '3'], ['reconfigure', '3'], ['expand-cow-file', '1', '3']]) {
      await driverError(cmd, `dbdctl: ${cmd[0]} failed: ENOENT (No such file or directory)`, 'no dattobd device is set up on minor 3 (see `dbdctl info`)');
    }
  });

  it('a failed device shows its error in info, and only destroy works', async () => {
    emu.faults.failNextCowWrite(5);
    emu.write('/dev/sda1', 0, new Uint8Array(4096).fill(1));
    expect(await json('info', '0')).toMatchObject({ error: -5, state: 3 });
    const r = await run('info');
    expect(r.stdout).toContain('  EIO\n');
    expect((await run('info', '0')).stdout).toContain('error:              -5 (EIO (Input/output error); only destroy is possible)\n');
    await driverError(
      ['reconfigure', '0'],
      'dbdctl: reconfigure failed: EINVAL (Invalid argument)',
      'minor 0 has failed (only destroy is possible now), or the minor is not below the module parameter max_snap_devices (24 unless changed)',
    );
    await ok(['destroy', '0'], b);
  });
});
