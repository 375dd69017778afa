/**
 * LangGraph's official checkpoint-saver conformance suite
 * (@langchain/langgraph-checkpoint-validation, pinned to 1.1.1 in
 * package.json) runs against MemwalSaver: every one of its tests must run and
 * pass. The suite is written for vitest (it needs vitest's globals), so it runs
 * as a child and reports through vitest's JSON reporter.
 */
import t from 'tap'
import { runVitest } from '../support/run-vitest.js'

/** How many tests version 1.1.1 of the suite defines (its own count; a different number means a different suite). */
const SUITE_TESTS = 718

t.test('MemwalSaver passes the whole LangGraph checkpoint validation suite', async (t) => {
  const { code, report, failed } = await runVitest(t, 'test/adapters/vitest/vitest.config.ts')
  t.same(failed, [], 'no test of the suite failed')
  t.equal(report.numTotalTests, SUITE_TESTS, `the suite defines ${SUITE_TESTS} tests`)
  t.equal(report.numPassedTests, SUITE_TESTS, 'every one of them ran and passed (none skipped)')
  t.equal(code, 0, 'vitest exits 0')
  t.comment(`LangGraph checkpoint validation: ${report.numPassedTests} of ${report.numTotalTests} passed`)
})
