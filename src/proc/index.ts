// SPDX-License-Identifier: GPL-2.0-only
/** /proc/datto-info: render and parse (SPEC §4.1). */
export * from './types.js';
export * from './errors.js';
export * from './render.js';
export * from './parse.js';
