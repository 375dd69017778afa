/**
 * The engine's state and its degradation level, announced by typed `state`
 * events on every transition (issue 14 items 5 and 7):
 * - setReadOnly(true, reason) refuses writes with ENGINE_READ_ONLY and serves
 *   reads; setReadOnly(false) lifts it; each change is one `state` event;
 * - a backend going down, the backlog filling and both clearing give
 *   open -> degraded (log-and-cache-reads) -> read-only -> open, in order;
 * - within degraded, a change of level (the backend stops answering reads
 *   while the index is down) is a state event degraded -> degraded;
 * - a failing log gives open -> failed, and close failed -> closed;
 * - `on` is checked at compile time against MemwalEvents.
 */
import t from 'tap'
import { MemoryLevel } from 'memory-level'
import { MemWAL, type LevelDatabase, type MemwalOptions, type StateChangeEvent } from '../../engine/index.js'
import { SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { fastResilience, SinkFaults, waitFor } from '../support/faulty-sink.js'

function openSim(extra: Partial<MemwalOptions> = {}): { sim: SimulatedFileSystem; open: () => Promise<MemWAL> } {
  const sim = new SimulatedFileSystem(new SeededRandom(5))
  const db = new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })
  return { sim, open: () => MemWAL.open({ dir: '/data', fs: sim, level: db as unknown as LevelDatabase, segmentBytes: 64 * 1024, closeGraceMs: 1000, ...extra }) }
}

function record(engine: MemWAL): StateChangeEvent[] {
  const seen: StateChangeEvent[] = []
  engine.on('state', (e) => seen.push(e))
  return seen
}

const brief = (e: StateChangeEvent): string => `${e.from}->${e.to} (${e.level})`

t.test('setReadOnly: writes refused with ENGINE_READ_ONLY, reads served, one state event each way', async (t) => {
  const engine = await openSim().open()
  t.teardown(() => engine.close())
  await engine.put('a', 1)
  const states = record(engine)
  engine.setReadOnly(true, 'backup in progress')
  engine.setReadOnly(true, 'backup in progress') // the same again: no second event
  t.strictSame(states.map(brief), ['open->read-only (read-only)'])
  t.match(states[0]?.reason, /backup in progress/, 'the event says why')
  const h = engine.health()
  t.equal(h.state, 'read-only')
  t.equal(h.level, 'read-only')
  t.match(h.reason, /by request: backup in progress/)
  const err = await engine.put('b', 2).then(() => undefined, (e: unknown) => e as { code: string; transient: boolean })
  t.equal(err?.code, 'ENGINE_READ_ONLY', 'put refused')
  t.equal(err?.transient, true, 'and the refusal is transient')
  await t.rejects(engine.delete('a'), { code: 'ENGINE_READ_ONLY' }, 'delete refused')
  await t.rejects(engine.batch([{ type: 'put', key: 'c', value: 3 }]), { code: 'ENGINE_READ_ONLY' }, 'batch refused')
  t.equal(await engine.get('a'), 1, 'reads are served')
  t.equal(engine.health().wal.lastLsn, 1, 'nothing refused was logged')
  engine.setReadOnly(false)
  t.strictSame(states.map(brief), ['open->read-only (read-only)', 'read-only->open (full)'])
  t.match(states[1]?.reason, /lifted/)
  await engine.put('b', 2)
  t.equal(await engine.get('b'), 2, 'writes accepted again')
  t.throws(() => engine.setReadOnly('yes' as unknown as boolean), { code: 'INVALID_OPTIONS' }, 'a value that is not a boolean is refused')
  t.throws(() => engine.setReadOnly(true, 5 as unknown as string), { code: 'INVALID_OPTIONS' }, 'a reason that is not a string is refused')
  t.equal(engine.health().state, 'open', 'and a refused call changed nothing')
})

