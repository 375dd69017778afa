/**
 * bench/query.ts (`npm run bench:query`) runs end to end on a small store and
 * prints one JSON line: both systems found the same matches (the bench
 * checks it), and every latency is positive and finite. Speed is never
 * asserted: the figures depend on the machine.
 */
import t from 'tap'
import { checkBenchJson } from '../support/bench-run.js'

t.test('bench/query --json: one line, every figure positive and finite', (t) =>
  checkBenchJson(t, 'bench/query.ts', 4000, ['memwalFirst100Ms', 'memwalCountMs', 'memwalLoadMs', 'sqliteFirst100Ms', 'sqliteCountMs', 'sqliteLoadMs']),
)
