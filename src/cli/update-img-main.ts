// SPDX-License-Identifier: GPL-2.0-only
/**
 * update-img <snapshot device> <cow file> <image file>: apply the blocks
 * changed since the previous snapshot (listed by its now index-only COW file)
 * from the current snapshot device to the full image of the previous one.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DATTOBD_VERSION } from '../abi/constants.js';
import { isDriverError } from '../driver/errors.js';
import type { Backend } from '../driver/types.js';
import { BackendChoiceError, backendName, createBackend } from './backend-select.js';
import { formatBytes } from './info-format.js';
import { ProgressBar } from './progress.js';
import { loadNativeCopy } from '../native/index.js';
import {
  DEFAULT_MERGE_GAP,
  DEFAULT_PARALLEL,
  nodeAsyncIo,
  updateImgAsync,
  UpdateImgError,
  type AsyncDataIo,
  type NativeCopyEngine,
  type UpdateImgResult,
} from './update-img-core.js';
import { TOOLS_VERSION } from './version.js';

// The copies in flight run on libuv's thread pool (4 threads by default). Its
// size is read once, when the pool first starts: this module is evaluated
// before any asynchronous file I/O of the update-img process.
process.env['UV_THREADPOOL_SIZE'] ??= String(DEFAULT_PARALLEL);

export const UPDATE_IMG_EXIT = {
  /** Every changed block was copied. */
  OK: 0,
  /** Some blocks could not be copied, or an I/O error stopped the copy (the image is incomplete). */
  COPY_FAILED: 1,
  /** Bad command line. */
  USAGE: 2,
  /** Validation failed: the image was not written. */
  INVALID: 3,
} as const;

export interface UpdateImgMainOptions {
  env?: NodeJS.ProcessEnv;
  backend?: Backend;
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
  /** Whether stderr is a terminal (progress bar); default: process.stderr.isTTY. */
  stderrIsTTY?: boolean;
  /**
   * Asynchronous file access for the data copy. Default: node:fs for the
   * kernel backend created from the command line, none (the backend's own
   * synchronous files) for an injected backend.
   */
  dataIo?: AsyncDataIo;
  /**
   * The native copy engine to use unless `--engine js` is given. Default: the
   * binding's copyWindows for the kernel backend created from the command
   * line (when it loads), none for an injected backend.
   */
  native?: NativeCopyEngine;
}

export type UpdateImgEngine = 'native' | 'js';

/**
 * How the native engine writes: by default as the engine says (direct span
 * writes unless it turned them off); --exact-writes: only the changed runs,
 * through the page cache.
 */
function writePolicy(native: NativeCopyEngine, exact: boolean): NativeCopyEngine {
  if (exact) return { ...native, directWrite: false, writeGapBytes: 0 };
  return { ...native, directWrite: native.directWrite ?? true };
}
const ENGINES: readonly UpdateImgEngine[] = ['native', 'js'];

/** `--engine` or DBD_UPDATE_IMG_ENGINE could not be honoured (nothing was written). */
class EngineChoiceError extends Error {}

/**
 * The copy engine: `forced` (--engine, else DBD_UPDATE_IMG_ENGINE) or, by
 * default, the native one when available. The native engine copies real
 * files, so it needs the kernel backend or an injected engine.
 */
function selectEngine(
  forced: string | undefined,
  backend: Backend,
  opts: UpdateImgMainOptions,
  env: NodeJS.ProcessEnv,
): { engine: UpdateImgEngine; native?: NativeCopyEngine } {
  if (forced !== undefined && !(ENGINES as readonly string[]).includes(forced)) {
    throw new EngineChoiceError(`DBD_UPDATE_IMG_ENGINE must be native or js, got "${forced}"`);
  }
  if (forced === 'js') return { engine: 'js' };
  if (opts.native) return { engine: 'native', native: opts.native };
  if (!opts.backend && backend.name === 'kernel') {
    const n = loadNativeCopy(env);
    if ('copyWindows' in n) {
      // The snapshot device is read and the image written with O_DIRECT (where they accept
      // it): no readahead of unchanged blocks, no copy of the data into the page cache and
      // no writeback at the end, and the backup does not evict the server's page cache;
      // faster in the guest benchmark (bench/RESULTS.md). DBD_UPDATE_IMG_DIRECT=0 goes
      // through the page cache for both.
      const direct = env['DBD_UPDATE_IMG_DIRECT'] !== '0';
      return { engine: 'native', native: { copyWindows: n.copyWindows, direct, directWrite: direct } };
    }
    if (forced === 'native') throw new EngineChoiceError(`the native copy engine is unavailable: ${n.unavailable}`);
    return { engine: 'js' };
  }
  if (forced === 'native') throw new EngineChoiceError(`the native copy engine copies real files: it needs the kernel backend (this is the ${backend.name} backend)`);
  return { engine: 'js' };
}

