// SPDX-License-Identifier: GPL-2.0-only
/**
 * Render /proc/datto-info exactly as SPEC §4.1 (tabs, field order,
 * conditional fields, the empty-device form) with strings JSON-escaped.
 */
import type { ProcDevice, ProcInfo } from './types.js';

function deviceLines(d: ProcDevice): string[] {
  const f: string[] = [];
  const T = '\t\t\t';
  f.push(`${T}"minor": ${d.minor}`);
  f.push(`${T}"cow_file": ${JSON.stringify(d.cowFile)}`);
  f.push(`${T}"block_device": ${JSON.stringify(d.blockDevice)}`);
  f.push(`${T}"max_cache": ${d.maxCache}`);
  if (d.fallocate !== undefined) f.push(`${T}"fallocate": ${d.fallocate}`);
  if (d.cowSizeCurrent !== undefined) f.push(`${T}"cow_size_current": ${d.cowSizeCurrent}`);
  if (d.seqId !== undefined) f.push(`${T}"seq_id": ${d.seqId}`);
  if (d.uuid !== undefined) f.push(`${T}"uuid": ${JSON.stringify(d.uuid)}`);
  if (d.version !== undefined) f.push(`${T}"version": ${d.version}`);
  if (d.nrChangedBlocks !== undefined) f.push(`${T}"nr_changed_blocks": ${d.nrChangedBlocks}`);
  if (d.autoExpand !== undefined) {
    f.push(
      `${T}"auto_expand": {\n` +
        `${T}\t"step_size_mib": ${d.autoExpand.stepSizeMib},\n` +
        `${T}\t"reserved_space_mib": ${d.autoExpand.reservedSpaceMib}\n` +
        `${T}}`,
    );
  }
  if (d.error !== undefined) f.push(`${T}"error": ${d.error}`);
  f.push(`${T}"state": ${d.state}`);
  return f;
}

export function renderProcInfo(info: ProcInfo): string {
  const devs = [...info.devices].sort((a, b) => a.minor - b.minor);
  const objs = devs.map((d) => `\t\t{\n${deviceLines(d).join(',\n')}\n\t\t}`);
  return `{\n\t"version": ${JSON.stringify(info.version)},\n\t"devices": [\n${objs.join(',\n')}\n\t]\n}\n`;
}
