// SPDX-License-Identifier: GPL-2.0-only
/**
 * Geometry of a `.datto` file, derived from the traced partition size only
 * (SPEC §2.1). These formulas must stay exactly as they are: data_offset is
 * recomputed from the live device size on every reload.
 */
import {
  COW_BLOCK_SIZE,
  COW_HEADER_SIZE,
  COW_SECTION_BYTES,
  COW_SECTION_ENTRIES,
  DEFAULT_FALLOCATE_PERCENTAGE,
  MIB,
  SECTORS_PER_BLOCK,
} from '../abi/constants.js';
import { FormatError } from './errors.js';

/** Bytes of one in-memory section descriptor on x86_64 (SPEC §2.12). */
export const SECTION_DESCRIPTOR_BYTES = 24;

function checkCount(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new FormatError('BAD_ARGUMENT', `${name} must be a non-negative integer, got ${v}`);
  }
}

/** Number of whole 4 KiB blocks: floor(size_sectors / 8) (pitfall P14: floor). */
export function nblocks(sizeSectors: number): number {
  checkCount('sizeSectors', sizeSectors);
  return Math.floor(sizeSectors / SECTORS_PER_BLOCK);
}

/** Number of index sections: ceil(nblocks / 4096). */
export function totalSects(sizeSectors: number): number {
  return Math.ceil(nblocks(sizeSectors) / COW_SECTION_ENTRIES);
}

/** Bytes of the on-disk index: total_sects * 32768. */
export function indexBytes(sizeSectors: number): number {
  return totalSects(sizeSectors) * COW_SECTION_BYTES;
}

/** File offset of the data area: 4096 + index_bytes. */
export function dataOffset(sizeSectors: number): number {
  return COW_HEADER_SIZE + indexBytes(sizeSectors);
}

/** First data block number (initial fpos): data_offset / 4096 = 1 + 8 * total_sects. */
export function firstDataBlk(sizeSectors: number): number {
  return dataOffset(sizeSectors) / COW_BLOCK_SIZE;
}

/**
 * Number of 4 KiB blocks touched by the device, counting a trailing partial
 * block (ceil). update-img iterates this many; the in-memory index must cover
 * it (P14), while the on-disk layout keeps the floor formula.
 */
export function blocksCeil(sizeSectors: number): number {
  checkCount('sizeSectors', sizeSectors);
  return Math.ceil(sizeSectors / SECTORS_PER_BLOCK);
}

/** Default COW file size in bytes: size * percentage / 100, exact integer division (SPEC §2.6). */
export function defaultCowSize(sizeSectors: number, percentage = DEFAULT_FALLOCATE_PERCENTAGE): number {
  checkCount('sizeSectors', sizeSectors);
  checkCount('percentage', percentage);
  return Number((BigInt(sizeSectors) * 512n * BigInt(percentage)) / 100n);
}

/** The remembered "falloc MB" of a file of `fsize` bytes: floor(fsize / 1 MiB). */
export function fallocMib(fsize: number): number {
  checkCount('fsize', fsize);
  return Math.floor(fsize / MIB);
}

/**
 * Largest size in MiB a size argument stands for (kernel/core DBD_MAX_COW_MIB):
 * its bytes still fit a loff_t. Larger requests saturate here, so that
 * fallocate refuses them (EFBIG) instead of a wrapped, small product.
 */
export const MAX_COW_MIB = 2 ** 43 - 1;

/** mib * 1 MiB, saturated at MAX_COW_MIB (kernel/core dbd_mib_bytes). */
export function mibBytes(mib: number): number {
  checkCount('mib', mib);
  return Math.min(mib, MAX_COW_MIB) * MIB;
}

/** COW file size for a setup/transition argument in MiB (0 = default percentage). */
export function cowFileSize(sizeSectors: number, fallocMibArg: number, percentage = DEFAULT_FALLOCATE_PERCENTAGE): number {
  checkCount('fallocMib', fallocMibArg);
  return fallocMibArg > 0 ? mibBytes(fallocMibArg) : defaultCowSize(sizeSectors, percentage);
}

/**
 * Index sections that may stay cached in memory (SPEC §2.12):
 * (cache_size - total_sects*24) / 32768, 0 if the cache is smaller than the
 * descriptor array.
 */
export function cacheAllowance(cacheSize: number, sects: number): number {
  checkCount('cacheSize', cacheSize);
  checkCount('sects', sects);
  const descr = sects * SECTION_DESCRIPTOR_BYTES;
  if (cacheSize < descr) return 0;
  return Math.floor((cacheSize - descr) / COW_SECTION_BYTES);
}

/**
 * Number of data blocks the append rule (SPEC §2.5) accepts in a file of
 * `fsize` bytes: blocks n >= first_data_blk with n*4096 < fsize.
 */
export function dataCapacityBlocks(sizeSectors: number, fsize: number): number {
  checkCount('fsize', fsize);
  const cap = fsize - dataOffset(sizeSectors);
  return cap > 0 ? Math.ceil(cap / COW_BLOCK_SIZE) : 0;
}

/** All geometry values of a partition at once. */
export interface Geometry {
  sizeSectors: number;
  nblocks: number;
  totalSects: number;
  indexBytes: number;
  dataOffset: number;
  firstDataBlk: number;
}

export function geometry(sizeSectors: number): Geometry {
  return {
    sizeSectors,
    nblocks: nblocks(sizeSectors),
    totalSects: totalSects(sizeSectors),
    indexBytes: indexBytes(sizeSectors),
    dataOffset: dataOffset(sizeSectors),
    firstDataBlk: firstDataBlk(sizeSectors),
  };
}