t.test('backend down, backlog full, both cleared: open -> degraded -> read-only -> open, in order', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await openSim({ resilience: fastResilience, maxBacklogBytes: 1000, wrapSink: (s) => faults.wrap(s) }).open()
  t.teardown(() => engine.close())
  const states = record(engine)
  faults.down()
  await engine.put('k0', 'x'.repeat(100))
  await waitFor(() => states.length === 1, 'degraded')
  t.strictSame(states.map(brief), ['open->degraded (log-and-cache-reads)'], 'the backend cannot answer: reads from the log and the cache only')
  t.match(states[0]?.reason, /sink down: backend/)
  t.equal(engine.health().level, 'log-and-cache-reads')
  let refused = 0
  for (let i = 1; i < 20 && refused === 0; i++) await engine.put(`k${i}`, 'x'.repeat(100)).catch((e: { code: string }) => (refused = e.code === 'ENGINE_BACKLOG_FULL' ? 1 : -1))
  t.equal(refused, 1, 'the backlog filled up')
  t.strictSame(states.map(brief), ['open->degraded (log-and-cache-reads)', 'degraded->read-only (read-only)'])
  t.match(states[1]?.reason, /backlog/)
  faults.up()
  await waitFor(() => states.length === 3, 'open again', 5000)
  t.strictSame(states.map(brief), ['open->degraded (log-and-cache-reads)', 'degraded->read-only (read-only)', 'read-only->open (full)'])
  t.equal(engine.health().state, 'open')
})

t.test('degraded -> degraded: the level narrows to log-and-cache-reads, and widens again, each with a state event', async (t) => {
  const indexFaults = new SinkFaults({ targets: ['index'] })
  const backendFaults = new SinkFaults({ targets: ['backend'] })
  const engine = await openSim({ resilience: fastResilience, wrapSink: (s) => backendFaults.wrap(indexFaults.wrap(s)) }).open()
  t.teardown(() => engine.close())
  const states = record(engine)
  indexFaults.down()
  await engine.put('a', 1)
  await waitFor(() => states.length === 1, 'degraded by the index')
  t.strictSame(states.map(brief), ['open->degraded (degraded)'], 'the index is down, the backend answers every read')
  backendFaults.readsDown()
  for (const k of ['cold-1', 'cold-2', 'cold-3']) await t.rejects(engine.get(k), { code: 'ENGINE_BACKEND_UNAVAILABLE' })
  t.strictSame(states.map(brief), ['open->degraded (degraded)', 'degraded->degraded (log-and-cache-reads)'], 'the level narrowed: an event, though the state did not change')
  t.match(states[1]?.reason, /sink down: backend, index/, 'and why')
  backendFaults.readsUp()
  t.equal(await engine.get('cold-4'), undefined, 'the backend answers again')
  t.strictSame(states.slice(2).map(brief), ['degraded->degraded (degraded)'], 'widened again: an event')
  t.match(states[2]?.reason, /^sink down: index$/)
})

t.test('a failing log: open -> failed; close: failed -> closed; a healthy close: open -> closed', async (t) => {
  const { sim, open } = openSim()
  const engine = await open()
  const states = record(engine)
  await engine.put('a', 1)
  sim.injectFault({ op: 'write', code: 'EIO', pathIncludes: '/wal/', times: Infinity })
  sim.injectFault({ op: 'datasync', code: 'EIO', pathIncludes: '/wal/', times: Infinity })
  await t.rejects(engine.put('b', 2), 'the write fails')
  await waitFor(() => states.length === 1, 'failed')
  t.strictSame(states.map(brief), ['open->failed (failed)'])
  await t.rejects(engine.put('c', 3), { code: 'ENGINE_FAILED' })
  await engine.close()
  t.strictSame(states.map(brief), ['open->failed (failed)', 'failed->closed (closed)'])

  const healthy = await openSim().open()
  const s2 = record(healthy)
  await healthy.close()
  await healthy.close()
  t.strictSame(s2, [{ from: 'open', to: 'closed', level: 'closed', reason: 'closed' }], 'one event for a close')
})

t.test('events are typed: unknown names and wrong payloads do not compile', async (t) => {
  const engine = await openSim().open()
  t.teardown(() => engine.close())
  // @ts-expect-error no such event
  engine.on('sink-gone', () => undefined)
  // @ts-expect-error a state event has no `lsn`
  engine.on('state', (e) => e.lsn)
  engine.on('dead-letter', (e) => e.lsn + 1) // a dead letter does
  engine.once('disk-low', (e) => e.freeBytes)
  t.pass('type-checked by npm run typecheck')
})
