import { defineConfig } from 'vitest/config'

// Threads, not forks: vitest refuses to fake process.nextTick in a child process, and Jest's defaults fake it.
export default defineConfig({
  test: {
    pool: 'threads',
    include: ['test/adapters/vitest/fake-timers.ts'],
    testTimeout: 30_000,
  },
})
