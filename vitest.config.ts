import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Integration tests share one Docker engine on a 2-core machine: run files one at a time.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // In CI (.ci/run sets CI=true) a .only that slipped past lint fails the run instead of
    // narrowing it.
    allowOnly: !process.env.CI,
    projects: [
      {
        // Pure code, beside its source: no engine needed.
        extends: true,
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          // A scratch TMPDIR per file, removed after it: unit tests leave no temp dirs.
          globalSetup: ['test/harness/unit-setup.ts'],
          setupFiles: ['test/harness/unit-worker-setup.ts'],
        },
      },
      {
        // The real engine, registry and images: set up once, checked for leaks after.
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          // The run's own TMPDIR and temp-dir clean-up (test/harness/ownership.ts).
          setupFiles: ['test/harness/worker-setup.ts'],
        },
      },
    ],
  },
});
