import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // onnxruntime sessions are heavy and the machine has 2 cores: files run in forks, few at a time.
    reporters: ['default', './test/summary-reporter.ts'],
    globalSetup: ['./test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // expect.poll waits for what a page or a process does next: 1 s (vitest's default) was too short for
    // a browser page on 2 busy cores (the studio's queue position took longer once, under a full run)
    expect: { poll: { timeout: 10_000 } },
  },
});
