/**
 * The benchmark's arithmetic: nearest-rank percentiles, medians over
 * repetitions, the latency recorder, and batches counted in records.
 */
import t from 'tap'
import { driveAwaited, timedTrial } from '../../bench/drive.js'
import { LatencyRecorder, median, percentile, trialResult } from '../../bench/stats.js'

t.test('percentiles are nearest-rank and medians are over repetitions', async (t) => {
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1)
  t.equal(percentile(sorted, 50), 50)
  t.equal(percentile(sorted, 99), 99)
  t.equal(percentile(sorted, 99.9), 100)
  t.equal(percentile(sorted, 0), 1)
  t.ok(Number.isNaN(percentile(new Float64Array(0), 50)), 'no samples, no percentile')
  t.throws(() => percentile(sorted, 101))
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 3, 2]), 2.5)

  const rec = new LatencyRecorder(16)
  for (let i = 1000; i >= 1; i--) rec.record(i) // grows past its first capacity, recorded out of order
  const r = trialResult(1000, 500, rec)
  t.equal(r.opsPerSec, 2000)
  t.equal(r.p50Us, 500)
  t.equal(r.p99Us, 990)
  t.equal(r.maxUs, 1000)
})

t.test('a trial of batches counts records, not calls', async (t) => {
  let calls = 0
  const one = await driveAwaited(() => void calls++, 20)
  t.equal(one.ops, calls, 'every call counted once')
  calls = 0
  const batches = await timedTrial(() => void calls++, { kind: 'awaited', perOp: 256 }, { warmupMs: 0, measureMs: 20 })
  t.equal(batches.ops, calls * 256, '256 records per call')
  t.ok(Math.abs(batches.opsPerSec - (calls * 256 * 1000) / batches.elapsedMs) < 1e-6 * batches.opsPerSec, 'records per second')
})
