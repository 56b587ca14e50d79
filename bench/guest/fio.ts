// SPDX-License-Identifier: GPL-2.0-only
// fio in the guest (the host's fio over the shared root), JSON output parsed.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { VmContext } from '../../test/vm/guest/api.js';

export interface FioJob {
  filename: string;
  rw: 'read' | 'write' | 'randread' | 'randwrite';
  bs: string;
  /** region of the file/device the job works in */
  size: string;
  offset?: string;
  /** stop after this many bytes (size-based job); else after runtime seconds */
  ioSize?: string;
  runtimeS?: number;
  direct?: boolean;
  /** same seed → the same random offsets (rewrites hit the same blocks) */
  randseed?: number;
  ioengine?: string;
  iodepth?: number;
  /** command fio runs before the job starts (exec_prerun), outside the job's timing */
  prerun?: string;
  /** log the job's I/O here (write_iolog), for a later job to replay */
  writeIolog?: string;
  /**
   * Replay a logged job's I/O (read_iolog, no stalls): the same offsets. A
   * random job's offsets depend on its seed AND its position in the fio
   * process (fio mixes the job number into the seed), so the same randseed
   * does not repeat them in a later job of the same batch.
   */
  readIolog?: string;
}

export interface FioResult {
  /** context switches per I/O: of the whole guest (fio) or of the fio job's thread (fioBatch) */
  ctxtPerIo?: number;
  intrPerIo?: number;
  /** system CPU time of the fio job's thread per I/O, µs (fioBatch) */
  sysUsPerIo?: number;
  mibps: number;
  iops: number;
  bytes: number;
  seconds: number;
  /** mean completion latency, microseconds */
  clatUs: number;
}

export function fioArgs(j: FioJob, extra: readonly string[] = []): string[] {
  const a = [
    'fio',
    '--name=bench',
    `--filename=${j.filename}`,
    `--rw=${j.rw}`,
    `--bs=${j.bs}`,
    `--size=${j.size}`,
    `--ioengine=${j.ioengine ?? 'psync'}`,
    `--iodepth=${j.iodepth ?? 1}`,
    `--direct=${j.direct === false ? 0 : 1}`,
    '--numjobs=1',
    '--randrepeat=1',
    '--norandommap',
    '--allow_file_create=0',
    '--fallocate=none',
    '--invalidate=1',
    '--end_fsync=0',
  ];
  if (j.offset) a.push(`--offset=${j.offset}`);
  if (j.randseed !== undefined) a.push(`--randseed=${j.randseed}`);
  if (j.ioSize) a.push(`--io_size=${j.ioSize}`);
  if (j.runtimeS) a.push('--time_based', `--runtime=${j.runtimeS}`);
  if (j.prerun) a.push(`--exec_prerun=${j.prerun}`);
  if (j.writeIolog) a.push(`--write_iolog=${j.writeIolog}`);
  if (j.readIolog) a.push(`--read_iolog=${j.readIolog}`, '--replay_no_stall=1');
  return [...a, ...extra];
}

interface FioJson {
  jobs: Array<{
    jobname: string;
    /** context switches of the job's thread */
    ctx?: number;
    /** percent of the job's runtime */
    usr_cpu?: number;
    sys_cpu?: number;
    read: { io_bytes: number; bw_bytes: number; iops: number; runtime: number; clat_ns?: { mean: number } };
    write: { io_bytes: number; bw_bytes: number; iops: number; runtime: number; clat_ns?: { mean: number } };
  }>;
}

export function parseFio(stdout: string, rw: FioJob['rw']): FioResult {
  // fio may print warnings before the JSON document
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error(`fio printed no JSON:\n${stdout.slice(0, 2000)}`);
  const doc = JSON.parse(stdout.slice(start)) as FioJson;
  const job = doc.jobs[0];
  if (!job) throw new Error('fio JSON has no job');
  const side = rw === 'read' || rw === 'randread' ? job.read : job.write;
  const seconds = side.runtime / 1000;
  return {
    mibps: side.bw_bytes / 1048576,
    iops: side.iops,
    bytes: side.io_bytes,
    seconds,
    clatUs: (side.clat_ns?.mean ?? 0) / 1000,
  };
}

