// SPDX-License-Identifier: GPL-2.0-only
/** Typed errors of the `.datto` codec and validator. */

export type FormatErrorCode =
  | 'TRUNCATED'
  | 'BAD_MAGIC'
  | 'UNKNOWN_VERSION'
  | 'UNKNOWN_FLAGS'
  | 'NOT_CLEAN'
  | 'MODE_MISMATCH'
  | 'INDEX_ONLY_WITH_DATA'
  | 'FPOS_BEYOND_FSIZE'
  | 'FPOS_BEFORE_DATA'
  | 'FSIZE_BEFORE_DATA'
  | 'FSIZE_MISMATCH'
  | 'VALUE_TOO_LARGE'
  | 'INDEX_ENTRY_INVALID'
  | 'BAD_ARGUMENT';

export class FormatError extends Error {
  readonly code: FormatErrorCode;
  readonly hint: string;

  constructor(code: FormatErrorCode, message: string, hint = '') {
    super(message);
    this.name = 'FormatError';
    this.code = code;
    this.hint = hint;
  }
}

export function isFormatError(e: unknown): e is FormatError {
  return e instanceof FormatError;
}
