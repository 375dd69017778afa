/**
 * bench/query.ts (`npm run bench:query`) runs end to end on a small store and
 * prints one JSON line: both systems found the same matches (the bench
 * checks it), and every latency is positive and finite. Speed is never
 * asserted: the figures depend on the machine.
 */
import t from 'tap'
import { runBench } from '../support/bench-run.js'

t.test('bench/query --json: one line, every figure positive and finite', async (t) => {
  const { code, stdout, stderr } = await runBench('bench/query.ts', ['--records', '4000', '--reps', '1', '--json'])
  t.equal(code, 0, stderr)
  const lines = stdout.trim().split('\n')
  t.equal(lines.length, 1, 'exactly one line on stdout')
  const r = JSON.parse(lines[0] as string) as Record<string, number>
  for (const k of ['memwalFirst100Ms', 'memwalCountMs', 'memwalLoadMs', 'sqliteFirst100Ms', 'sqliteCountMs', 'sqliteLoadMs']) {
    t.ok(Number.isFinite(r[k]) && (r[k] as number) > 0, `${k} = ${r[k]}`)
  }
  t.equal(r['records'], 4000)
  t.equal((await runBench('bench/query.ts', ['--records', 'many'])).code, 16, 'a bad option is a usage error')
})
