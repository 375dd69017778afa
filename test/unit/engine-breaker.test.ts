/**
 * The backend's circuit breaker and apply timeout, seen through health():
 * - closed -> open after `breakerThreshold` consecutive failures, and no call
 *   reaches the down backend while it is open;
 * - open -> half-open (one probe) -> open again when the probe fails, and
 *   -> closed when it succeeds;
 * - a hanging apply times out after `applyTimeoutMs` and counts as a failure;
 *   the engine stays responsive meanwhile (writes acknowledged, pending keys
 *   readable), and when the hung call finally completes nothing is applied twice.
 * The breaker's half-open timer runs on cockatiel's real clock.
 */
import t from 'tap'
import { MemWAL, type BreakerState, type MemwalOptions } from '../../engine/index.js'
import { fastResilience, SinkFaults, waitFor } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'


async function open(dir: string, faults: SinkFaults, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 2000, wrapSink: (s) => faults.wrap(s), ...extra })
}

function breaker(engine: MemWAL): BreakerState {
  const b = engine.health().sinks.backend
  if (!b) throw new Error('no backend in health()')
  return b.breaker
}

/** Samples the backend breaker every millisecond; `stop()` returns the states seen, repeats collapsed. */
function watchBreaker(engine: MemWAL): { stop(): BreakerState[] } {
  const seen: BreakerState[] = [breaker(engine)]
  const timer = setInterval(() => {
    const s = breaker(engine)
    if (seen[seen.length - 1] !== s) seen.push(s)
  }, 1)
  return {
    stop() {
      clearInterval(timer)
      const s = breaker(engine)
      if (seen[seen.length - 1] !== s) seen.push(s)
      return seen
    },
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

t.test('breaker: closed -> open after the threshold, failed probe -> open, good probe -> closed', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  const halfOpenMs = 1000 // long enough that the checks made while open cannot race a probe
  const engine = await open(dir, faults, { resilience: { ...fastResilience, breakerThreshold: 3, breakerHalfOpenMs: halfOpenMs, applyTimeoutMs: 5000 } })
  t.teardown(() => engine.close())
  await engine.put('before', 1)
  await engine.flush({ timeoutMs: 5000 })
  t.equal(breaker(engine), 'closed')
  const watch = watchBreaker(engine)
  const events: string[] = []
  engine.on('sink-down', (e: { sink: string }) => events.push(`down:${e.sink}`))
  engine.on('sink-recovered', (e: { sink: string }) => events.push(`recovered:${e.sink}`))

  faults.down()
  const callsBefore = faults.calls('backend')
  await engine.put('k1', 'v1')
  await waitFor(() => breaker(engine) === 'open', 'breaker open')
  t.equal(faults.calls('backend') - callsBefore, 3, 'the breaker opened after exactly breakerThreshold (3) failed calls')
  t.equal(faults.failed('backend'), 3)
  t.ok((engine.health().sinks.backend?.consecutiveFailures ?? 0) >= 3, 'health counts the consecutive failures')
  t.equal(engine.health().state, 'degraded')
  // While open nothing reaches the backend: more writes, still only the 3 calls.
  for (let i = 2; i <= 5; i++) await engine.put(`k${i}`, `v${i}`)
  t.equal(faults.calls('backend') - callsBefore, 3, 'no call reaches the backend while the breaker is open')

  // The half-open probe fails: open again, one more call.
  await waitFor(() => faults.calls('backend') - callsBefore === 4, 'a half-open probe', 5000)
  await waitFor(() => breaker(engine) === 'open', 'open again after the failed probe')
  t.equal(faults.calls('backend') - callsBefore, 4, 'a half-open breaker lets one probe through')

  // The next probe hangs: the breaker is half-open while it is in flight.
  faults.hang()
  faults.up()
  await waitFor(() => faults.hanging === 1, 'the probe is in flight', 5000)
  await waitFor(() => breaker(engine) === 'half-open', 'half-open during the probe')
  t.equal(engine.health().state, 'degraded', 'degraded while half-open')
  t.equal(await engine.get('k3'), 'v3', 'a pending key reads while the probe is in flight')
  await engine.put('k6', 'v6')
  t.equal(faults.hanging, 1, 'one probe only, however many writes arrive')
  faults.release()
  await engine.flush({ timeoutMs: 5000 })
  t.equal(breaker(engine), 'closed', 'a successful probe closes the breaker')
  t.equal(engine.health().state, 'open')
  t.equal(engine.health().sinks.backend?.consecutiveFailures, 0)
  const seen = watch.stop()
  t.equal(seen[0], 'closed')
  t.equal(seen[1], 'open')
  t.strictSame(seen.slice(-3), ['open', 'half-open', 'closed'], `breaker states seen: ${seen.join(' -> ')}`)
  t.equal(seen.filter((s) => s === 'closed').length, 2, 'closed only before the outage and after the good probe')
  t.strictSame(events, ['down:backend', 'recovered:backend'])
  t.strictSame(faults.doubleApplied('backend'), [])
  for (let i = 1; i <= 6; i++) t.equal(await engine.get(`k${i}`), `v${i}`)
  await engine.close()
})

t.test('a hanging apply times out; the engine stays responsive; the late completion is not applied twice', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await open(dir, faults) // applyTimeoutMs 200, breakerThreshold 3
  t.teardown(() => engine.close())
  const downs: string[] = []
  engine.on('sink-down', (e: { sink: string }) => downs.push(e.sink))
  for (let i = 0; i < 5; i++) await engine.put(`warm-${i}`, i)
  await engine.flush({ timeoutMs: 5000 })
  const start = engine.health().wal.lastLsn

  faults.hang()
  const { lsn: hungLsn } = await engine.put('h-0', 'first')
  await waitFor(() => faults.hanging === 1, 'the apply hangs')
  await waitFor(() => engine.health().sinks.backend?.lastError?.code === 'SINK_TIMEOUT', 'the apply times out', 5000)
  const h = engine.health()
  t.ok((h.sinks.backend?.consecutiveFailures ?? 0) >= 1, 'the timeout counts as a failure')
  t.equal(h.state, 'degraded', 'health says degraded while the backend hangs')
  t.strictSame(downs, ['backend'], 'sink-down fired for the hanging backend')
  t.equal(faults.hanging, 1, 'no second call while the abandoned one is still running (no overlap)')

  // Responsive: writes are acknowledged, pending and cached keys read, all while the apply hangs.
  const acks: number[] = []
  for (let i = 1; i < 20; i++) acks.push((await engine.put(`h-${i}`, i)).lsn)
  t.strictSame(acks, Array.from({ length: 19 }, (_, i) => hungLsn + 1 + i))
  t.equal(await engine.get('h-0'), 'first')
  t.equal(await engine.get('h-19'), 19)
  t.equal(await engine.get('warm-2'), 2)
  t.ok((engine.health().sinks.backend?.lag.records ?? 0) >= 20, 'the backend lags')
  t.equal(faults.applied('backend').get(hungLsn), undefined, 'the hung record is not stored yet')

  faults.release()
  await engine.flush({ timeoutMs: 5000 })
  t.equal(engine.health().state, 'open')
  t.equal(breaker(engine), 'closed')
  const last = engine.health().wal.lastLsn
  const applied = faults.applied('backend')
  for (let lsn = start + 1; lsn <= last; lsn++) t.equal(applied.get(lsn), 1, `LSN ${lsn} applied exactly once`)
  t.strictSame(faults.doubleApplied('backend'), [], 'the timed-out call completed late, and nothing was applied twice')
  t.strictSame(await faults.backendContent(), new Map<string, unknown>([...Array.from({ length: 5 }, (_, i) => [`warm-${i}`, i] as const), ['h-0', 'first'], ...Array.from({ length: 19 }, (_, i) => [`h-${i + 1}`, i + 1] as const)]))
  await engine.close()
})

