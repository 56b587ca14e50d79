// SPDX-License-Identifier: GPL-2.0-only
// Man pages render without groff warnings and document what the tools do
// (every sub-command, every exit code); bash completion offers sub-commands,
// per-command options and minors.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/dbdctl-main.js';
import { UPDATE_IMG_EXIT } from '../../src/cli/update-img-main.js';
import { dbdctl } from './run-cli.js';
import { recordingBackend } from './recording-backend.js';

const CLI = resolve(import.meta.dirname, '..', '..', 'src', 'cli');
const haveGroff = spawnSync('groff', ['--version']).status === 0;

function render(page: string): { out: string; warnings: string } {
  const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-P', '-c', resolve(CLI, page)], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  return { out: r.stdout.replace(/.\x08/g, ''), warnings: r.stderr };
}

describe.skipIf(!haveGroff)('man pages', () => {
  it('dbdctl.8 renders cleanly and documents every sub-command and exit code', async () => {
    const { out, warnings } = render('dbdctl.8');
    expect(warnings).toBe('');
    const help = (await dbdctl(['help'], recordingBackend())).stdout;
    const commands = [...help.matchAll(/^ {2}([a-z][a-z-]+) /gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    expect(commands).toHaveLength(11);
    for (const c of commands) expect(out, c).toContain(c);
    for (const code of Object.values(EXIT)) expect(out).toMatch(new RegExp(`^ {7}${code}\\s`, 'm'));
    expect(out.replace(/\s+/g, ' ')).toContain('a leading zero does not mean octal');
  });

  it('update-img.8 renders cleanly and documents every exit code', () => {
    const { out, warnings } = render('update-img.8');
    expect(warnings).toBe('');
    for (const code of Object.values(UPDATE_IMG_EXIT)) expect(out).toMatch(new RegExp(`^ {7}${code}\\s`, 'm'));
    for (const check of ['CLEAN', 'INDEX_ONLY', 'uuid', 'sequence id']) expect(out).toContain(check);
  });
});

/** Run the completion function for a command line (the last word is being completed). */
function complete(words: string[], proc = ''): string[] {
  const script = `
    _init_completion() { cur=\${COMP_WORDS[COMP_CWORD]}; prev=\${COMP_WORDS[COMP_CWORD-1]}; words=("\${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
    _filedir() { COMPREPLY=(FILE); }
    source ${JSON.stringify(resolve(CLI, 'dbdctl.bash-completion'))}
    _dbdctl_minors() { printf '%b' ${JSON.stringify(proc)}; }
    COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')})
    COMP_CWORD=${words.length - 1}
    if [ "\${COMP_WORDS[0]}" = update-img ]; then _update_img; else _dbdctl; fi
    printf '%s\\n' "\${COMPREPLY[@]}"
  `;
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter(Boolean).sort();
}

describe.skipIf(!existsSync('/bin/bash'))('bash completion', () => {
  it('completes sub-commands', () => {
    expect(complete(['dbdctl', 'tr'])).toEqual(['transition-to-incremental', 'transition-to-snapshot']);
    expect(complete(['dbdctl', '--json', 'get'])).toEqual(['get-free-minor']);
  });

  it('completes the options of each sub-command', () => {
    expect(complete(['dbdctl', 'setup-snapshot', '-'])).toEqual(['--cache-size', '--fallocate', '--help', '--json', '-c', '-f']);
    expect(complete(['dbdctl', 'reconfigure-auto-expand', '-'])).toEqual(['--help', '--json', '--reserved', '-r']);
    expect(complete(['dbdctl', 'destroy', '-'])).toEqual(['--help', '--json']);
  });

  it('completes minors in use, files and free minors by position', () => {
    const proc = '0\n3\n';
    expect(complete(['dbdctl', 'destroy', ''], proc)).toEqual(['0', '3']);
    expect(complete(['dbdctl', 'expand-cow-file', '10', ''], proc)).toEqual(['0', '3']);
    expect(complete(['dbdctl', 'transition-to-snapshot', '-f', '5', ''], proc)).toEqual(['FILE']);
    expect(complete(['dbdctl', 'transition-to-snapshot', '/x', ''], proc)).toEqual(['0', '3']);
    const free = complete(['dbdctl', 'setup-snapshot', '-c', '9', '/dev/sda1', '/c', ''], proc);
    expect(free).toContain('1');
    expect(free).not.toContain('0');
    expect(free).not.toContain('3');
  });

  it('completes update-img options and files', () => {
    expect(complete(['update-img', '--n'])).toEqual(['--no-progress']);
    expect(complete(['update-img', '--p'])).toEqual(['--parallel']);
    expect(complete(['update-img', '--m'])).toEqual(['--max-io', '--merge-gap']);
    expect(complete(['update-img', '/dev/datto0', ''])).toEqual(['FILE']);
    // an option's value is not a positional argument: the first one is still the snapshot device
    expect(complete(['update-img', '--parallel', '4', ''])).not.toContain('FILE');
  });
});

it('ships the man pages and completion next to the sources', () => {
  for (const f of ['dbdctl.8', 'update-img.8', 'dbdctl.bash-completion']) {
    expect(readFileSync(resolve(CLI, f), 'utf8')).toMatch(/SPDX-License-Identifier: GPL-2.0-only/);
  }
});
