// SPDX-License-Identifier: GPL-2.0-only
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/vm/**', 'node_modules/**', 'dist/**'],
    testTimeout: 120_000,
    pool: 'forks',
  },
});
