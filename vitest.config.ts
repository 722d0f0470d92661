import { defineConfig } from 'vitest/config';

// Two tiers, as docs/ARCHITECTURE.md, 'Testing with real parts', describes: fast unit tests of pure code, and integration tests
// that run real processes (hub, agents), a real dockerd and real network namespaces.
export default defineConfig({
  test: {
    reporters: ['default', './test/harness/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/harness/build.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Integration tests share one harness dockerd per file and real ports; run files one at a time.
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'bench',
          include: ['bench/**/*.bench.ts'],
          environment: 'node',
          testTimeout: 600_000,
          hookTimeout: 180_000,
          fileParallelism: false,
          // bench/summary.ts rewrites bench/RESULTS.md from bench/results/*.json when the run ends.
          globalSetup: ['test/harness/build.ts', 'bench/summary.ts'],
        },
      },
    ],
  },
});
