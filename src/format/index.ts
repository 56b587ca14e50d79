// SPDX-License-Identifier: GPL-2.0-only
/** The `.datto` COW file codec. */
export * from './errors.js';
export * from './geometry.js';
export * from './header.js';
export * from './cow-index.js';
export * from './validate.js';
