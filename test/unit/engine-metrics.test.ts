/**
 * Every metric of issue 14 item 6 moves (on a registry of the test's own, a
 * manual clock, the simulated filesystem): apply failures by sink and class,
 * retries, breaker transitions, dead letters by sink, read hits by tier and
 * read failures, recovery duration and records replayed at open, declared
 * gaps (until acknowledged), disk free, write rate and time to full; and the disk: `disk-low`
 * fires before ENOSPC (by free space, or by the time to full at the recent
 * write rate), and below diskReadOnlyBytes writes are refused with
 * ENGINE_READ_ONLY until space comes back.
 */
import t from 'tap'
import { Registry } from 'prom-client'
import { MemWAL, type Clock, type DiskLowEvent, type MemwalOptions } from '../../engine/index.js'
import type { ManualClock } from '../../engine/testing.js'
import { SinkFaults } from '../support/faulty-sink.js'
import { manualOptions, manualWorld, type ManualWorld } from '../support/manual-engine.js'
import { settle, waitFor } from '../support/wait-for.js'

const INTERVAL_MS = 10_000
const MiB = 1024 * 1024

interface World extends ManualWorld {
  /** Free bytes the simulated disk reports. */
  disk: { free: number }
}

function world(): World {
  const w = manualWorld(8)
  const disk = { free: 10_000 * MiB }
  Object.assign(w.sim, { diskSpace: async () => ({ freeBytes: disk.free, totalBytes: 20_000 * MiB }) })
  return { ...w, disk }
}

/** The manual clock, moving 1 ms each time it is read: an open then takes measurable time. */
function ticking(clock: ManualClock): Clock {
  let ticks = 0
  return { nowMs: () => clock.nowMs() + ++ticks, setTimer: (ms, fn) => clock.setTimer(ms, fn) }
}

async function openIn(w: World, registry: Registry, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open(manualOptions(w, { metrics: registry, healthIntervalMs: INTERVAL_MS, ...extra }))
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const m = registry.getSingleMetric(name)
  if (!m) throw new Error(`no metric ${name}`)
  const { values } = await m.get()
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value
}

/**
 * Lets the calls in flight finish, then moves the clock by `ms` (a jump with
 * calls in flight would fire their timeouts), then lets what it started settle.
 */
async function tick(clock: ManualClock, ms: number): Promise<void> {
  await settle()
  clock.advance(ms)
  await settle()
}

/** Advances the manual clock in small steps, letting what each timer started settle, until `cond` holds. */
async function until(clock: ManualClock, cond: () => boolean, stepMs = 100, stepsMax = 500): Promise<void> {
  for (let i = 0; i < stepsMax && !cond(); i++) {
    await settle()
    clock.advance(stepMs)
  }
  await settle()
}

t.test('apply failures, retries, breaker transitions, dead letters', async (t) => {
  const w = world()
  const registry = new Registry()
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await openIn(w, registry, { wrapSink: (s) => faults.wrap(s) })
  t.teardown(() => engine.close())
  faults.down()
  await engine.put('a', 1)
  await until(w.clock, () => engine.health().sinks.backend?.breaker === 'open')
  t.equal(await metric(registry, 'memwal_apply_failures_total', { sink: 'backend', class: 'transient' }), 3, 'three transient failures opened the breaker')
  t.ok((await metric(registry, 'memwal_apply_retries_total', { sink: 'backend' }) ?? 0) >= 2, 'each failed attempt was retried')
  t.equal(await metric(registry, 'memwal_breaker_transitions_total', { sink: 'backend', to: 'open' }), 1, 'closed -> open counted')
  await until(w.clock, () => false, 100, 8) // past breakerHalfOpenMs: the next retry is refused or probes
  t.ok((await metric(registry, 'memwal_apply_failures_total', { sink: 'backend', class: 'breaker-open' }) ?? 0) + (await metric(registry, 'memwal_breaker_transitions_total', { sink: 'backend', to: 'half-open' }) ?? 0) > 0, 'refusals by the open breaker, or its probe, counted')
  faults.up()
  await until(w.clock, () => engine.health().sinks.backend?.breaker === 'closed' && engine.health().backlog.records === 0)
  t.ok((await metric(registry, 'memwal_breaker_transitions_total', { sink: 'backend', to: 'half-open' }) ?? 0) >= 1, '-> half-open counted')
  t.equal(await metric(registry, 'memwal_breaker_transitions_total', { sink: 'backend', to: 'closed' }), 1, '-> closed counted')

  faults.rejectKeys('poison')
  await engine.put('poison', 'x')
  await until(w.clock, () => engine.health().sinks.backend?.deadLetters === 1)
  t.equal(await metric(registry, 'memwal_dead_letters_total', { sink: 'backend' }), 1, 'the dead letter counted for its sink')
  t.equal(await metric(registry, 'memwal_apply_failures_total', { sink: 'backend', class: 'permanent' }), 1, 'the permanent failure counted by class')
})

