// SPDX-License-Identifier: GPL-2.0-only
/**
 * dbdctl: control the dattobd driver. Same sub-commands, positional
 * arguments, options and units as dattobd 0.12's dbdctl (SPEC §6.1), plus
 * `info [minor]`, `get-free-minor` and `--json`. `main()` is testable
 * without spawning a process: it takes argv, the environment, optionally a
 * backend and output sinks, and returns the exit code.
 */
import { Command as Cmd, CommanderError, Option } from 'commander';
import { CTL_DEVICE_PATH, DATTOBD_VERSION } from '../abi/constants.js';
import { DriverError, isDriverError } from '../driver/errors.js';
import { BindingMissingError, ModuleNotLoadedError } from '../driver/kernel-backend.js';
import type { Backend } from '../driver/types.js';
import { ProcParseError, parseProcInfo, type ProcDevice } from '../proc/index.js';
import { BackendChoiceError, backendName, createBackend } from './backend-select.js';
import { describeErrno } from './errno-text.js';
import { explain, type Command, type ExplainContext } from './explain.js';
import { formatDeviceDetail, formatDeviceTable } from './info-format.js';
import { parseCacheBytes, parseMib, parseMinor } from './numbers.js';
import { TOOLS_VERSION } from './version.js';

export const EXIT = {
  /** Success. */
  OK: 0,
  /** The driver refused or failed the operation. */
  DRIVER: 1,
  /** Bad command line (nothing was sent to the driver). */
  USAGE: 2,
  /** The driver is unavailable: module not loaded, or the ioctl binding not built. */
  UNAVAILABLE: 3,
} as const;

export interface MainOptions {
  env?: NodeJS.ProcessEnv;
  /** Use this backend instead of choosing one from --backend / DBDCTL_BACKEND. */
  backend?: Backend;
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
}

const EXIT_HELP = `
Exit status:
  0  success
  1  the driver refused or failed the operation (the errno and what it means are printed)
  2  usage error: bad sub-command, option or number (nothing was sent to the driver)
  3  the driver is not available (module not loaded, or the ioctl binding not built)

Units: -c is in bytes; -f, -r, <size> and <step> are in MiB. Numbers are decimal
(a leading 0 does not mean octal, unlike dattobd's dbdctl); signs and 0x are refused.
With --json, stdout carries exactly one JSON document, also for errors.
See dbdctl(8).`;

/** Outcome of one sub-command. */
interface Result {
  json: unknown;
  text: string;
}

/** The sub-command named on the command line, for error reports before an action ran. */
function commandFromArgv(argv: string[]): string | null {
  for (const a of argv) {
    if (a === '--') return null;
    if (!a.startsWith('-')) return a;
  }
  return null;
}

function isJsonRequested(argv: string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--json') return true;
  }
  return false;
}

