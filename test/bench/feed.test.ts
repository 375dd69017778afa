/**
 * bench/feed.ts (`npm run bench:feed`) runs end to end on a small store and
 * prints one JSON line with a positive, finite figure for every workload:
 * put with and without a live watch, the live and catch-up watch rates, a
 * batch writer with a live watch, the
 * backup, and the export in both formats. Speed is never asserted: the figures depend on the machine.
 */
import t from 'tap'
import { checkBenchJson } from '../support/bench-run.js'

t.test('bench/feed --json: one line, every figure positive and finite', (t) =>
  checkBenchJson(t, 'bench/feed.ts', 2000, ['putPerSec', 'watchedPutPerSec', 'watchedPutRatio', 'liveWatchPerSec', 'batchPutPerSec', 'batchLiveWatchPerSec', 'catchupWatchPerSec', 'backupMB', 'backupMs', 'backupMBPerSec', 'exportNdjsonMB', 'exportNdjsonMBPerSec', 'exportMsgpackMB', 'exportMsgpackMBPerSec']),
)
