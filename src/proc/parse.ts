// SPDX-License-Identifier: GPL-2.0-only
/**
 * Parse /proc/datto-info text (SPEC §4.1) into typed objects. The parser is
 * strict about structure (order of fields, tabs, commas) so that it doubles as
 * a conformance check of the renderer and of the kernel module's output.
 * Strings are read as JSON strings (escaped, as this project emits them).
 */
import { ProcParseError } from './errors.js';
import type { ProcDevice, ProcInfo } from './types.js';

type NumField = 'minor' | 'max_cache' | 'fallocate' | 'cow_size_current' | 'seq_id' | 'version' | 'nr_changed_blocks' | 'error' | 'state';
type StrField = 'cow_file' | 'block_device' | 'uuid';

/** Allowed fields in output order; `req` = mandatory. */
const ORDER: { name: NumField | StrField | 'auto_expand'; kind: 'num' | 'str' | 'obj'; req: boolean }[] = [
  { name: 'minor', kind: 'num', req: true },
  { name: 'cow_file', kind: 'str', req: true },
  { name: 'block_device', kind: 'str', req: true },
  { name: 'max_cache', kind: 'num', req: true },
  { name: 'fallocate', kind: 'num', req: false },
  { name: 'cow_size_current', kind: 'num', req: false },
  { name: 'seq_id', kind: 'num', req: false },
  { name: 'uuid', kind: 'str', req: false },
  { name: 'version', kind: 'num', req: false },
  { name: 'nr_changed_blocks', kind: 'num', req: false },
  { name: 'auto_expand', kind: 'obj', req: false },
  { name: 'error', kind: 'num', req: false },
  { name: 'state', kind: 'num', req: true },
];

const NUM_RE = /^-?(0|[1-9][0-9]*)$/;

class Lines {
  i = 0;
  constructor(readonly lines: string[]) {}
  get lineNo(): number {
    return this.i + 1;
  }
  next(): string {
    const l = this.lines[this.i];
    if (l === undefined) throw new ProcParseError('MALFORMED', this.lineNo, 'unexpected end of text');
    this.i++;
    return l;
  }
  peek(): string | undefined {
    return this.lines[this.i];
  }
  expect(exact: string): void {
    const l = this.next();
    if (l !== exact) throw new ProcParseError('MALFORMED', this.i, `expected ${JSON.stringify(exact)}, got ${JSON.stringify(l)}`);
  }
}

function parseNum(s: string, line: number, name: string): number {
  if (!NUM_RE.test(s)) throw new ProcParseError('BAD_VALUE', line, `field ${name}: not an integer: ${JSON.stringify(s)}`);
  const v = Number(s);
  if (!Number.isSafeInteger(v)) throw new ProcParseError('BAD_VALUE', line, `field ${name}: ${s} is beyond 2^53-1`);
  return v;
}

function parseStr(s: string, line: number, name: string): string {
  if (!s.startsWith('"')) throw new ProcParseError('BAD_VALUE', line, `field ${name}: expected a string, got ${s}`);
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    throw new ProcParseError('BAD_VALUE', line, `field ${name}: invalid JSON string ${s}`);
  }
  if (typeof v !== 'string') throw new ProcParseError('BAD_VALUE', line, `field ${name}: expected a string`);
  return v;
}

/** Split `<indent>"key": value[,]` into its parts. */
function splitField(l: string, indent: string, lineNo: number): { key: string; value: string; comma: boolean } {
  if (!l.startsWith(indent) || l[indent.length] !== '"') {
    throw new ProcParseError('MALFORMED', lineNo, `expected a field indented by ${indent.length} tabs: ${JSON.stringify(l)}`);
  }
  const m = /^"([a-z_]+)": (.*)$/.exec(l.slice(indent.length));
  if (!m) throw new ProcParseError('MALFORMED', lineNo, `malformed field line ${JSON.stringify(l)}`);
  let value = m[2] ?? '';
  const comma = value.endsWith(',');
  if (comma) value = value.slice(0, -1);
  return { key: m[1] ?? '', value, comma };
}

