// SPDX-License-Identifier: GPL-2.0-only
/**
 * Model-based tests: random sequences of every operation run against the
 * emulator and the reference model (test/model/model.ts). Environment:
 *   DBD_MODEL_RUNS  number of sequences (default 1000; the cycle property runs a quarter)
 *   DBD_MODEL_SEED, DBD_MODEL_PATH, DBD_MODEL_REPLAY  seed, path and the commands'
 *                   replayPath, all printed on failure: set all three (and -t) to replay
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { commandArb, newSystem } from './commands.js';

const runs = Number(process.env.DBD_MODEL_RUNS ?? 1000);
const seed = process.env.DBD_MODEL_SEED !== undefined ? Number(process.env.DBD_MODEL_SEED) : undefined;
const path = process.env.DBD_MODEL_PATH;
/** The commands' replayPath (printed in the counterexample as /*replayPath="..."*\/). */
const replayPath = process.env.DBD_MODEL_REPLAY;
const replay = replayPath ? { replayPath } : {};

function params(numRuns: number): fc.Parameters<unknown> {
  return { numRuns, ...(seed !== undefined ? { seed } : {}), ...(path ? { path } : {}) };
}

describe('model-based: emulator vs reference model', () => {
  it(`every operation in every state (${runs} sequences)`, () => {
    fc.assert(
      fc.property(fc.commands([commandArb('all')], { maxCommands: 50, size: 'medium', ...replay }), fc.nat(), (cmds, s) => {
        fc.modelRun(() => newSystem(s), cmds);
      }),
      params(runs),
    );
  });

  it(`backup cycles: snapshot image and changed-block superset (${Math.ceil(runs / 4)} sequences)`, () => {
    fc.assert(
      fc.property(fc.commands([commandArb('cycle')], { maxCommands: 80, size: 'medium', ...replay }), fc.nat(), (cmds, s) => {
        fc.modelRun(() => newSystem(s), cmds);
      }),
      params(Math.ceil(runs / 4)),
    );
  });
});
