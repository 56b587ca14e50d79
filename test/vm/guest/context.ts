// SPDX-License-Identifier: GPL-2.0-only
// VmContext implementation (runs in the guest).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { inspect } from 'node:util';
import {
  GuestErrnoError,
  SkipCase,
  type GuestConfig,
  type IoctlInfo,
  type IoctlTool,
  type ShOptions,
  type ShResult,
  type VmContext,
} from './api.js';
import { allowMarker } from '../lib/logscan.js';
import { kmsgMark, type KmsgReader } from './kmsg.js';

export class CaseContext implements VmContext {
  readonly kernel: { name: string; kver: string };
  readonly disks: readonly string[];
  readonly repo: string;
  readonly tmp: string;
  readonly ioctl: IoctlTool;
  readonly logLines: string[] = [];
  readonly kmsgLines: string[] = [];
  readonly mounts: string[] = [];
  readonly children: ChildProcess[] = [];

  constructor(
    readonly config: GuestConfig,
    private readonly kmsgReader: KmsgReader,
  ) {
    this.kernel = config.kernel;
    this.disks = config.disks.map((d) => d.dev);
    this.repo = config.repo;
    mkdirSync('/tmp/cases', { recursive: true });
    this.tmp = mkdtempSync('/tmp/cases/c-');
    this.ioctl = makeIoctlTool(this);
  }

  log(...args: unknown[]): void {
    const line = args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 4 }))).join(' ');
    this.logLines.push(line);
  }

  allowKernelLog(kind: string, pattern: RegExp, why: string): void {
    this.log(`kernel log: ${kind} matching /${pattern.source}/ is expected: ${why}`);
    kmsgMark(allowMarker(kind, pattern));
  }

  run(argv: readonly string[], opts: ShOptions = {}): ShResult {
    const [cmd, ...rest] = argv;
    if (!cmd) throw new Error('run: empty argv');
    const t0 = Date.now();
    const r = spawnSync(cmd, rest, {
      input: opts.input,
      timeout: opts.timeoutMs ?? this.config.commandTimeoutMs,
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      encoding: 'utf8',
      maxBuffer: 256 << 20,
      killSignal: 'SIGKILL',
    });
    const res: ShResult = {
      code: r.status ?? (r.signal ? 128 : -1),
      stdout: r.stdout ?? '',
      stderr: r.stderr ?? '',
      ms: Date.now() - t0,
    };
    const shown = argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
    this.logLines.push(`$ ${shown.length > 300 ? shown.slice(0, 300) + '…' : shown}  → ${res.code} (${res.ms} ms)`);
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
      throw new Error(`command timed out after ${opts.timeoutMs ?? this.config.commandTimeoutMs} ms: ${shown}`);
    }
    if (r.error && !opts.allowFail) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
    if (res.code !== 0 && !opts.allowFail) {
      throw new Error(
        `command failed (exit ${res.code}${r.signal ? `, ${r.signal}` : ''}): ${shown}\n` +
          tail(res.stderr || res.stdout, 40),
      );
    }
    return res;
  }

  sh(script: string, opts: ShOptions = {}): ShResult {
    return this.run(['/bin/sh', '-c', script], opts);
  }

  spawn(argv: readonly string[], opts: { cwd?: string } = {}): ChildProcess {
    const [cmd, ...rest] = argv;
    if (!cmd) throw new Error('spawn: empty argv');
    const c = spawn(cmd, rest, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(c);
    this.logLines.push(`$ ${argv.join(' ')} &  (pid ${c.pid ?? '?'})`);
    return c;
  }

  moduleLoaded(name = 'dattobd'): boolean {
    return readFileSync('/proc/modules', 'utf8')
      .split('\n')
      .some((l) => l.startsWith(`${name} `));
  }

  insmod(ko: string, params: Record<string, string | number> = {}): void {
    const p = Object.entries(params).map(([k, v]) => `${k}=${v}`);
    this.run(['insmod', ko, ...p]);
  }

  loadModule(params: Record<string, string | number> = {}): void {
    const ko = this.config.moduleKo;
    if (!ko) {
      throw new Error(
        `dattobd.ko was not built for ${this.kernel.name} (${this.kernel.kver}); see the 'build kernel/' result. First errors:\n${this.config.moduleError ?? '(none)'}`,
      );
    }
    this.insmod(ko, params);
  }

  unloadModule(): void {
    this.run(['rmmod', 'dattobd']);
  }

  modprobe(name: string): void {
    this.run(['modprobe', name]);
  }

  mkfs(kind: 'ext4' | 'xfs', dev: string, extraArgs: readonly string[] = []): void {
    // ext4: inode tables and journal zeroed by mkfs unless the case passes
    // its own -E; ext4lazyinit would otherwise write them in the background
    // after mount, into whatever snapshot the case has set up by then
    const lazy = kind === 'ext4' && !extraArgs.includes('-E') ? ['-E', 'lazy_itable_init=0,lazy_journal_init=0'] : [];
    if (kind === 'ext4') this.run(['mkfs.ext4', '-F', '-q', ...lazy, ...extraArgs, dev]);
    else this.run(['mkfs.xfs', '-f', '-q', ...extraArgs, dev]);
  }

  mount(dev: string, opts: { type?: string; options?: string; dir?: string } = {}): string {
    const dir = opts.dir ?? `/mnt/${basename(dev)}`;
    mkdirSync(dir, { recursive: true });
    const argv = ['mount'];
    if (opts.type) argv.push('-t', opts.type);
    if (opts.options) argv.push('-o', opts.options);
    argv.push(dev, dir);
    this.run(argv);
    this.mounts.push(dir);
    return dir;
  }

  umount(dirOrDev: string): void {
    this.run(['umount', dirOrDev]);
    const i = this.mounts.lastIndexOf(dirOrDev);
    if (i >= 0) this.mounts.splice(i, 1);
  }

  procInfo(): { version: string; devices: Array<Record<string, unknown>> } {
    const raw = readFileSync('/proc/datto-info', 'utf8');
    try {
      return JSON.parse(raw) as { version: string; devices: Array<Record<string, unknown>> };
    } catch (e) {
      throw new Error(`/proc/datto-info is not valid JSON (${(e as Error).message}):\n${raw}`);
    }
  }

  kmsg(): string[] {
    this.kmsgLines.push(...this.kmsgReader.read());
    return [...this.kmsgLines];
  }

  skip(reason: string): never {
    throw new SkipCase(reason);
  }
}

