// SPDX-License-Identifier: GPL-2.0-only
/**
 * `dbdctl info`: human-readable forms of /proc/datto-info. The JSON form is
 * /proc/datto-info itself (same field names and order), parsed and re-emitted.
 */
import { describeErrno } from './errno-text.js';
import type { ProcDevice } from '../proc/index.js';

const STATE_NAMES: Record<number, string> = {
  0: 'dormant incremental',
  1: 'dormant snapshot',
  2: 'active incremental',
  3: 'active snapshot',
  4: 'unverified incremental',
  5: 'unverified snapshot',
};

export function stateName(state: number): string {
  return STATE_NAMES[state] ?? `unknown state ${state}`;
}

/** 1536 -> '1.5 KiB'; exact units without decimals ('300 MiB'). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const s = Number.isInteger(v) ? String(v) : v.toFixed(1);
  return `${s} ${units[u]}`;
}

function pad(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** One line per device. */
export function formatDeviceTable(devices: ProcDevice[]): string {
  if (devices.length === 0) return 'no dattobd devices are set up\n';
  const rows = [['MINOR', 'STATE', 'BLOCK DEVICE', 'COW FILE', 'COW SIZE', 'CHANGED', 'SEQ', 'ERROR']];
  for (const d of devices) {
    rows.push([
      String(d.minor),
      stateName(d.state),
      d.blockDevice,
      d.cowFile,
      d.cowSizeCurrent === undefined ? '-' : formatBytes(d.cowSizeCurrent),
      d.nrChangedBlocks === undefined ? '-' : String(d.nrChangedBlocks),
      d.seqId === undefined ? '-' : String(d.seqId),
      d.error === undefined ? '-' : describeErrno(d.error).split(' ')[0]!,
    ]);
  }
  return pad(rows);
}

/** Every field of one device, one per line, named as in /proc/datto-info. */
export function formatDeviceDetail(d: ProcDevice): string {
  const rows: string[][] = [
    ['minor:', String(d.minor)],
    ['state:', `${d.state} (${stateName(d.state)})`],
    ['block_device:', d.blockDevice],
    ['cow_file:', d.cowFile],
    ['max_cache:', `${d.maxCache} (${formatBytes(d.maxCache)})`],
  ];
  if (d.fallocate !== undefined) rows.push(['fallocate:', `${d.fallocate} (${formatBytes(d.fallocate)})`]);
  if (d.cowSizeCurrent !== undefined) rows.push(['cow_size_current:', `${d.cowSizeCurrent} (${formatBytes(d.cowSizeCurrent)})`]);
  if (d.seqId !== undefined) rows.push(['seq_id:', String(d.seqId)]);
  if (d.uuid !== undefined) rows.push(['uuid:', d.uuid]);
  if (d.version !== undefined) rows.push(['version:', String(d.version)]);
  if (d.nrChangedBlocks !== undefined) rows.push(['nr_changed_blocks:', String(d.nrChangedBlocks)]);
  if (d.autoExpand !== undefined) {
    rows.push([
      'auto_expand:',
      `step ${d.autoExpand.stepSizeMib} MiB, reserved ${d.autoExpand.reservedSpaceMib} MiB` +
        (d.autoExpand.stepSizeMib === 0 ? ' (disabled)' : ''),
    ]);
  }
  if (d.error !== undefined) rows.push(['error:', `${d.error} (${describeErrno(d.error)}; only destroy is possible)`]);
  return pad(rows);
}
