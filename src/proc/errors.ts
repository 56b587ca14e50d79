// SPDX-License-Identifier: GPL-2.0-only
export type ProcErrorCode = 'MALFORMED' | 'UNEXPECTED_FIELD' | 'MISSING_FIELD' | 'BAD_VALUE' | 'TRAILING_DATA';

/** /proc/datto-info text that does not follow SPEC §4.1. */
export class ProcParseError extends Error {
  readonly code: ProcErrorCode;
  /** 1-based line number of the problem. */
  readonly line: number;
  readonly hint: string;

  constructor(code: ProcErrorCode, line: number, message: string, hint = 'the text is not /proc/datto-info output of a dattobd 0.12-compatible driver') {
    super(`line ${line}: ${message}`);
    this.name = 'ProcParseError';
    this.code = code;
    this.line = line;
    this.hint = hint;
  }
}
