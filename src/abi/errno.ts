// SPDX-License-Identifier: GPL-2.0-only
/** Linux errno values (x86_64, asm-generic) used by the driver and tools. */

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  ENOTBLK: 15,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ELOOP: 40,
  EOPNOTSUPP: 95,
} as const;

export type ErrnoName = keyof typeof ERRNO;

const BY_NUMBER = new Map<number, ErrnoName>(
  Object.entries(ERRNO).map(([name, num]) => [num, name as ErrnoName]),
);

/** Name of a (positive or negative) errno value, or `E<n>` if unknown. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return BY_NUMBER.get(n) ?? `E${n}`;
}

/** Number of an errno name such as 'EINVAL'; undefined if unknown. */
export function errnoNumber(name: string): number | undefined {
  return (ERRNO as Record<string, number>)[name];
}
