/**
 * A store keeps working while an application's tests fake the timers
 * (engine/io/host-timers.ts, LevelStore.openSublevels): the test itself is
 * test/adapters/vitest/fake-timers.ts, run under vitest's own fakes.
 */
import t from 'tap'
import { runVitest } from '../support/run-vitest.js'

t.test('puts, reads, flush, the store\'s group sync and close work under fake timers', async (t) => {
  const { code, report, failed } = await runVitest(t, 'test/adapters/vitest/fake-timers.config.ts')
  t.same(failed, [], 'no case failed')
  t.equal(report.numPassedTests, 2, 'both cases ran and passed: vitest\'s defaults, and every timer faked as Jest does')
  t.equal(code, 0, 'vitest exits 0')
})
