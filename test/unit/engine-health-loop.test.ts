/**
 * The health loop (issue 14 item 4), on a manual clock (no timed assertions):
 * - a backend failing only on reads, with no traffic at all, turns the engine
 *   degraded within one probe interval and open again one interval after it
 *   recovers, with sink-down, state, sink-recovered, state in that order;
 * - failed backend reads count toward its health: after breakerThreshold of
 *   them the backend is down and the engine degraded (before, ten failed reads
 *   left it open); an idle probe brings it back once the backend answers;
 * - an open breaker is probed (half-open) by the idle engine;
 * - a sink in use is not probed; an idle one is, once per interval;
 * - a read that works ends the failures in a row (consecutiveFailures 0);
 * - a probe that never answers: one at a time (no pile-up, one per check),
 *   bounded by the apply timeout (down), and close() does not wait for it;
 * - the index likewise: failing only on reads, degraded within one probe
 *   interval and open again after it recovers; its reads by query and
 *   listNamespaces count toward its health (down after breakerThreshold,
 *   in health(), the events and memwal_read_failures_total{sink="index"}),
 *   and the next one that works brings it back; so does a failed estimate of
 *   a posting's size (a query of several tags), which refuses the query typed.
 */
import t from 'tap'
import { Registry } from 'prom-client'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import type { ManualClock } from '../../engine/testing.js'
import { SinkFaults } from '../support/faulty-sink.js'
import { manualOptions, manualWorld } from '../support/manual-engine.js'
import { settle, waitFor } from '../support/wait-for.js'

const INTERVAL_MS = 10_000

async function openManual(t: { teardown(fn: () => unknown): void }, faults: SinkFaults, extra: Partial<MemwalOptions> = {}): Promise<{ engine: MemWAL; clock: ManualClock; events: string[] }> {
  const w = manualWorld(3)
  const { clock } = w
  const engine = await MemWAL.open(manualOptions(w, { wrapSink: (s) => faults.wrap(s), ...extra }))
  t.teardown(() => engine.close())
  const events: string[] = []
  engine.on('sink-down', (e) => events.push(`sink-down ${e.sink}`))
  engine.on('sink-recovered', (e) => events.push(`sink-recovered ${e.sink}`))
  engine.on('state', (e) => events.push(`state ${e.from}->${e.to}`))
  return { engine, clock, events }
}

/** An engine with the health loop on INTERVAL_MS, one record written and applied everywhere: idle, healthy, with nothing pending. */
async function openApplied(t: { teardown(fn: () => unknown): void }, faults: SinkFaults): Promise<{ engine: MemWAL; clock: ManualClock; events: string[] }> {
  const opened = await openManual(t, faults, { healthIntervalMs: INTERVAL_MS })
  await opened.engine.put('a', 1)
  await settle()
  await opened.engine.flush()
  return opened
}

t.test('a backend failing only on reads: degraded within one probe interval without traffic, open again after it recovers', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine, clock, events } = await openApplied(t, faults)
  t.equal(engine.health().state, 'open')
  faults.readsDown()
  const probesBefore = faults.calls('backend')
  clock.advance(INTERVAL_MS)
  await waitFor(() => engine.health().state === 'degraded', 'degraded after one interval')
  t.strictSame(events, ['sink-down backend', 'state open->degraded'], 'sink-down, then the state event')
  t.equal(faults.calls('backend'), probesBefore, 'the probe is a read, not an apply')
  t.equal(engine.health().sinks.backend?.lastError?.code, 'EINJECTED', 'health says why')
  t.equal(engine.health().level, 'log-and-cache-reads', 'the backend cannot answer reads: served from the log and the cache')
  t.equal(engine.health().sinks.backend?.breaker, 'closed', 'its applies work: the breaker stays closed')

  faults.readsUp()
  clock.advance(INTERVAL_MS)
  await waitFor(() => engine.health().state === 'open', 'open again after one more interval')
  t.strictSame(events, ['sink-down backend', 'state open->degraded', 'sink-recovered backend', 'state degraded->open'], 'the events in order')
  t.equal(engine.health().sinks.backend?.consecutiveFailures, 0)
})

