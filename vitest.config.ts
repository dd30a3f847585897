import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // The engine uses every core itself; running test files one at a time keeps timings sane
    // on small machines.
    fileParallelism: false,
  },
});
