import { defineConfig } from 'vitest/config'

// The LangGraph validation suite needs vitest's globals (describe, beforeAll, ...).
export default defineConfig({
  test: {
    globals: true,
    include: ['test/adapters/vitest/langgraph-validation.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
