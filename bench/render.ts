// SPDX-License-Identifier: GPL-2.0-only
// Re-render bench/RESULTS.md from bench/results.json (no measurement):
//   npx tsx bench/render.ts [results.json] [RESULTS.md]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderResultsMd } from './lib/report.js';
import type { BenchResults } from './lib/types.js';

const here = dirname(fileURLToPath(import.meta.url));
const json = process.argv[2] ?? join(here, 'results.json');
const md = process.argv[3] ?? join(here, 'RESULTS.md');
const r = JSON.parse(readFileSync(json, 'utf8')) as BenchResults;
writeFileSync(md, renderResultsMd(r, existsSync(md) ? readFileSync(md, 'utf8') : ''));
console.log(`rendered ${md} from ${json}`);
