// SPDX-License-Identifier: GPL-2.0-only
/** Run dbdctl / update-img in-process and capture exit code, stdout, stderr. */
import type { Backend } from '../../src/driver/types.js';
import { main as dbdctlMain } from '../../src/cli/dbdctl-main.js';
import { main as updateImgMain } from '../../src/cli/update-img-main.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function dbdctl(argv: string[], backend?: Backend, env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await dbdctlMain(argv, {
    env,
    ...(backend ? { backend } : {}),
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
  });
  return { code, stdout, stderr };
}

export async function updateImg(argv: string[], backend?: Backend, tty = false): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await updateImgMain(argv, {
    env: {},
    ...(backend ? { backend } : {}),
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    stderrIsTTY: tty,
  });
  return { code, stdout, stderr };
}
