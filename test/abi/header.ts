// SPDX-License-Identifier: GPL-2.0-only
/**
 * Reads kernel/include/uapi/dattobd.h, lists its structs (with field names)
 * and #defines, and compiles a C program with gcc that prints, as JSON, what
 * the compiler makes of them: ioctl numbers, sizeof, offsetof and values.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const HEADER_DIR = resolve(import.meta.dirname, '..', '..', 'kernel', 'include', 'uapi');
export const HEADER = join(HEADER_DIR, 'dattobd.h');

export interface HeaderShape {
  structs: Map<string, string[]>;
  /** #define names with their raw replacement text, excluding the include guard. */
  defines: Map<string, string>;
}

/** Strip C comments. */
function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
}

export function parseHeader(src: string): HeaderShape {
  const text = stripComments(src).replace(/\\\n/g, ' ');
  const structs = new Map<string, string[]>();
  for (const m of text.matchAll(/struct\s+(\w+)\s*\{([^}]*)\}\s*;/g)) {
    const fields: string[] = [];
    for (const decl of m[2]!.split(';')) {
      const d = decl.trim();
      if (!d) continue;
      const f = /(\w+)\s*(\[[^\]]*\])?\s*$/.exec(d);
      if (!f) throw new Error(`cannot parse field declaration "${d}" in struct ${m[1]}`);
      fields.push(f[1]!);
    }
    structs.set(m[1]!, fields);
  }
  const defines = new Map<string, string>();
  for (const m of text.matchAll(/^[ \t]*#define[ \t]+(\w+)(?![(\w])[ \t]*([^\n]*)$/gm)) {
    if (m[1]!.startsWith('_UAPI_')) continue;
    defines.set(m[1]!, m[2]!.trim());
  }
  return { structs, defines };
}

export interface CompiledAbi {
  ioctl: Record<string, number>;
  structSize: Record<string, number>;
  fieldOffset: Record<string, Record<string, number>>;
  fieldSize: Record<string, Record<string, number>>;
  numbers: Record<string, number>;
  strings: Record<string, string>;
}

/** Compile and run a C program that reports the header as gcc sees it (x86_64). */
export function compileAbi(shape: HeaderShape): CompiledAbi {
  const lines: string[] = [];
  const out = (s: string) => lines.push(`\tprintf("%s", ${JSON.stringify(s)});`);
  lines.push('#include <stdio.h>', '#include <stddef.h>', '#include "dattobd.h"', 'int main(void) {');
  out('{"ioctl":{');
  const ioctls = [...shape.defines.keys()].filter((n) => n.startsWith('IOCTL_'));
  ioctls.forEach((n, i) => {
    out(`${i ? ',' : ''}"${n.slice('IOCTL_'.length)}":`);
    lines.push(`\tprintf("%lu", (unsigned long)${n});`);
  });
  out('},"structSize":{');
  [...shape.structs.keys()].forEach((s, i) => {
    out(`${i ? ',' : ''}"${s}":`);
    lines.push(`\tprintf("%zu", sizeof(struct ${s}));`);
  });
  for (const kind of ['fieldOffset', 'fieldSize'] as const) {
    out(`},"${kind}":{`);
    [...shape.structs.entries()].forEach(([s, fields], i) => {
      out(`${i ? ',' : ''}"${s}":{`);
      fields.forEach((f, j) => {
        out(`${j ? ',' : ''}"${f}":`);
        const expr = kind === 'fieldOffset' ? `offsetof(struct ${s}, ${f})` : `sizeof(((struct ${s} *)0)->${f})`;
        lines.push(`\tprintf("%zu", ${expr});`);
      });
      out('}');
    });
  }
  out('},"numbers":{');
  const plain = [...shape.defines.entries()].filter(([n, v]) => !n.startsWith('IOCTL_') && !v.startsWith('"'));
  plain.forEach(([n], i) => {
    out(`${i ? ',' : ''}"${n}":`);
    lines.push(`\tprintf("%llu", (unsigned long long)(${n}));`);
  });
  out('},"strings":{');
  const strs = [...shape.defines.entries()].filter(([, v]) => v.startsWith('"'));
  strs.forEach(([n], i) => {
    out(`${i ? ',' : ''}"${n}":"`);
    lines.push(`\tprintf("%s", ${n});`);
    out('"');
  });
  out('}}');
  lines.push('\treturn 0;', '}');

  const dir = mkdtempSync(join(tmpdir(), 'dbd-abi-'));
  try {
    const c = join(dir, 'abi.c');
    const exe = join(dir, 'abi');
    writeFileSync(c, lines.join('\n') + '\n');
    execFileSync('gcc', ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-I', HEADER_DIR, '-o', exe, c], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return JSON.parse(execFileSync(exe, { encoding: 'utf8' })) as CompiledAbi;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function readHeaderShape(): HeaderShape {
  return parseHeader(readFileSync(HEADER, 'utf8'));
}
