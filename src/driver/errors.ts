// SPDX-License-Identifier: GPL-2.0-only
import { errnoName, errnoNumber } from '../abi/errno.js';

/**
 * A typed driver error: the errno (name and number), what failed, and a hint
 * that tells the user what to do about it. Never "check dmesg".
 */
export class DriverError extends Error {
  /** Positive errno number, e.g. 22. */
  readonly errno: number;
  /** Errno name, e.g. 'EINVAL'. */
  readonly code: string;
  /** The operation that failed, e.g. 'setup-snapshot'. */
  readonly op: string;
  /** What the user can do about it (may be empty). */
  readonly hint: string;

  constructor(errno: number, op: string, message?: string, hint = '') {
    const n = Math.abs(errno);
    const code = errnoName(n);
    super(message ?? `${op}: ${code}`);
    this.name = 'DriverError';
    this.errno = n;
    this.code = code;
    this.op = op;
    this.hint = hint;
  }

  /** Build from an errno name such as 'EBUSY'. */
  static of(code: string, op: string, message?: string, hint = ''): DriverError {
    const n = errnoNumber(code);
    if (n === undefined) throw new TypeError(`unknown errno name ${code}`);
    return new DriverError(n, op, message, hint);
  }
}

export function isDriverError(e: unknown): e is DriverError {
  return e instanceof DriverError;
}