t.test('read hits by tier, read failures', async (t) => {
  const w = world()
  const registry = new Registry()
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await openIn(w, registry, { wrapSink: (s) => faults.wrap(s), cacheBytes: 1 })
  t.teardown(() => engine.close())
  faults.down()
  await engine.put('pending', 1)
  t.equal(await engine.get('pending'), 1)
  t.equal(await metric(registry, 'memwal_read_hits_total', { tier: 'overlay' }), 1, 'a pending key: the overlay')
  await t.rejects(engine.get('cold'), { code: 'ENGINE_BACKEND_UNAVAILABLE' })
  t.equal(await metric(registry, 'memwal_read_failures_total', { sink: 'backend', code: 'EINJECTED' }), 1, 'a read the backend could not answer, by sink and code')
  faults.up()
  await until(w.clock, () => engine.health().backlog.records === 0)
  t.equal(await engine.get('pending'), 1)
  t.equal(await engine.get('never'), undefined)
  t.equal(await metric(registry, 'memwal_read_hits_total', { tier: 'backend' }), 2, 'applied and not cached (cacheBytes 1), and a missing key: the backend answered')

  const w2 = world()
  const r2 = new Registry()
  const cached = await openIn(w2, r2)
  t.teardown(() => cached.close())
  await cached.put('c', 'v')
  await until(w2.clock, () => cached.health().backlog.records === 0)
  t.equal(await cached.get('c'), 'v')
  t.equal(await metric(r2, 'memwal_read_hits_total', { tier: 'cache' }), 1, 'applied and cached: the cache')
})

t.test('recovery duration, records replayed and declared gaps at open', async (t) => {
  const w = world()
  const faults = new SinkFaults({ targets: ['backend', 'index'] })
  const first = await openIn(w, new Registry(), { wrapSink: (s) => faults.wrap(s) })
  faults.down()
  for (let i = 0; i < 40; i++) await first.put(`k${i}`, 'v'.repeat(200))
  await first.close()
  const registry = new Registry()
  const again = await openIn(w, registry, { clock: ticking(w.clock) })
  t.ok((await metric(registry, 'memwal_recovery_seconds') ?? 0) > 0, 'the open took time, and says how much')
  t.equal(await metric(registry, 'memwal_recovery_records_replayed'), 40, 'the 40 records no sink had applied were read back')
  t.equal(await metric(registry, 'memwal_declared_gaps'), 0, 'no gap declared')
  await again.close()

  // A flipped byte inside a middle frame, opened with skip-corrupt: the skipped record is a declared gap.
  const seg = (await w.sim.readdir('/data/wal')).find((n) => n.endsWith('.wal') || /^\d+/.test(n))
  t.ok(seg, 'a segment')
  const bytes = w.sim.peek(`/data/wal/${seg}`)
  if (!bytes) throw new Error('no segment bytes')
  const damaged = Buffer.from(bytes)
  damaged[2000] = (damaged[2000] as number) ^ 0xff
  w.sim.poke(`/data/wal/${seg}`, damaged)
  const r3 = new Registry()
  const skipped = await openIn(w, r3, { corruptionPolicy: 'skip-corrupt' })
  t.teardown(() => skipped.close())
  t.ok(skipped.health().gaps.length >= 1, 'recovery skipped the damaged frame and declared the gap')
  t.equal(await metric(r3, 'memwal_declared_gaps'), skipped.health().gaps.length, 'the gauge counts the declared gaps')
  await skipped.acknowledgeGaps()
  t.equal(await metric(r3, 'memwal_declared_gaps'), 0, 'and none once an operator acknowledged them')
})

t.test('disk: free space, write rate and time to full; disk-low before ENOSPC; read-only below diskReadOnlyBytes', async (t) => {
  const w = world()
  const registry = new Registry()
  const engine = await openIn(w, registry, { diskLowBytes: 100 * MiB, diskLowSeconds: 600, diskReadOnlyBytes: 10 * MiB })
  t.teardown(() => engine.close())
  const low: DiskLowEvent[] = []
  const states: string[] = []
  engine.on('disk-low', (e) => low.push(e))
  engine.on('state', (e) => states.push(`${e.from}->${e.to}`))
  await settle()
  t.equal(engine.health().disk?.freeBytes, 10_000 * MiB, 'sampled at open')
  t.equal(await metric(registry, 'memwal_disk_free_bytes'), 10_000 * MiB, 'the gauge')

  for (let i = 0; i < 100; i++) await engine.put(`k${i}`, 'v'.repeat(1000))
  await tick(w.clock, INTERVAL_MS)
  const rate = engine.health().disk?.writeBytesPerSecond ?? 0
  t.ok(rate > 10_000 && rate < 11_000, `about 100 kB over 10 s (${rate} bytes/s)`)
  t.ok(Math.abs((await metric(registry, 'memwal_disk_seconds_to_full') ?? 0) - (10_000 * MiB) / rate) < 1, 'time to full: free space over the rate')
  t.equal(low.length, 0, 'plenty of space: no disk-low')

  // Free space falls below diskLowBytes: the event, while writes still go (no ENOSPC yet).
  w.disk.free = 50 * MiB
  await tick(w.clock, INTERVAL_MS)
  t.equal(low.length, 1, 'disk-low fired')
  t.equal(low[0]?.freeBytes, 50 * MiB)
  t.equal(low[0]?.thresholdBytes, 100 * MiB)
  await engine.put('still', 'writable')
  await tick(w.clock, INTERVAL_MS)
  t.equal(low.length, 1, 'once per crossing')

  // Below diskReadOnlyBytes: read-only, writes refused typed, reads served; then space comes back.
  w.disk.free = 5 * MiB
  await tick(w.clock, INTERVAL_MS)
  t.equal(engine.health().state, 'read-only')
  t.match(engine.health().reason, /disk nearly full/)
  await t.rejects(engine.put('x', 1), { code: 'ENGINE_READ_ONLY' }, 'writes refused before the log meets ENOSPC')
  t.equal(await engine.get('still'), 'writable', 'reads served')
  w.disk.free = 10_000 * MiB
  await tick(w.clock, INTERVAL_MS)
  await waitFor(() => engine.health().state === 'open', 'open again')
  await engine.put('x', 1)
  t.strictSame(states, ['open->read-only', 'read-only->open'])

})

