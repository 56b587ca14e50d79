// SPDX-License-Identifier: GPL-2.0-only
// dbdctl's command line: what each sub-command sends to the driver (units,
// defaults), which arguments it refuses before any ioctl, and its exit codes.
import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/driver/types.js';
import { dbdctl } from './run-cli.js';
import { recordingBackend } from './recording-backend.js';

async function sent(argv: string[]) {
  const b = recordingBackend();
  const r = await dbdctl(argv, b);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return b.calls;
}

describe('dbdctl sends the parameters in the driver units', () => {
  it('setup-snapshot: defaults are 0 (module defaults)', async () => {
    expect(await sent(['setup-snapshot', '/dev/sda1', '/.datto', '0'])).toEqual([
      { method: 'setupSnapshot', args: [{ minor: 0, bdev: '/dev/sda1', cow: '/.datto', fallocatedSpace: 0, cacheSize: 0 }] },
    ]);
  });

  it('setup-snapshot: -c is bytes, -f is MiB, long forms too', async () => {
    expect(await sent(['setup-snapshot', '-c', '1048576', '-f', '50', '/dev/sda1', '/mnt/cow', '3'])).toEqual([
      { method: 'setupSnapshot', args: [{ minor: 3, bdev: '/dev/sda1', cow: '/mnt/cow', fallocatedSpace: 50, cacheSize: 1048576 }] },
    ]);
    expect(await sent(['setup-snapshot', '--cache-size', '7', '--fallocate', '9', '/dev/sdb', '/c', '1'])).toEqual([
      { method: 'setupSnapshot', args: [{ minor: 1, bdev: '/dev/sdb', cow: '/c', fallocatedSpace: 9, cacheSize: 7 }] },
    ]);
  });

  it('reads a leading zero as decimal, not octal (differs from upstream)', async () => {
    expect(await sent(['destroy', '010'])).toEqual([{ method: 'destroy', args: [10] }]);
    expect(await sent(['destroy', '09'])).toEqual([{ method: 'destroy', args: [9] }]);
  });

  it('reload-snapshot and reload-incremental', async () => {
    expect(await sent(['reload-snapshot', '-c', '4096', '/dev/sda1', '/.datto', '2'])).toEqual([
      { method: 'reloadSnapshot', args: [{ minor: 2, bdev: '/dev/sda1', cow: '/.datto', cacheSize: 4096 }] },
    ]);
    expect(await sent(['reload-incremental', '/dev/sda1', '/.datto', '2'])).toEqual([
      { method: 'reloadIncremental', args: [{ minor: 2, bdev: '/dev/sda1', cow: '/.datto', cacheSize: 0 }] },
    ]);
  });

  it('the single-minor commands', async () => {
    expect(await sent(['transition-to-incremental', '4'])).toEqual([{ method: 'transitionToIncremental', args: [4] }]);
    expect(await sent(['transition-to-snapshot', '-f', '20', '/mnt/c2', '3'])).toEqual([
      { method: 'transitionToSnapshot', args: [{ minor: 3, cow: '/mnt/c2', fallocatedSpace: 20 }] },
    ]);
    expect(await sent(['transition-to-snapshot', '/mnt/c2', '3'])).toEqual([
      { method: 'transitionToSnapshot', args: [{ minor: 3, cow: '/mnt/c2', fallocatedSpace: 0 }] },
    ]);
    expect(await sent(['reconfigure', '-c', '5000000', '2'])).toEqual([{ method: 'reconfigure', args: [{ minor: 2, cacheSize: 5000000 }] }]);
    expect(await sent(['expand-cow-file', '100', '1'])).toEqual([{ method: 'expandCowFile', args: [{ minor: 1, size: 100 }] }]);
    expect(await sent(['reconfigure-auto-expand', '-r', '2', '100', '1'])).toEqual([
      { method: 'reconfigureAutoExpand', args: [{ minor: 1, stepSize: 100, reservedSpace: 2 }] },
    ]);
    expect(await sent(['reconfigure-auto-expand', '0', '1'])).toEqual([
      { method: 'reconfigureAutoExpand', args: [{ minor: 1, stepSize: 0, reservedSpace: 0 }] },
    ]);
  });

  it('global --json may come before or after the sub-command', async () => {
    for (const argv of [['--json', 'destroy', '1'], ['destroy', '1', '--json']]) {
      const b = recordingBackend();
      const r = await dbdctl(argv, b);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ ok: true, command: 'destroy', minor: 1 });
    }
  });
});

