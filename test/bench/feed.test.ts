/**
 * bench/feed.ts (`npm run bench:feed`) runs end to end on a small store and
 * prints one JSON line with a positive, finite figure for every workload:
 * put with and without a live watch, the live and catch-up watch rates, and
 * the backup. Speed is never asserted: the figures depend on the machine.
 */
import t from 'tap'
import { runBench } from '../support/bench-run.js'

t.test('bench/feed --json: one line, every figure positive and finite', async (t) => {
  const { code, stdout, stderr } = await runBench('bench/feed.ts', ['--records', '2000', '--reps', '1', '--json'])
  t.equal(code, 0, stderr)
  const lines = stdout.trim().split('\n')
  t.equal(lines.length, 1, 'exactly one line on stdout')
  const r = JSON.parse(lines[0] as string) as Record<string, number>
  for (const k of ['putPerSec', 'watchedPutPerSec', 'watchedPutRatio', 'liveWatchPerSec', 'catchupWatchPerSec', 'backupMB', 'backupMs', 'backupMBPerSec']) {
    t.ok(Number.isFinite(r[k]) && (r[k] as number) > 0, `${k} = ${r[k]}`)
  }
  t.equal(r['records'], 2000)
  t.equal((await runBench('bench/feed.ts', ['--records', 'many'])).code, 16, 'a bad option is a usage error')
})
