import { defineConfig } from 'vitest/config';

// Two tiers, as docs/ARCHITECTURE.md, 'Testing with real parts', describes: fast unit tests of pure code, and integration tests
// that run real processes (hub, agents), a real dockerd and real network namespaces.
/**
 * Integration files built on the device lab (test/harness/lab.ts and the like): each in network
 * namespaces, with interface names and dockerds of its own, and nothing on the host's ports.
 */
const LAB_FILES = [
  'test/integration/lab.test.ts',
  'test/integration/overlay-*.test.ts',
  'test/integration/services-*.test.ts',
  'test/integration/network-relay.test.ts',
];

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
          exclude: LAB_FILES,
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
          name: 'lab',
          include: LAB_FILES,
          environment: 'node',
          globalSetup: ['test/harness/build.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Device-lab files own everything they touch (namespaces, interfaces and wireguard-go
          // sockets named by the worker's pid, ports inside their own namespaces, their own
          // dockerds): two run at a time, as a group of their own after the unit tests and before
          // the other integration files. FLOTILLA_LAB_WORKERS=1 runs them one at a time.
          fileParallelism: true,
          maxWorkers: Number(process.env.FLOTILLA_LAB_WORKERS ?? 2),
          sequence: { groupOrder: 1 },
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
