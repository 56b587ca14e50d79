// SPDX-License-Identifier: GPL-2.0-only
// How dbdctl reports a driver errno: errno name and text, a sentence that
// explains it for that command (never "check dmesg"), exit 1, and the JSON form.
import { describe, expect, it } from 'vitest';
import { ERRNO } from '../../src/abi/errno.js';
import type { DriverControl } from '../../src/driver/types.js';
import { explain, type Command } from '../../src/cli/explain.js';
import { dbdctl } from './run-cli.js';
import { recordingBackend } from './recording-backend.js';

describe('golden human error output', () => {
  const cases: [string[], Partial<Record<keyof DriverControl, string>>, string][] = [
    [
      ['transition-to-incremental', '0'],
      { transitionToIncremental: 'EBUSY' },
      'dbdctl: transition-to-incremental failed: EBUSY (Device or resource busy)\n' +
        '/dev/datto0 is still open or mounted: unmount it and stop every program reading it, then retry\n',
    ],
    [
      ['setup-snapshot', '/dev/sda1', '/mnt/.datto', '0'],
      { setupSnapshot: 'EINVAL' },
      'dbdctl: setup-snapshot failed: EINVAL (Invalid argument)\n' +
        '/dev/sda1 is not mounted read-write, or the COW file is not on that same filesystem or is not a regular file, ' +
        'or the block device is already tracked by another minor, or a path is longer than 4095 bytes, ' +
        'or the minor is not below the module parameter max_snap_devices (24 unless changed)\n',
    ],
    [
      ['setup-snapshot', '/dev/sda1', '/mnt/.datto', '0'],
      { setupSnapshot: 'EBUSY' },
      'dbdctl: setup-snapshot failed: EBUSY (Device or resource busy)\n' +
        'minor 0 is already in use (pick another with `dbdctl get-free-minor` or destroy it), or the filesystem is frozen (fsfreeze -u <mount point>)\n',
    ],
    [
      ['reload-incremental', '/dev/sda1', '/.datto', '1'],
      { reloadIncremental: 'EINVAL' },
      'dbdctl: reload-incremental failed: EINVAL (Invalid argument)\n' +
        '/dev/sda1 is mounted read-write (reload is for a volume not yet mounted read-write, e.g. early at boot; ' +
        'use setup-snapshot on a mounted volume), or a path is too long, or the minor is not below the module parameter max_snap_devices (24 unless changed)\n',
    ],
    [
      ['transition-to-snapshot', '/mnt/.datto', '1'],
      { transitionToSnapshot: 'EPERM' },
      'dbdctl: transition-to-snapshot failed: EPERM (Operation not permitted)\n' +
        'dattobd control requires root (CAP_SYS_ADMIN): run dbdctl as root; or the new COW file path is the COW file currently in use: give a new path for each snapshot\n',
    ],
    [
      ['transition-to-incremental', '1'],
      { transitionToIncremental: 'EFBIG' },
      'dbdctl: transition-to-incremental failed: EFBIG (File too large)\n' +
        'the COW file filled up while the transition flushed pending writes: the device is now incremental but failed ' +
        'and its changed-block list is lost; destroy it and take a new full backup (use a larger -f next time)\n',
    ],
    [
      ['expand-cow-file', '10', '1'],
      { expandCowFile: 'EINVAL' },
      'dbdctl: expand-cow-file failed: EINVAL (Invalid argument)\n' +
        "minor 1 is not an active snapshot (state 3) or has failed — only an active snapshot's COW file can grow — " +
        'or the minor is not below the module parameter max_snap_devices (24 unless changed)\n',
    ],
    [
      ['destroy', '7'],
      { destroy: 'ENOENT' },
      'dbdctl: destroy failed: ENOENT (No such file or directory)\nno dattobd device is set up on minor 7 (see `dbdctl info`)\n',
    ],
    [
      ['get-free-minor'],
      { getFreeMinor: 'ENOENT' },
      'dbdctl: get-free-minor failed: ENOENT (No such file or directory)\n' +
        'every minor is in use: destroy a device or load the module with a larger max_snap_devices\n',
    ],
  ];
  for (const [argv, fail, expected] of cases) {
    it(`${argv.join(' ')} -> ${Object.values(fail)[0]}`, async () => {
      const r = await dbdctl(argv, recordingBackend({ fail }));
      expect(r).toEqual({ code: 1, stdout: '', stderr: expected });
    });
  }

  it('JSON error: one document on stdout, nothing on stderr', async () => {
    const r = await dbdctl(['--json', 'destroy', '2'], recordingBackend({ fail: { destroy: 'EBUSY' } }));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false,
      command: 'destroy',
      exitCode: 1,
      error: {
        code: 'EBUSY',
        errno: 16,
        message: 'destroy: EBUSY',
        explanation: '/dev/datto2 is still open or mounted: unmount it and stop every program reading it, then retry',
      },
    });
  });
});

describe('explain()', () => {
  const commands: Command[] = [
    'setup-snapshot', 'reload-snapshot', 'reload-incremental', 'destroy', 'transition-to-incremental',
    'transition-to-snapshot', 'reconfigure', 'expand-cow-file', 'reconfigure-auto-expand', 'info', 'get-free-minor',
  ];
  it('never says "check dmesg" and always says something specific for SPEC errnos', () => {
    for (const c of commands) {
      for (const [name, n] of Object.entries(ERRNO)) {
        const s = explain(c, n, { minor: 1, bdev: '/dev/sda1', cow: '/c' });
        expect(s, `${c} ${name}`).not.toMatch(/dmesg/i);
        expect(s.length).toBeGreaterThan(10);
      }
    }
  });

  it('gives each SPEC §3.3 errno of the minor commands a specific reason', () => {
    const generic = (c: Command, e: number) => explain(c, e, { minor: 1 }).startsWith('the driver refused');
    for (const c of ['destroy', 'transition-to-incremental', 'transition-to-snapshot', 'reconfigure', 'expand-cow-file', 'reconfigure-auto-expand', 'info'] as Command[]) {
      expect(generic(c, ERRNO.ENOENT), `${c} ENOENT`).toBe(false);
      expect(generic(c, ERRNO.EINVAL), `${c} EINVAL`).toBe(false);
      expect(generic(c, ERRNO.EPERM), `${c} EPERM`).toBe(false);
    }
    for (const c of ['destroy', 'transition-to-incremental', 'transition-to-snapshot', 'reconfigure'] as Command[]) {
      expect(generic(c, ERRNO.EBUSY), `${c} EBUSY`).toBe(false);
    }
  });

  it('falls back to naming the errno', () => {
    expect(explain('destroy', ERRNO.EXDEV)).toBe('the driver refused destroy with EXDEV');
  });
});
