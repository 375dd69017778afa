/**
 * bench/expiry.ts (`npm run bench:expiry`) runs end to end on a small store
 * and prints one JSON line: the watch saw every expired entry deleted (the
 * bench waits for it), and the writer's latencies before and during the
 * sweep are positive and finite. Speed is never asserted.
 */
import t from 'tap'
import { checkBenchJson } from '../support/bench-run.js'

t.test('bench/expiry --json: one line, every figure positive and finite', (t) =>
  checkBenchJson(t, 'bench/expiry.ts', 2000, ['sweepMs', 'beforeP99Ms', 'beforeMaxMs', 'duringP99Ms', 'duringMaxMs']),
)