t.test('failed reads count: after breakerThreshold of them the backend is down; an idle probe brings it back', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine, clock, events } = await openApplied(t, faults)
  faults.readsDown()
  const codes: string[] = []
  for (let i = 0; i < 10; i++) codes.push(await engine.get(`cold-${i}`).then(() => 'answered', (e: { code: string }) => e.code))
  t.strictSame(new Set(codes), new Set(['ENGINE_BACKEND_UNAVAILABLE']), 'ten reads refused, none answered "not found"')
  const h = engine.health()
  t.equal(h.state, 'degraded', 'ten failed reads: degraded (they used to leave it open)')
  t.equal(h.level, 'log-and-cache-reads', 'reads only from the log and the cache now')
  t.equal(h.sinks.backend?.consecutiveFailures, 10, 'every failed read counted')
  t.equal(h.sinks.backend?.breaker, 'closed', 'the breaker guards applies, which work: a read is tried as soon as it may answer')
  t.strictSame(events, ['sink-down backend', 'state open->degraded'], 'down after breakerThreshold (3) failed reads, once')

  clock.advance(INTERVAL_MS)
  await settle()
  t.equal(engine.health().state, 'degraded', 'a probe that fails keeps it down')
  faults.readsUp()
  clock.advance(INTERVAL_MS)
  await waitFor(() => engine.health().state === 'open', 'open again')
  t.strictSame(events, ['sink-down backend', 'state open->degraded', 'sink-recovered backend', 'state degraded->open'])
  t.equal(engine.health().sinks.backend?.consecutiveFailures, 0)
  t.equal(await engine.get('a'), 1)
})

t.test('an open breaker gets its half-open probe from the idle engine', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine, clock, events } = await openManual(t, faults, { healthIntervalMs: INTERVAL_MS })
  faults.down()
  await engine.put('a', 1)
  // The applier retries on the manual clock until the breaker opens.
  for (let i = 0; i < 50 && engine.health().sinks.backend?.breaker !== 'open'; i++) {
    await settle()
    clock.advance(100)
  }
  t.equal(engine.health().sinks.backend?.breaker, 'open', 'the breaker opened')
  faults.up()
  // The applier's own retry would close it too; the records flush, and from then on only a probe can tell.
  await settle()
  clock.advance(INTERVAL_MS)
  await waitFor(() => engine.health().state === 'open', 'open again')
  t.equal(engine.health().sinks.backend?.breaker, 'closed')
  t.strictSame(events, ['sink-down backend', 'state open->degraded', 'sink-recovered backend', 'state degraded->open'])
})

t.test('a sink in use is not probed; an idle one is, once an interval', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  let probes = 0
  const { engine, clock } = await openManual(t, faults, { healthIntervalMs: INTERVAL_MS })
  const backend = faults.sink('backend') as unknown as { get: (k: string) => Promise<unknown> }
  const get = backend.get.bind(backend)
  backend.get = async (k) => {
    if (k.startsWith('\u0000')) probes++
    return get(k)
  }
  await engine.put('a', 1)
  await settle()
  clock.advance(INTERVAL_MS / 2)
  await engine.get('cold') // the backend is used half-way through the interval
  clock.advance(INTERVAL_MS / 2)
  await settle()
  t.equal(probes, 0, 'used within the interval: no probe')
  clock.advance(INTERVAL_MS)
  await settle()
  t.equal(probes, 1, 'idle for a whole interval: one probe')
  clock.advance(INTERVAL_MS)
  await settle()
  t.equal(probes, 2, 'and one each interval after')
  t.equal(engine.health().state, 'open')
})

