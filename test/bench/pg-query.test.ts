/**
 * bench/pg-query.ts (`npm run bench:pg-query`) runs end to end on a small
 * store in PostgreSQL and prints one JSON line: memwal and the bare SQL found
 * the same matches (the bench checks it), and every latency is positive and
 * finite. Speed is never asserted. Skipped, saying why, without PostgreSQL
 * (a failure under CI).
 */
import t from 'tap'
import { checkBenchJson } from '../support/bench-run.js'
import { requirePg } from '../support/pg.js'

t.test('bench/pg-query --json: one line, every figure positive and finite', async (t) => {
  if (!(await requirePg(t))) return
  await checkBenchJson(t, 'bench/pg-query.ts', 2000, ['loadMs', ...['query', 'namespace'].flatMap((q) => ['First100Ms', 'CountMs', 'BareFirst100Ms', 'BareCountMs'].map((f) => `${q}${f}`)), 'namespaceMatches'])
})