const HELP_AFTER = `
Checks before writing anything: the snapshot is a /dev/datto<N> device in active snapshot
state; the COW file has the right magic, is cleanly closed and index-only, has the same uuid
as the snapshot and the seqid just before it; the image is at least as large as the snapshot.
Runs of adjacent changed blocks are copied with I/Os of up to --max-io bytes, with up to
--parallel copies in flight; unchanged gaps of up to --merge-gap bytes between them are read
over (one larger read instead of several small ones). The native engine writes the image
with O_DIRECT where it can, each read window as one write: the unchanged blocks in it are
written with the contents the image already has (they did not change since its snapshot).
--exact-writes writes only the changed blocks, through the page cache (fewer bytes written,
more writes: for an image on network storage).

Exit status:
  0  every changed block was copied
  1  some blocks failed to copy (listed), or an I/O error stopped the copy
  2  usage error
  3  validation failed: nothing was written to the image
See update-img(8).`;

function parseMaxIo(v: string): number {
  if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(`--max-io must be a decimal number of bytes, got "${v}"`);
  const n = Number(v);
  if (n < 4096 || n % 4096 !== 0 || n > 64 * 1048576) throw new InvalidArgumentError('--max-io must be a multiple of 4096 between 4096 and 67108864');
  return n;
}

function parseParallel(v: string): number {
  if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(`--parallel must be a decimal number, got "${v}"`);
  const n = Number(v);
  if (n < 1 || n > 256) throw new InvalidArgumentError('--parallel must be between 1 and 256');
  return n;
}

function parseMergeGap(v: string): number {
  if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(`--merge-gap must be a decimal number of bytes, got "${v}"`);
  const n = Number(v);
  if (n % 4096 !== 0 || n > 64 * 1048576) throw new InvalidArgumentError('--merge-gap must be a multiple of 4096 between 0 and 67108864');
  return n;
}

function summaryText(r: UpdateImgResult): string {
  const rate = r.seconds > 0 ? `${formatBytes(Math.round(r.bytesCopied / r.seconds))}/s` : '-';
  let s =
    `copying complete: ${r.changedBlocks} blocks changed, ${r.errorBlocks} errors\n` +
    `copied ${formatBytes(r.bytesCopied)} in ${r.ios} I/Os, ${r.seconds.toFixed(2)} s (${rate})\n`;
  for (const f of r.failures) s += `failed: block ${f.block} (byte offset ${f.block * 4096}): ${f.code}\n`;
  if (r.errorBlocks > r.failures.length) s += `... and ${r.errorBlocks - r.failures.length} more failed blocks\n`;
  return s;
}