t.test('a read that works ends the failures in a row', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine } = await openApplied(t, faults)
  faults.readsDown()
  for (const k of ['cold-1', 'cold-2']) await t.rejects(engine.get(k), { code: 'ENGINE_BACKEND_UNAVAILABLE' })
  t.equal(engine.health().sinks.backend?.consecutiveFailures, 2, 'two failed reads (below breakerThreshold 3: not down)')
  faults.readsUp()
  t.equal(await engine.get('cold-3'), undefined, 'the backend answers again')
  t.equal(engine.health().sinks.backend?.consecutiveFailures, 0, 'and the count starts again')
  t.equal(engine.health().state, 'open')
})

/** The backend's probe reads hang for ever (point reads of other keys answer): returns how many were started. */
function hangProbes(faults: SinkFaults): { started: number } {
  const backend = faults.sink('backend') as unknown as { get: (k: string) => Promise<unknown> }
  const get = backend.get.bind(backend)
  const probes = { started: 0 }
  backend.get = (k) => {
    if (!k.startsWith('\u0000')) return get(k)
    probes.started++
    return new Promise(() => undefined)
  }
  return probes
}

t.test('a probe that never answers: one at a time, bounded by the apply timeout', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine, clock, events } = await openApplied(t, faults)
  const probes = hangProbes(faults)
  clock.advance(INTERVAL_MS)
  await settle()
  t.equal(probes.started, 1, 'idle for an interval: one probe, which hangs')
  clock.advance(5000) // applyTimeoutMs
  await waitFor(() => engine.health().state === 'degraded', 'the probe timed out: the backend is down')
  t.equal(engine.health().sinks.backend?.lastError?.code, 'SINK_TIMEOUT')
  t.strictSame(events, ['sink-down backend', 'state open->degraded'])
  for (let i = 0; i < 5; i++) {
    clock.advance(INTERVAL_MS)
    await settle()
  }
  t.equal(probes.started, 1, 'five more checks start no probe while the abandoned one still runs')
  t.equal(engine.health().state, 'degraded', 'and the backend stays down')
})

t.test('close() does not wait for a probe that never answers', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine, clock } = await openApplied(t, faults)
  const probes = hangProbes(faults)
  clock.advance(INTERVAL_MS)
  await settle()
  t.equal(probes.started, 1, 'a probe hangs, its timeout not reached (the manual clock stands still)')
  let closed = false
  const closing = engine.close().then(() => (closed = true))
  await waitFor(() => closed, 'close resolves without the clock reaching the apply timeout')
  await closing
  t.equal(engine.health().state, 'closed')
})

t.test('an index failing only on reads: degraded within one probe interval without traffic, open again after it recovers', async (t) => {
  const faults = new SinkFaults({ targets: ['index'] })
  const { engine, clock, events } = await openApplied(t, faults)
  faults.readsDown()
  clock.advance(INTERVAL_MS)
  await waitFor(() => engine.health().state === 'degraded', 'degraded after one interval')
  t.strictSame(events, ['sink-down index', 'state open->degraded'], 'sink-down, then the state event')
  t.equal(engine.health().level, 'degraded', 'the backend answers every read: only the index is down')
  t.equal(engine.health().sinks.index?.lastError?.code, 'EINJECTED', 'health says why')
  faults.readsUp()
  clock.advance(INTERVAL_MS)
  await waitFor(() => engine.health().state === 'open', 'open again after one more interval')
  t.strictSame(events, ['sink-down index', 'state open->degraded', 'sink-recovered index', 'state degraded->open'], 'the events in order')
})