function tail(s: string, n: number): string {
  const lines = s.trimEnd().split('\n');
  return lines.slice(-n).map((l) => `  | ${l}`).join('\n');
}

function makeIoctlTool(t: CaseContext): IoctlTool {
  const tool = (): string => {
    const p = t.config.ioctlTool;
    if (!p || !existsSync(p)) throw new Error('dbd-ioctl tool was not built (see the harness build output)');
    return p;
  };
  const call = (args: Array<string | number>): string => {
    const r = t.run([tool(), ...args.map(String)], { allowFail: true });
    if (r.code === 0) return r.stdout;
    const m = /: (E[A-Z0-9]+|E\?) \((\d+)\)/.exec(r.stderr);
    if (m) {
      throw new GuestErrnoError(m[1] as string, Number(m[2]), String(args[0]), r.stderr.trim());
    }
    throw new Error(`dbd-ioctl ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
  };
  const opt = (v: number | undefined): Array<number> => (v === undefined ? [] : [v]);
  return {
    getFree: () => Number(call(['get-free']).trim()),
    info: (minor) => JSON.parse(call(['info', minor])) as IoctlInfo,
    setup: (minor, bdev, cow, fallocMiB, cacheBytes) => {
      const extra = cacheBytes !== undefined ? [fallocMiB ?? 0, cacheBytes] : opt(fallocMiB);
      call(['setup', minor, bdev, cow, ...extra]);
    },
    reloadSnap: (minor, bdev, cow, cacheBytes) => void call(['reload-snap', minor, bdev, cow, ...opt(cacheBytes)]),
    reloadInc: (minor, bdev, cow, cacheBytes) => void call(['reload-inc', minor, bdev, cow, ...opt(cacheBytes)]),
    destroy: (minor) => void call(['destroy', minor]),
    transitionInc: (minor) => void call(['transition-inc', minor]),
    transitionSnap: (minor, cow, fallocMiB) => void call(['transition-snap', minor, cow, ...opt(fallocMiB)]),
    reconfigure: (minor, cacheBytes) => void call(['reconfigure', minor, cacheBytes]),
    expand: (minor, sizeMiB) => void call(['expand', minor, sizeMiB]),
    autoExpand: (minor, stepMiB, reservedMiB) => void call(['auto-expand', minor, stepMiB, reservedMiB]),
    raw: (nr) => void call(['raw', nr]),
  };
}