export async function main(argv: string[], opts: MainOptions = {}): Promise<number> {
  const env = opts.env ?? process.env;
  const stdout = opts.stdout ?? ((s: string) => void process.stdout.write(s));
  const stderr = opts.stderr ?? ((s: string) => void process.stderr.write(s));
  const json = isJsonRequested(argv);

  let commandName: Command | undefined;
  let context: ExplainContext = {};
  let result: Result | undefined;
  let outBuf = '';
  let errBuf = '';
  let backend: Backend | undefined = opts.backend;

  const program = new Cmd('dbdctl');

  const getBackend = async (): Promise<Backend> => {
    if (!backend) backend = await createBackend(backendName(program.opts()['backend'] as string | undefined, env));
    return backend;
  };

  /** Backend for an ioctl command: refuse early, with advice, when the module is not loaded. */
  const ctlBackend = async (cmd: Command): Promise<Backend> => {
    const b = await getBackend();
    if (b.name === 'kernel' && !b.io.exists(CTL_DEVICE_PATH)) throw new ModuleNotLoadedError(cmd, CTL_DEVICE_PATH);
    return b;
  };

  const done = (cmd: Command, extra: Record<string, unknown> = {}): Result => ({
    json: { ok: true, command: cmd, ...extra },
    text: '',
  });

  program
    .description('control the dattobd snapshot and incremental backup driver')
    .version(`dbdctl (dattobd-ts) ${TOOLS_VERSION}, driver ABI ${DATTOBD_VERSION}`, '-V, --version')
    .option('--json', 'print exactly one JSON document on stdout (errors too)')
    .addOption(new Option('--backend <name>', 'driver backend').choices(['kernel', 'emulator']).hideHelp())
    .exitOverride()
    .configureOutput({
      writeOut: (s) => (outBuf += s),
      writeErr: (s) => (errBuf += s),
    })
    .showHelpAfterError("(run 'dbdctl help <command>' for usage)")
    .addHelpText('after', EXIT_HELP);

  const cacheOpt = () => new Option('-c, --cache-size <bytes>', 'index cache limit in bytes (0 = module default, 300 MiB)').argParser(parseCacheBytes).default(0, '0');
  const fallocOpt = () => new Option('-f, --fallocate <MiB>', 'COW file size in MiB (0 = default: 10% of the volume)').argParser(parseMib('COW file size')).default(0, '0');

  const sub = (name: Command, description: string) =>
    program.command(name).description(description).exitOverride().addHelpText('after', EXIT_HELP);

  sub('setup-snapshot', 'take a snapshot of a mounted (read-write) block device; creates /dev/datto<minor>')
    .addOption(cacheOpt())
    .addOption(fallocOpt())
    .argument('<bdev>', 'block device to snapshot, e.g. /dev/sda1')
    .argument('<cow-file>', 'COW file to create, on the filesystem of <bdev> (overwritten if it exists)')
    .argument('<minor>', 'device minor (0..max_snap_devices-1)', parseMinor)
    .action(async (bdev: string, cow: string, minor: number, o: { cacheSize: number; fallocate: number }) => {
      commandName = 'setup-snapshot';
      context = { minor, bdev, cow };
      (await ctlBackend('setup-snapshot')).ctl.setupSnapshot({ minor, bdev, cow, fallocatedSpace: o.fallocate, cacheSize: o.cacheSize });
      result = done('setup-snapshot', { minor, device: `/dev/datto${minor}` });
    });

  for (const [name, mode, article] of [
    ['reload-snapshot', 'snapshot', 'a'],
    ['reload-incremental', 'incremental', 'an'],
  ] as const) {
    sub(name, `re-register ${article} ${mode} after reboot, before <bdev> is mounted read-write (state: unverified ${mode})`)
      .addOption(cacheOpt())
      .argument('<bdev>', 'block device')
      .argument('<cow-file>', 'COW file path relative to the mount point of <bdev>, e.g. /.datto')
      .argument('<minor>', 'device minor', parseMinor)
      .action(async (bdev: string, cow: string, minor: number, o: { cacheSize: number }) => {
        commandName = name;
        context = { minor, bdev, cow };
        const b = await ctlBackend(name);
        const p = { minor, bdev, cow, cacheSize: o.cacheSize };
        if (mode === 'snapshot') b.ctl.reloadSnapshot(p);
        else b.ctl.reloadIncremental(p);
        result = done(name, { minor });
      });
  }

  sub('destroy', 'stop tracking and remove the device (deletes the COW file of an active device)')
    .argument('<minor>', 'device minor', parseMinor)
    .action(async (minor: number) => {
      commandName = 'destroy';
      context = { minor };
      (await ctlBackend('destroy')).ctl.destroy(minor);
      result = done('destroy', { minor });
    });

  sub('transition-to-incremental', 'switch an active snapshot to incremental tracking (removes /dev/datto<minor>)')
    .argument('<minor>', 'device minor', parseMinor)
    .action(async (minor: number) => {
      commandName = 'transition-to-incremental';
      context = { minor };
      (await ctlBackend('transition-to-incremental')).ctl.transitionToIncremental(minor);
      result = done('transition-to-incremental', { minor });
    });

  sub('transition-to-snapshot', 'take a new snapshot of an incremental device into a new COW file')
    .addOption(fallocOpt())
    .argument('<cow-file>', 'new COW file on the traced filesystem (must differ from the current one)')
    .argument('<minor>', 'device minor', parseMinor)
    .action(async (cow: string, minor: number, o: { fallocate: number }) => {
      commandName = 'transition-to-snapshot';
      context = { minor, cow };
      (await ctlBackend('transition-to-snapshot')).ctl.transitionToSnapshot({ minor, cow, fallocatedSpace: o.fallocate });
      result = done('transition-to-snapshot', { minor, device: `/dev/datto${minor}` });
    });

  sub('reconfigure', 'change the index cache size of a device')
    .addOption(cacheOpt())
    .argument('<minor>', 'device minor', parseMinor)
    .action(async (minor: number, o: { cacheSize: number }) => {
      commandName = 'reconfigure';
      context = { minor };
      (await ctlBackend('reconfigure')).ctl.reconfigure({ minor, cacheSize: o.cacheSize });
      result = done('reconfigure', { minor });
    });

  sub('expand-cow-file', 'grow the COW file of an active snapshot')
    .argument('<size>', 'MiB to add', parseMib('size'))
    .argument('<minor>', 'device minor', parseMinor)
    .action(async (size: number, minor: number) => {
      commandName = 'expand-cow-file';
      context = { minor };
      (await ctlBackend('expand-cow-file')).ctl.expandCowFile({ minor, size });
      result = done('expand-cow-file', { minor });
    });

  sub('reconfigure-auto-expand', 'let the COW file of an active snapshot grow by <step> MiB when full')
    .addOption(new Option('-r, --reserved <MiB>', 'MiB to keep free on the filesystem').argParser(parseMib('reserved space')).default(0, '0'))
    .argument('<step>', 'MiB per growth step (0 disables auto-expand)', parseMib('step size'))
    .argument('<minor>', 'device minor', parseMinor)
    .action(async (step: number, minor: number, o: { reserved: number }) => {
      commandName = 'reconfigure-auto-expand';
      context = { minor };
      (await ctlBackend('reconfigure-auto-expand')).ctl.reconfigureAutoExpand({ minor, stepSize: step, reservedSpace: o.reserved });
      result = done('reconfigure-auto-expand', { minor });
    });

  sub('info', 'show all devices, or every field of one device (from /proc/datto-info)')
    .argument('[minor]', 'device minor', parseMinor)
    .action(async (minor: number | undefined) => {
      commandName = 'info';
      context = minor === undefined ? {} : { minor };
      const b = await getBackend();
      const text = b.ctl.procInfo();
      const parsed = parseProcInfo(text);
      const raw = JSON.parse(text) as { devices: unknown[] };
      if (minor === undefined) {
        result = { json: raw, text: formatDeviceTable(parsed.devices) };
        return;
      }
      const i = parsed.devices.findIndex((d: ProcDevice) => d.minor === minor);
      if (i < 0) {
        // Let the driver say why (ENOENT: no such device, EINVAL: out of range).
        b.ctl.info(minor);
        throw DriverError.of('ENOENT', 'info', `minor ${minor} is not listed in /proc/datto-info`);
      }
      result = { json: raw.devices[i], text: formatDeviceDetail(parsed.devices[i]!) };
    });

  sub('get-free-minor', 'print the lowest minor that is not in use')
    .action(async () => {
      commandName = 'get-free-minor';
      const minor = (await ctlBackend('get-free-minor')).ctl.getFreeMinor();
      result = { json: { minor }, text: `${minor}\n` };
    });

  const emitJson = (v: unknown) => stdout(JSON.stringify(v, null, 2) + '\n');

  const fail = (code: number, e: { code: string; errno?: number; message: string; explanation?: string; hint?: string }, human: string): number => {
    if (json) emitJson({ ok: false, command: commandName ?? commandFromArgv(argv), exitCode: code, error: e });
    else stderr(human);
    return code;
  };

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) {
        // --help, help, --version
        if (json) emitJson({ ok: true, output: outBuf });
        else stdout(outBuf);
        return EXIT.OK;
      }
      const message = e.message.replace(/^error: /, '');
      return fail(EXIT.USAGE, { code: 'EUSAGE', message }, errBuf || `dbdctl: ${message}\n`);
    }
    if (e instanceof BackendChoiceError) return fail(EXIT.USAGE, { code: 'EUSAGE', message: e.message }, `dbdctl: ${e.message}\n`);
    if (e instanceof ModuleNotLoadedError || e instanceof BindingMissingError) {
      return fail(
        EXIT.UNAVAILABLE,
        { code: e.code, errno: e.errno, message: e.message, hint: e.hint },
        `dbdctl: ${e.message}\nhint: ${e.hint}\n`,
      );
    }
    if (isDriverError(e)) {
      const cmd = commandName ?? (e.op as Command);
      const explanation = explain(cmd, e.errno, context);
      const generic = e.message === `${e.op}: ${e.code}`;
      const lines = [`dbdctl: ${cmd} failed: ${describeErrno(e.errno)}`, explanation];
      if (!generic) lines.push(`driver: ${e.message}`);
      if (e.hint) lines.push(`hint: ${e.hint}`);
      return fail(
        EXIT.DRIVER,
        { code: e.code, errno: e.errno, message: e.message, explanation, ...(e.hint ? { hint: e.hint } : {}) },
        lines.join('\n') + '\n',
      );
    }
    if (e instanceof ProcParseError) {
      return fail(EXIT.DRIVER, { code: 'EPROC', message: e.message, hint: e.hint }, `dbdctl: cannot read /proc/datto-info: ${e.message}\nhint: ${e.hint}\n`);
    }
    throw e;
  }
  if (!result) {
    // `dbdctl` with no sub-command: commander printed the help.
    return fail(EXIT.USAGE, { code: 'EUSAGE', message: 'no sub-command given' }, outBuf + errBuf);
  }
  if (json) emitJson(result.json);
  else if (result.text) stdout(result.text);
  return EXIT.OK;
}
