// SPDX-License-Identifier: GPL-2.0-only
/**
 * Number arguments of dbdctl. Decimal digits only: no sign, no 0x, and a
 * leading zero does NOT mean octal (upstream dbdctl reads `010` as 8; we
 * read 10). Values the ABI type cannot carry are rejected before any ioctl.
 */
import { InvalidArgumentError } from 'commander';

/** Minors are 0..254 (the module caps max_snap_devices at 255). */
export const MAX_MINOR = 254;
/** MiB values: the byte count must stay below 2^63 in the kernel. */
export const MAX_MIB = 2 ** 43 - 1;
/** Byte values: exact in a JavaScript number. */
export const MAX_BYTES = Number.MAX_SAFE_INTEGER;

/** Parse a decimal unsigned integer in [0, max]; throws InvalidArgumentError. */
export function parseDecimal(value: string, what: string, max: number): number {
  if (!/^[0-9]+$/.test(value)) {
    const why = value.startsWith('-')
      ? 'negative values are not allowed'
      : /^0x/i.test(value)
        ? 'hexadecimal is not accepted'
        : 'use decimal digits only';
    throw new InvalidArgumentError(`${what} must be a decimal number, got "${value}" (${why}).`);
  }
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n > max) {
    throw new InvalidArgumentError(`${what} must be at most ${max}, got ${value}.`);
  }
  return n;
}

export const parseMinor = (v: string): number => parseDecimal(v, 'minor', MAX_MINOR);
export const parseCacheBytes = (v: string): number => parseDecimal(v, 'cache size (bytes)', MAX_BYTES);
export const parseMib = (what: string) => (v: string): number => parseDecimal(v, `${what} (MiB)`, MAX_MIB);