export async function main(argv: string[], opts: UpdateImgMainOptions = {}): Promise<number> {
  const env = opts.env ?? process.env;
  const stdout = opts.stdout ?? ((s: string) => void process.stdout.write(s));
  const stderr = opts.stderr ?? ((s: string) => void process.stderr.write(s));
  const tty = opts.stderrIsTTY ?? Boolean(process.stderr.isTTY);
  const json = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length).includes('--json');
  let outBuf = '';
  let errBuf = '';
  let result: UpdateImgResult | undefined;
  let engine: UpdateImgEngine = 'js';

  const emitJson = (v: unknown) => stdout(JSON.stringify(v, null, 2) + '\n');

  const program = new Command('update-img')
    .description('update a full image of the previous snapshot with the blocks changed since (dattobd)')
    .version(`update-img (dattobd-ts) ${TOOLS_VERSION}, driver ABI ${DATTOBD_VERSION}`, '-V, --version')
    .argument('<snapshot-device>', 'the current snapshot, e.g. /dev/datto0')
    .argument('<cow-file>', 'the previous COW file (index-only, closed by the last transition-to-snapshot)')
    .argument('<image-file>', 'full image of the previous snapshot (updated in place)')
    .option('--json', 'print exactly one JSON document on stdout (errors too)')
    .option('--no-progress', 'no progress bar (it is only drawn when stderr is a terminal)')
    .addOption(new Option('--max-io <bytes>', 'largest single I/O').argParser(parseMaxIo).default(1048576, '1 MiB'))
    .addOption(new Option('--parallel <n>', 'copies in flight at once').argParser(parseParallel).default(DEFAULT_PARALLEL, `${DEFAULT_PARALLEL} here: 4 per CPU, 4 to 16`))
    .addOption(new Option('--merge-gap <bytes>', 'read over unchanged gaps up to this size (0: never)').argParser(parseMergeGap).default(DEFAULT_MERGE_GAP, '256 KiB'))
    .option('--exact-writes', 'write only the changed blocks, through the page cache (see below)')
    .addOption(new Option('--backend <name>').choices(['kernel', 'emulator']).hideHelp())
    .addOption(new Option('--engine <name>').choices(ENGINES).hideHelp())
    .exitOverride()
    .configureOutput({ writeOut: (s) => (outBuf += s), writeErr: (s) => (errBuf += s) })
    .showHelpAfterError("(run 'update-img --help' for usage)")
    .addHelpText('after', HELP_AFTER)
    .action(async (snapshot: string, cow: string, image: string, o: { progress: boolean; maxIo: number; parallel: number; mergeGap: number; exactWrites?: boolean; backend?: string; engine?: string }) => {
      const backend = opts.backend ?? (await createBackend(backendName(o.backend, env)));
      const dataIo = opts.dataIo ?? (!opts.backend && backend.name === 'kernel' ? nodeAsyncIo() : undefined);
      const chosen = selectEngine(o.engine ?? env['DBD_UPDATE_IMG_ENGINE'], backend, opts, env);
      engine = chosen.engine;
      const bar = tty && o.progress && !json ? new ProgressBar(stderr) : undefined;
      let last = { doneBytes: 0, totalBytes: 0 };
      result = await updateImgAsync(backend, {
        snapshot,
        cow,
        image,
        maxIoBytes: o.maxIo,
        parallel: o.parallel,
        mergeGapBytes: o.mergeGap,
        ...(dataIo ? { dataIo } : {}),
        ...(chosen.native ? { native: writePolicy(chosen.native, o.exactWrites === true) } : {}),
        onValidated: (v) => {
          if (!json) stdout(`snapshot is ${v.snapshotBlocks} blocks large\ncopying blocks\n`);
        },
        onProgress: (p) => {
          last = p;
          bar?.update(p);
        },
      });
      bar?.finish(last);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) {
        if (json) emitJson({ ok: true, output: outBuf });
        else stdout(outBuf);
        return UPDATE_IMG_EXIT.OK;
      }
      const message = e.message.replace(/^error: /, '');
      if (json) emitJson({ ok: false, exitCode: UPDATE_IMG_EXIT.USAGE, error: { code: 'EUSAGE', message } });
      else stderr(errBuf || `update-img: ${message}\n`);
      return UPDATE_IMG_EXIT.USAGE;
    }
    if (e instanceof BackendChoiceError || e instanceof EngineChoiceError) {
      if (json) emitJson({ ok: false, exitCode: UPDATE_IMG_EXIT.USAGE, error: { code: 'EUSAGE', message: e.message } });
      else stderr(`update-img: ${e.message}\n`);
      return UPDATE_IMG_EXIT.USAGE;
    }
    if (e instanceof UpdateImgError) {
      const exit = e.code === 'IO_ERROR' ? UPDATE_IMG_EXIT.COPY_FAILED : UPDATE_IMG_EXIT.INVALID;
      const error = { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}), ...(e.errnoCode ? { errno: e.errnoCode } : {}) };
      const written = e.code === 'IO_ERROR';
      if (json) emitJson({ ok: false, exitCode: exit, imageWritten: written, error });
      else {
        const tail = written ? 'update-img: the image is incomplete' : 'update-img: the image was not modified';
        stderr(`update-img: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ''}${tail}\n`);
      }
      return exit;
    }
    if (isDriverError(e)) {
      if (json) emitJson({ ok: false, exitCode: UPDATE_IMG_EXIT.COPY_FAILED, error: { code: e.code, message: e.message } });
      else stderr(`update-img: ${e.message}\n`);
      return UPDATE_IMG_EXIT.COPY_FAILED;
    }
    throw e;
  }
  if (!result) return UPDATE_IMG_EXIT.USAGE;
  const r = result;
  const ok = r.errorBlocks === 0;
  if (json) {
    emitJson({
      ok,
      exitCode: ok ? UPDATE_IMG_EXIT.OK : UPDATE_IMG_EXIT.COPY_FAILED,
      minor: r.minor,
      snapshotBlocks: r.snapshotBlocks,
      changedBlocks: r.changedBlocks,
      copiedBlocks: r.copiedBlocks,
      errorBlocks: r.errorBlocks,
      failures: r.failures,
      bytesCopied: r.bytesCopied,
      bytesRead: r.bytesRead,
      ios: r.ios,
      seconds: r.seconds,
      cowSeqid: r.header.seqid,
      snapshotSeqid: r.info.seqid,
      uuid: r.info.uuid,
      engine,
    });
  } else {
    // The first two summary lines were printed when validation passed.
    stdout(summaryText(r));
    if (!ok) stderr(`update-img: ${r.errorBlocks} of ${r.changedBlocks} changed blocks could not be copied: the image is incomplete\n`);
  }
  return ok ? UPDATE_IMG_EXIT.OK : UPDATE_IMG_EXIT.COPY_FAILED;
}