t.test('a timeout counts against the breaker: with breakerThreshold 1 one hung call opens it', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await open(dir, faults, { resilience: { ...fastResilience, breakerThreshold: 1, breakerHalfOpenMs: 100, applyTimeoutMs: 100 } })
  t.teardown(() => engine.close())
  await engine.put('cold', 'c')
  await engine.flush({ timeoutMs: 5000 })
  await engine.close()
  const faults2 = new SinkFaults({ targets: ['backend'] })
  const again = await open(dir, faults2, { resilience: { ...fastResilience, breakerThreshold: 1, breakerHalfOpenMs: 100, applyTimeoutMs: 100 } })
  t.teardown(() => again.close())
  const watch = watchBreaker(again)
  faults2.hang()
  await again.put('x', 1)
  await waitFor(() => breaker(again) === 'open', 'the breaker opens on the timeout', 5000)
  t.equal(again.health().sinks.backend?.lastError?.code, 'SINK_TIMEOUT')
  await t.rejects(again.get('cold'), { code: 'ENGINE_BACKEND_UNAVAILABLE' }, 'an uncached key is refused while the breaker is open')
  t.equal(await again.get('x'), 1, 'a pending key still reads')
  await sleep(250) // several half-open periods pass while the abandoned call still runs
  t.equal(faults2.hanging, 1, 'still one call: the next attempt waits for the abandoned one')
  faults2.release()
  await again.flush({ timeoutMs: 5000 })
  t.equal(await again.get('cold'), 'c', 'the backend answers again')
  const seen = watch.stop()
  t.strictSame([seen[0], seen[1], seen[seen.length - 1]], ['closed', 'open', 'closed'], `breaker states seen: ${seen.join(' -> ')}`)
  t.strictSame(faults2.doubleApplied('backend'), [])
  t.equal(faults2.applied('backend').get(again.health().wal.lastLsn), 1)
  await again.close()
})