t.test('opened on a nearly full disk: read-only before open resolves, writable once space comes back', async (t) => {
  const w = world()
  w.disk.free = 5 * MiB
  // The disk answers a turn of the event loop later, as statfs does: open must await its look, not race it.
  Object.assign(w.sim, { diskSpace: () => new Promise((r) => setImmediate(() => r({ freeBytes: w.disk.free, totalBytes: 20_000 * MiB }))) })
  const engine = await openIn(w, new Registry(), { diskLowBytes: 100 * MiB, diskReadOnlyBytes: 10 * MiB })
  t.teardown(() => engine.close())
  const h = engine.health()
  t.equal(h.state, 'read-only', 'read-only as open resolves')
  t.match(h.reason, /disk nearly full/)
  t.match(h.disk, { freeBytes: 5 * MiB, low: true, readOnly: true }, 'health().disk says why')
  await t.rejects(engine.put('x', 1), { code: 'ENGINE_READ_ONLY' }, 'the first write is refused, before the log meets ENOSPC')
  w.disk.free = 10_000 * MiB
  await tick(w.clock, INTERVAL_MS)
  await waitFor(() => engine.health().state === 'open', 'open once space came back')
  await engine.put('x', 1)
})

t.test('disk-low by the time to full alone, at a high write rate', async (t) => {
  const w = world()
  w.disk.free = 10 * MiB
  const engine = await openIn(w, new Registry(), { diskLowBytes: MiB, diskLowSeconds: 600, diskReadOnlyBytes: 0 })
  t.teardown(() => engine.close())
  const low: DiskLowEvent[] = []
  engine.on('disk-low', (e) => low.push(e))
  await tick(w.clock, INTERVAL_MS)
  t.equal(low.length, 0, '10 MiB free, nothing written: no disk-low')
  for (let i = 0; i < 40; i++) await engine.put(`big${i}`, 'w'.repeat(60_000))
  await tick(w.clock, INTERVAL_MS)
  const d = engine.health().disk
  t.ok((d?.secondsToFull ?? Infinity) < 600, `2.4 MB in 10 s: full in ${d?.secondsToFull} s`)
  t.equal(low.length, 1, 'disk-low, although free space is above diskLowBytes')
  t.equal(low[0]?.secondsToFull, d?.secondsToFull, 'and the event says when')
})

t.test('a scrape reads health() once; a gauge drops a value health no longer has', async (t) => {
  const w = world()
  const registry = new Registry()
  const engine = await openIn(w, registry)
  t.teardown(() => engine.close())
  let calls = 0
  const health = engine.health.bind(engine)
  engine.health = () => {
    calls++
    return health()
  }
  await registry.metrics()
  t.equal(calls, 1, 'one health() for the whole scrape, shared by every gauge')

  for (let i = 0; i < 50; i++) await engine.put(`k${i}`, 'v'.repeat(1000))
  await tick(w.clock, INTERVAL_MS)
  t.ok((await metric(registry, 'memwal_disk_seconds_to_full') ?? 0) > 0, 'written in the last checks: a time to full')
  for (let i = 0; i < 7; i++) await tick(w.clock, INTERVAL_MS)
  t.equal(engine.health().disk?.secondsToFull, undefined, 'nothing written over the rate window: health has no time to full')
  t.equal(await metric(registry, 'memwal_disk_seconds_to_full'), undefined, 'nor has the gauge (it kept the last value)')
  t.notMatch(await registry.metrics(), /^memwal_disk_seconds_to_full /m, 'and the scrape shows none')
  t.match(await registry.metrics(), /^memwal_disk_free_bytes \d+/m, 'a value health has is still there')
})

t.test('diskReadOnlyBytes above diskLowBytes is refused at open', async (t) => {
  const w = world()
  await t.rejects(openIn(w, new Registry(), { diskLowBytes: MiB, diskReadOnlyBytes: 2 * MiB }), { code: 'INVALID_OPTIONS', message: /diskReadOnlyBytes/ })
})