function parseDevice(L: Lines): ProcDevice {
  const seen = new Map<string, number | string | { stepSizeMib: number; reservedSpaceMib: number }>();
  let pos = 0;
  for (;;) {
    const lineNo = L.lineNo;
    const { key, value, comma } = splitField(L.next(), '\t\t\t', lineNo);
    const idx = ORDER.findIndex((o, i) => i >= pos && o.name === key);
    if (idx < 0) {
      const known = ORDER.some((o) => o.name === key);
      throw new ProcParseError('UNEXPECTED_FIELD', lineNo, known ? `field ${key} out of order or repeated` : `unknown field ${key}`);
    }
    for (let i = pos; i < idx; i++) {
      const o = ORDER[i];
      if (o?.req) throw new ProcParseError('MISSING_FIELD', lineNo, `field ${o.name} missing before ${key}`);
    }
    const spec = ORDER[idx];
    pos = idx + 1;
    if (spec?.kind === 'num') seen.set(key, parseNum(value, lineNo, key));
    else if (spec?.kind === 'str') seen.set(key, parseStr(value, lineNo, key));
    else {
      if (value !== '{') throw new ProcParseError('MALFORMED', lineNo, 'auto_expand must open an object');
      const s1 = splitField(L.next(), '\t\t\t\t', L.i);
      if (s1.key !== 'step_size_mib' || !s1.comma) throw new ProcParseError('MALFORMED', L.i, 'expected "step_size_mib": N,');
      const s2 = splitField(L.next(), '\t\t\t\t', L.i);
      if (s2.key !== 'reserved_space_mib' || s2.comma) throw new ProcParseError('MALFORMED', L.i, 'expected "reserved_space_mib": N');
      const close = L.next();
      if (close !== '\t\t\t}' && close !== '\t\t\t},') throw new ProcParseError('MALFORMED', L.i, 'auto_expand object not closed');
      seen.set(key, { stepSizeMib: parseNum(s1.value, L.i - 2, s1.key), reservedSpaceMib: parseNum(s2.value, L.i - 1, s2.key) });
      if (close !== '\t\t\t},') throw new ProcParseError('MALFORMED', L.i, 'auto_expand must be followed by more fields');
      continue;
    }
    if (key === 'state') {
      if (comma) throw new ProcParseError('MALFORMED', lineNo, 'no comma allowed after the last field');
      break;
    }
    if (!comma) throw new ProcParseError('MALFORMED', lineNo, `missing comma after field ${key}`);
  }
  const num = (k: string): number | undefined => seen.get(k) as number | undefined;
  const str = (k: string): string | undefined => seen.get(k) as string | undefined;
  const d: ProcDevice = {
    minor: num('minor') ?? 0,
    cowFile: str('cow_file') ?? '',
    blockDevice: str('block_device') ?? '',
    maxCache: num('max_cache') ?? 0,
    state: num('state') ?? 0,
  };
  const opt = <K extends keyof ProcDevice>(k: K, v: ProcDevice[K] | undefined): void => {
    if (v !== undefined) d[k] = v;
  };
  opt('fallocate', num('fallocate'));
  opt('cowSizeCurrent', num('cow_size_current'));
  opt('seqId', num('seq_id'));
  opt('uuid', str('uuid'));
  opt('version', num('version'));
  opt('nrChangedBlocks', num('nr_changed_blocks'));
  opt('autoExpand', seen.get('auto_expand') as ProcDevice['autoExpand']);
  opt('error', num('error'));
  return d;
}

export function parseProcInfo(text: string): ProcInfo {
  if (!text.endsWith('\n')) throw new ProcParseError('MALFORMED', text.split('\n').length, 'text must end with a newline');
  const L = new Lines(text.slice(0, -1).split('\n'));
  L.expect('{');
  const vLine = L.lineNo;
  const v = splitField(L.next(), '\t', vLine);
  if (v.key !== 'version' || !v.comma) throw new ProcParseError('MALFORMED', vLine, 'expected "version": "...",');
  const version = parseStr(v.value, vLine, 'version');
  L.expect('\t"devices": [');
  const devices: ProcDevice[] = [];
  if (L.peek() === '') {
    L.next();
  } else {
    for (;;) {
      L.expect('\t\t{');
      devices.push(parseDevice(L));
      const close = L.next();
      if (close === '\t\t},') continue;
      if (close === '\t\t}') break;
      throw new ProcParseError('MALFORMED', L.i, `expected end of device object, got ${JSON.stringify(close)}`);
    }
  }
  L.expect('\t]');
  L.expect('}');
  if (L.peek() !== undefined) throw new ProcParseError('TRAILING_DATA', L.lineNo, 'text after the closing brace');
  for (let i = 1; i < devices.length; i++) {
    if ((devices[i]?.minor ?? 0) <= (devices[i - 1]?.minor ?? 0)) {
      throw new ProcParseError('BAD_VALUE', 0, 'devices are not in ascending minor order');
    }
  }
  return { version, devices };
}