t.test('failed index reads (query, listNamespaces) count toward its health; one that works brings it back', async (t) => {
  const faults = new SinkFaults({ targets: ['index'] })
  const registry = new Registry()
  const { engine, events } = await openManual(t, faults, { healthIntervalMs: INTERVAL_MS, metrics: registry })
  await engine.put('a', 1, { tags: ['x'] })
  await settle()
  await engine.flush()
  faults.readsDown()
  const keys = async (): Promise<string[]> => {
    const out: string[] = []
    for await (const e of engine.query({ tag: 'x' })) out.push(e.key)
    return out
  }
  await t.rejects(keys(), { code: 'ENGINE_BACKEND_UNAVAILABLE' }, 'a query the index cannot answer: typed')
  await t.rejects(engine.listNamespaces(), { code: 'ENGINE_BACKEND_UNAVAILABLE' }, 'listNamespaces too (it threw the raw error before)')
  t.equal(engine.health().sinks.index?.consecutiveFailures, 2, 'both failed reads counted')
  t.equal(engine.health().state, 'open', 'below breakerThreshold (3): not down yet')
  t.strictSame(events, [])
  await t.rejects(keys(), { code: 'ENGINE_BACKEND_UNAVAILABLE' })
  const h = engine.health()
  t.equal(h.state, 'degraded', 'the third failed read in a row: the index is down (before, it stayed open whatever queries met)')
  t.equal(h.level, 'degraded', 'reads of values are still answered by the backend')
  t.equal(h.sinks.index?.lastError?.code, 'EINJECTED', 'health says why')
  t.equal(h.sinks.index?.breaker, 'closed', 'its applies work: the breaker stays closed')
  t.strictSame(events, ['sink-down index', 'state open->degraded'])
  const failures = (await registry.getSingleMetric('memwal_read_failures_total')?.get())?.values.find((v) => v.labels.sink === 'index' && v.labels.code === 'EINJECTED')?.value
  t.equal(failures, 3, 'memwal_read_failures_total counts them for the index')
  t.equal(await engine.get('a'), 1, 'a point read does not need the index')

  faults.readsUp()
  t.strictSame(await keys(), ['a'], 'the index answers again')
  t.strictSame(events, ['sink-down index', 'state open->degraded', 'sink-recovered index', 'state degraded->open'], 'the read that worked brought it back, the events in order')
  t.equal(engine.health().sinks.index?.consecutiveFailures, 0)
})

t.test('a query of several tags whose posting-size estimate fails (approximateSize rejects): refused typed, counted toward the index\'s health; answered again once the estimate is', async (t) => {
  const faults = new SinkFaults({ targets: ['index'] })
  const { engine, events } = await openManual(t, faults, { healthIntervalMs: INTERVAL_MS })
  await engine.put('a', 1, { tags: ['x', 'y'] })
  await engine.put('b', 2, { tags: ['x'] })
  await settle()
  await engine.flush()
  const both = { tags: { all: ['x', 'y'] } }
  const keys = async (): Promise<string[]> => {
    const out: string[] = []
    for await (const e of engine.query(both)) out.push(e.key)
    return out
  }
  t.strictSame(await keys(), ['a'], 'before the fault')
  // Only the estimate fails: the postings themselves read as ever.
  faults.readsDown('postingBytes')
  const err = (await keys().then(() => undefined, (e: unknown) => e)) as { code?: string; transient?: boolean; cause?: { code?: string } } | undefined
  t.equal(err?.code, 'ENGINE_BACKEND_UNAVAILABLE', 'the query is refused, typed')
  t.equal(err?.transient, true, 'as a transient failure')
  t.equal(err?.cause?.code, 'EINJECTED', 'the estimate\'s error kept as the cause')
  await t.rejects(engine.count(both), { code: 'ENGINE_BACKEND_UNAVAILABLE' }, 'a count of several tags likewise')
  await settle()
  t.equal(engine.health().sinks.index?.consecutiveFailures, 4, 'each estimate read (one per tag, two a query) counted toward the index\'s health')
  t.equal(engine.health().state, 'degraded', 'past breakerThreshold (3): the index is down')
  t.equal(engine.health().sinks.index?.lastError?.code, 'EINJECTED', 'health says why')
  t.strictSame(events, ['sink-down index', 'state open->degraded'])
  t.equal(await engine.get('a'), 1, 'a point read does not need the index')

  faults.readsUp()
  t.strictSame(await keys(), ['a'], 'the query is answered once the estimate is')
  t.equal(await engine.count(both), 1)
  t.strictSame(events, ['sink-down index', 'state open->degraded', 'sink-recovered index', 'state degraded->open'], 'the read that worked brought the index back')
  t.equal(engine.health().sinks.index?.consecutiveFailures, 0)
})