/** context switches and interrupts since boot (/proc/stat) */
export function schedCounters(): { ctxt: number; intr: number } {
  const s = readFileSync('/proc/stat', 'utf8');
  return { ctxt: Number(/^ctxt (\d+)/m.exec(s)?.[1] ?? 0), intr: Number(/^intr (\d+)/m.exec(s)?.[1] ?? 0) };
}

/** Run one fio job to completion and return its throughput. */
export function fio(t: VmContext, j: FioJob): FioResult {
  const budget = ((j.runtimeS ?? 60) + 60) * 1000;
  const c0 = schedCounters();
  const r = t.run([...fioArgs(j), '--output-format=json'], { timeoutMs: budget });
  const c1 = schedCounters();
  const res = parseFio(r.stdout, j.rw);
  if (res.bytes <= 0) throw new Error(`fio moved no data: ${fioArgs(j).join(' ')}`);
  const ios = res.iops * res.seconds;
  if (ios > 0) {
    res.ctxtPerIo = (c1.ctxt - c0.ctxt) / ios;
    res.intrPerIo = (c1.intr - c0.intr) / ios;
  }
  return res;
}

/** Start fio in the background (busy filesystem); stopped with stopBackground. */
export function fioBackground(t: VmContext, j: FioJob): ChildProcess {
  return t.spawn([...fioArgs(j), '--output-format=terse']);
}

export async function stopBackground(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const done = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await done;
  clearTimeout(timer);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Run several jobs one after another in ONE fio process (each job waits for
 * the previous one: stonewall). A guest process start costs up to seconds
 * on a loaded host (the guest runs the host's binaries over 9p), so A/B
 * pairs are batched: fewer starts, and the two sides of a pair run with no
 * gap between them. Returns one result per job, in order.
 */
export function fioBatch(t: VmContext, jobs: readonly FioJob[]): FioResult[] {
  if (!jobs.length) return [];
  const args = ['fio', '--output-format=json'];
  jobs.forEach((j, i) => {
    const one = fioArgs(j).slice(1).filter((a) => !a.startsWith('--name='));
    args.push(`--name=j${i}`, ...one, '--stonewall');
  });
  const budget = jobs.reduce((a, j) => a + (j.runtimeS ?? 60) + 30, 60) * 1000;
  const c0 = schedCounters();
  // cwd: fio writes a job's exec_prerun output to <job>.prerun.txt there (the guest's / is read-only)
  const r = t.run(args, { timeoutMs: budget, cwd: '/tmp' });
  const c1 = schedCounters();
  const start = r.stdout.indexOf('{');
  if (start < 0) throw new Error(`fio printed no JSON:\n${r.stdout.slice(0, 2000)}`);
  const doc = JSON.parse(r.stdout.slice(start)) as FioJson;
  const out = jobs.map((j, i) => {
    const job = doc.jobs.find((x) => x.jobname === `j${i}`);
    if (!job) throw new Error(`fio JSON lacks job j${i}`);
    const side = j.rw === 'read' || j.rw === 'randread' ? job.read : job.write;
    const res: FioResult = {
      mibps: side.bw_bytes / 1048576,
      iops: side.iops,
      bytes: side.io_bytes,
      seconds: side.runtime / 1000,
      clatUs: (side.clat_ns?.mean ?? 0) / 1000,
    };
    if (res.bytes <= 0) throw new Error(`fio job ${i} moved no data: ${fioArgs(j).join(' ')}`);
    const ios = res.iops * res.seconds;
    if (ios > 0 && job.ctx !== undefined) res.ctxtPerIo = job.ctx / ios;
    if (ios > 0 && job.sys_cpu !== undefined) res.sysUsPerIo = ((job.sys_cpu / 100) * res.seconds * 1e6) / ios;
    return res;
  });
  t.log(`fio batch of ${jobs.length} jobs: guest context switches ${c1.ctxt - c0.ctxt}, interrupts ${c1.intr - c0.intr}`);
  return out;
}