describe('dbdctl refuses bad arguments before any ioctl (exit 2)', () => {
  const bad: [string, string[], RegExp][] = [
    ['garbage minor', ['destroy', 'abc'], /minor must be a decimal number, got "abc"/],
    ['negative minor', ['destroy', '-5'], /-5/],
    ['hex minor', ['destroy', '0x1'], /hexadecimal is not accepted/],
    ['minor beyond 254', ['destroy', '255'], /minor must be at most 254/],
    ['huge minor', ['destroy', '99999999999999999999'], /minor must be at most 254/],
    ['signed number', ['destroy', '+1'], /decimal/],
    ['fractional', ['expand-cow-file', '1.5', '0'], /size \(MiB\) must be a decimal number/],
    ['cache size with unit', ['setup-snapshot', '-c', '300M', '/dev/sda1', '/c', '0'], /cache size \(bytes\) must be a decimal number/],
    ['negative falloc', ['setup-snapshot', '-f', '-1', '/dev/sda1', '/c', '0'], /-1/],
    ['MiB too large', ['expand-cow-file', '8796093022208', '0'], /at most 8796093022207/],
    ['missing argument', ['setup-snapshot', '/dev/sda1', '0'], /missing required argument 'minor'/],
    ['too many arguments', ['destroy', '1', '2'], /too many arguments/],
    ['unknown sub-command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['unknown option', ['destroy', '-x', '1'], /unknown option '-x'/],
    ['empty string', ['destroy', ''], /decimal/],
  ];
  for (const [what, argv, msg] of bad) {
    it(what, async () => {
      const b = recordingBackend();
      const r = await dbdctl(argv, b);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
      expect(b.calls).toEqual([]);
      const j = await dbdctl(['--json', ...argv], b);
      expect(j.code).toBe(2);
      const doc = JSON.parse(j.stdout);
      expect(doc).toMatchObject({ ok: false, exitCode: 2, error: { code: 'EUSAGE' } });
      expect(doc.error.message).toMatch(msg);
      expect(j.stderr).toBe('');
      expect(b.calls).toEqual([]);
    });
  }

  it('no sub-command prints the usage and exits 2', async () => {
    const r = await dbdctl([], recordingBackend());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^Usage: dbdctl/);
  });
});

describe('help and version', () => {
  it('help exits 0 with usage, exit codes and units on stdout', async () => {
    for (const argv of [['help'], ['--help'], ['-h']]) {
      const r = await dbdctl(argv, recordingBackend());
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: dbdctl/);
      expect(r.stdout).toContain('setup-snapshot [options] <bdev> <cow-file> <minor>');
      expect(r.stdout).toContain('2  usage error');
      expect(r.stdout).toContain('-c is in bytes; -f, -r, <size> and <step> are in MiB');
    }
  });

  it('help <command> shows its options', async () => {
    const r = await dbdctl(['help', 'setup-snapshot'], recordingBackend());
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('-c, --cache-size <bytes>');
    expect(r.stdout).toContain('-f, --fallocate <MiB>');
  });

  it('--version names the tool and ABI version', async () => {
    const r = await dbdctl(['--version'], recordingBackend());
    expect(r).toEqual({ code: 0, stdout: 'dbdctl (dattobd-ts) 0.1.0, driver ABI 0.12.1\n', stderr: '' });
  });
});

describe('driver unavailable (exit 3)', () => {
  it('says the module is not loaded and how to load it, before any ioctl', async () => {
    const b = recordingBackend();
    const kernelLike: Backend & { calls: unknown[] } = { ...b, name: 'kernel', io: { ...b.io, exists: () => false } };
    const r = await dbdctl(['destroy', '0'], kernelLike);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(
      'dbdctl: the dattobd kernel module does not appear to be loaded (/dev/datto-ctl is missing)\n' +
        'hint: load it with `modprobe dattobd` (or `insmod dattobd.ko` from a build tree), then retry\n',
    );
    expect(b.calls).toEqual([]);
    const j = await dbdctl(['--json', 'get-free-minor'], kernelLike);
    expect(j.code).toBe(3);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, command: 'get-free-minor', exitCode: 3, error: { code: 'ENOENT' } });
  });

  it('rejects an unknown DBDCTL_BACKEND as a usage error', async () => {
    const r = await dbdctl(['get-free-minor'], undefined, { DBDCTL_BACKEND: 'qemu' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown backend "qemu"');
  });
});
