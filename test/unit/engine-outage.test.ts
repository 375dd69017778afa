/**
 * A backend outage, end to end on a real data directory (LevelDB on disk):
 * - writes are still acknowledged while the backend is down (the log is the truth);
 * - reads see their own writes during the outage (G4): pending puts, deletes
 *   and batch puts, and a key that is neither pending nor cached is refused
 *   with ENGINE_BACKEND_UNAVAILABLE, never answered "not found";
 * - query merges the pending overlay: pending puts show, pending deletes hide,
 *   even while the index itself is down too;
 * - health() and the sink-down / sink-recovered events say what is going on;
 * - once the backend is back the backlog drains, the backend holds exactly
 *   what an in-test model holds, and every LSN reached it exactly once (G3).
 */
import t, { type Test } from 'tap'
import { MemWAL, type EngineHealth, type MemwalOptions, type QueryOptions } from '../../engine/index.js'
import { fastResilience, SinkFaults, waitFor } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

type Model = Map<string, unknown>


async function open(dir: string, faults: SinkFaults, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, wrapSink: (s) => faults.wrap(s), ...extra })
}

async function collect(engine: MemWAL, q: QueryOptions): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for await (const r of engine.query(q)) out[`${r.namespace}/${r.key}`] = r.value
  return out
}

function backendHealth(h: EngineHealth): NonNullable<EngineHealth['sinks'][string]> {
  const b = h.sinks.backend
  if (!b) throw new Error('health() has no backend sink')
  return b
}

/** Every LSN in (from, to] stored by `sink` exactly once, and nothing else. */
function assertExactlyOnce(t: Test, faults: SinkFaults, sink: string, from: number, to: number): void {
  const applied = faults.applied(sink)
  const missing: number[] = []
  for (let lsn = from + 1; lsn <= to; lsn++) if (applied.get(lsn) !== 1) missing.push(lsn)
  t.strictSame(missing, [], `${sink}: every LSN in (${from}, ${to}] applied exactly once`)
  t.strictSame(faults.doubleApplied(sink), [], `${sink}: no LSN applied twice`)
  t.strictSame([...applied.keys()].filter((l) => l <= from || l > to), [], `${sink}: no LSN outside the range applied`)
}

t.test('a backend outage: writes acknowledged, reads see them, nothing lost or applied twice', async (t) => {
  const dir = tmpDir(t)
  const model: Model = new Map()

  // Session 1: a healthy baseline on disk.
  {
    const engine = await open(dir, new SinkFaults())
    for (let i = 0; i < 20; i++) {
      await engine.put(`base-${i}`, { i, v: 'base' })
      model.set(`base-${i}`, { i, v: 'base' })
    }
    await engine.flush({ timeoutMs: 10_000 })
    await engine.close()
  }

  // Session 2: cache cold after the reopen; the backend goes down.
  const faults = new SinkFaults({ targets: ['backend'] })
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  const events: { name: string; sink: string }[] = []
  for (const name of ['sink-down', 'sink-recovered'] as const) engine.on(name, (e: { sink: string }) => events.push({ name, sink: e.sink }))
  const startLsn = engine.health().wal.lastLsn
  t.equal(startLsn, 20)
  t.strictSame(await engine.get('base-0'), { i: 0, v: 'base' }, 'a cold key reads from the healthy backend (and fills the cache)')

  faults.down()
  const acks: number[] = []
  for (let i = 0; i < 30; i++) {
    const { lsn } = await engine.put(`new-${i}`, { i, v: 'during outage' })
    acks.push(lsn)
    model.set(`new-${i}`, { i, v: 'during outage' })
  }
  acks.push((await engine.put('base-3', 'overwritten')).lsn)
  model.set('base-3', 'overwritten')
  acks.push((await engine.delete('base-4')).lsn)
  model.delete('base-4')
  acks.push((await engine.delete('new-5')).lsn)
  model.delete('new-5')
  acks.push((await engine.batch([
    { type: 'put', key: 'batch-a', value: [1, 2, 3] },
    { type: 'put', key: 'batch-b', value: { nested: { deep: true } } },
    { type: 'del', key: 'base-6' },
    { type: 'put', key: 'base-7', value: null },
  ])).lsn)
  model.set('batch-a', [1, 2, 3])
  model.set('batch-b', { nested: { deep: true } })
  model.delete('base-6')
  model.set('base-7', null)
  t.strictSame(acks, Array.from({ length: acks.length }, (_, i) => startLsn + 1 + i), 'every write acknowledged with the next LSN while the backend is down')

  // Read-your-writes (G4) during the outage.
  t.strictSame(await engine.get('new-0'), { i: 0, v: 'during outage' })
  t.strictSame(await engine.get('new-29'), { i: 29, v: 'during outage' })
  t.equal(await engine.get('base-3'), 'overwritten', 'a pending overwrite wins over the backend')
  t.equal(await engine.get('base-4'), undefined, 'a pending delete reads as absent')
  t.equal(await engine.get('new-5'), undefined, 'a put then delete, both pending, reads as absent')
  t.strictSame(await engine.get('batch-a'), [1, 2, 3], 'batch puts are visible')
  t.strictSame(await engine.get('batch-b'), { nested: { deep: true } })
  t.equal(await engine.get('base-6'), undefined, 'a batch delete is visible')
  t.equal(await engine.get('base-7'), null, 'a stored null is a value, not absence')
  const entry = await engine.getEntry('new-1')
  t.equal(entry?.version, acks[1], 'getEntry names the LSN that wrote the pending value')
  t.strictSame(await engine.get('base-0'), { i: 0, v: 'base' }, 'a cached key answers from the cache')
  await t.rejects(engine.get('base-1'), { code: 'ENGINE_BACKEND_UNAVAILABLE' }, 'a cold key is refused while the backend is down')
  await t.rejects(engine.get('never-written'), { code: 'ENGINE_BACKEND_UNAVAILABLE' }, 'an unknown key is refused, not answered "not found"')

  // Health during the outage.
  // Failed reads (the cold keys above, a pending entry's createdAt) may mark the backend down before the failed applies open its breaker: wait for both.
  await waitFor(() => engine.health().state === 'degraded' && events.some((e) => e.name === 'sink-down') && backendHealth(engine.health()).breaker !== 'closed', 'degraded, sink-down and the breaker open')
  const during = engine.health()
  const b = backendHealth(during)
  t.equal(during.state, 'degraded')
  t.match(during.reason, /backend/, 'the reason names the backend')
  t.not(b.breaker, 'closed', 'the backend breaker is not closed')
  t.equal(b.lag.records, acks.length, 'the backend lags by every record written during the outage')
  t.ok(b.lastError, 'lastError is set')
  t.equal(b.lastError?.code === 'EINJECTED' || b.lastError?.code === 'SINK_BREAKER_OPEN', true, `lastError names the failure (${b.lastError?.code})`)
  await waitFor(() => engine.health().sinks.index?.lag.records === 0, 'the healthy index catches up')
  t.equal(during.backlog.records, acks.length, 'the backlog holds what the backend has not applied')
  t.ok(during.backlog.bytes > 0)
  t.strictSame(events.filter((e) => e.name === 'sink-down').map((e) => e.sink), ['backend'], 'sink-down fired once, for the backend')
  await engine.put('new-30', 'late')
  model.set('new-30', 'late')
  t.equal(backendHealth(engine.health()).lag.records, acks.length + 1, 'the lag grows with every write')
  t.equal(faults.applied('backend').size, 0, 'the down backend stored nothing')

  // Recovery.
  faults.up()
  await engine.flush({ timeoutMs: 10_000 })
  const after = engine.health()
  t.equal(after.state, 'open', 'open again once the backlog drained')
  t.equal(backendHealth(after).breaker, 'closed')
  t.equal(backendHealth(after).lag.records, 0)
  t.equal(after.backlog.records, 0)
  t.equal(after.backlog.bytes, 0)
  t.strictSame(events.map((e) => `${e.name}:${e.sink}`), ['sink-down:backend', 'sink-recovered:backend'])
  const lastLsn = after.wal.lastLsn
  assertExactlyOnce(t, faults, 'backend', startLsn, lastLsn)
  assertExactlyOnce(t, faults, 'index', startLsn, lastLsn)
  t.strictSame(await faults.backendContent(), model, 'the backend holds exactly the model')
  await engine.close()

  // Session 3: a fresh engine (cold cache) reads the model back from the backend.
  const check = new SinkFaults()
  const again = await open(dir, check)
  t.teardown(() => again.close())
  t.strictSame(await check.backendContent(), model, 'after reopen the backend still holds the model')
  for (const [k, v] of model) t.strictSame(await again.get(k), v, `get ${k}`)
  for (const k of ['base-4', 'base-6', 'new-5']) t.equal(await again.get(k), undefined, `${k} stays deleted`)
  t.equal(again.health().backlog.records, 0, 'nothing left to replay')
  t.equal(check.applied('backend').size, 0, 'nothing was applied again after reopen')
  await again.close()
})

t.test('query during an outage of backend and index shows pending puts and hides pending deletes', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend', 'index'] })
  const engine = await open(dir, faults)
  t.teardown(() => engine.close())
  // The model is keyed by identity (namespace NUL key), which is also the order results come in.
  const model = new Map<string, { key: string; value: unknown; namespace: string; tags?: string[] }>()
  const put = async (key: string, value: unknown, namespace = 'default', tags?: string[]): Promise<void> => {
    await engine.put(key, value, { namespace, ...(tags ? { tags } : {}) })
    model.set(`${namespace}\0${key}`, { key, value, namespace, ...(tags ? { tags } : {}) })
  }
  const del = async (key: string, namespace = 'default'): Promise<void> => {
    await engine.delete(key, { namespace })
    model.delete(`${namespace}\0${key}`)
  }
  const expected = (q: QueryOptions): Record<string, unknown> => {
    const out: Record<string, unknown> = {}
    for (const id of [...model.keys()].sort()) {
      const e = model.get(id)
      if (!e) continue
      if (q.prefix !== undefined && !e.key.startsWith(q.prefix)) continue
      if (q.namespace !== undefined && e.namespace !== q.namespace) continue
      if (q.tag !== undefined && !(e.tags ?? []).includes(q.tag)) continue
      out[`${e.namespace}/${e.key}`] = e.value
    }
    return out
  }
  for (let i = 0; i < 10; i++) await put(`doc:${i}`, { i }, i % 2 === 0 ? 'even' : 'odd', i < 5 ? ['low'] : ['high'])
  await put('other:1', 'o1', 'even', ['low'])
  await engine.flush({ timeoutMs: 10_000 })
  const queries: QueryOptions[] = [{ namespace: 'even' }, { namespace: 'odd' }, { tag: 'low' }, { tag: 'high' }, { prefix: 'doc:' }, { namespace: 'even', prefix: 'doc:' }, {}]
  for (const q of queries) t.strictSame(await collect(engine, q), expected(q), `healthy: query ${JSON.stringify(q)}`)

  faults.down()
  await del('doc:0', 'even') // even, low
  await del('doc:7', 'odd') // odd, high
  await del('doc:2', 'even')
  await put('doc:2', { i: 2, moved: true }, 'odd', ['high']) // moved: deleted from even/low, put in odd/high
  await put('doc:10', { i: 10 }, 'even', ['low', 'high'])
  await put('doc:05', 'between', 'odd')
  await engine.batch([
    { type: 'put', key: 'doc:11', value: 11, namespace: 'odd', tags: ['low'] },
    { type: 'del', key: 'doc:9', namespace: 'odd' },
  ])
  model.set('odd\0doc:11', { key: 'doc:11', value: 11, namespace: 'odd', tags: ['low'] })
  model.delete('odd\0doc:9')
  await del('never-there')
  await waitFor(() => engine.health().state === 'degraded', 'degraded')
  t.ok((engine.health().sinks.index?.lag.records ?? 0) > 0, 'the index is behind too')

  const during: Record<string, Record<string, unknown>> = {}
  for (const q of queries) {
    during[JSON.stringify(q)] = await collect(engine, q)
    t.strictSame(during[JSON.stringify(q)], expected(q), `during the outage: query ${JSON.stringify(q)}`)
  }
  t.notOk('even/doc:0' in (during['{"namespace":"even"}'] ?? {}), 'a pending delete is hidden although the index still lists the key')
  t.ok('odd/doc:2' in (during['{"namespace":"odd"}'] ?? {}), 'a pending move shows in its new namespace')
  t.notOk('even/doc:2' in (during['{"namespace":"even"}'] ?? {}), 'and not in its old one')
  t.strictSame(Object.keys(during['{"prefix":"doc:"}'] ?? {}), Object.keys(expected({ prefix: 'doc:' })), 'results come in identity order')
  const limited: string[] = []
  for await (const r of engine.query({ prefix: 'doc:', limit: 3 })) limited.push(`${r.namespace}/${r.key}`)
  t.strictSame(limited, Object.keys(expected({ prefix: 'doc:' })).slice(0, 3), 'limit counts pending and indexed results together')

  faults.up()
  await engine.flush({ timeoutMs: 10_000 })
  for (const q of queries) t.strictSame(await collect(engine, q), expected(q), `after recovery: query ${JSON.stringify(q)}`)
  t.strictSame(faults.doubleApplied('backend'), [])
  t.strictSame(faults.doubleApplied('index'), [])
  await engine.close()
})

t.test('a flaky backend (seeded transient failures) converges to the model, each LSN applied once', async (t) => {
  const dir = tmpDir(t)
  const faults = new SinkFaults({ targets: ['backend', 'index'], transientRate: 0.3, seed: 42 })
  const engine = await open(dir, faults, { applyBatchRecordsMax: 16 })
  t.teardown(() => engine.close())
  const model: Model = new Map()
  let seed = 7
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0
    return seed % n
  }
  for (let round = 0; round < 20; round++) {
    const writes: Promise<unknown>[] = []
    for (let j = 0; j < 30; j++) {
      const key = `k${rnd(60)}`
      const op = rnd(10)
      if (op < 7) {
        const value = { round, j }
        model.set(key, value)
        writes.push(engine.put(key, value))
      } else {
        model.delete(key)
        writes.push(engine.delete(key))
      }
    }
    await Promise.all(writes)
    // Let the appliers take small batches now and then, so that many calls meet the injected failures.
    if (round % 2 === 0) await new Promise((r) => setTimeout(r, 20))
    // Every live key is pending or cached (the cache sink is healthy): reads never need the flaky backend.
    if (round % 3 === 0) for (const [k, v] of model) t.strictSame(await engine.get(k), v, `round ${round}: get ${k}`)
  }
  await engine.flush({ timeoutMs: 20_000 })
  t.ok(faults.failed('backend') > 0, `the backend failed ${faults.failed('backend')} of ${faults.calls('backend')} calls`)
  const last = engine.health().wal.lastLsn
  assertExactlyOnce(t, faults, 'backend', 0, last)
  assertExactlyOnce(t, faults, 'index', 0, last)
  t.strictSame(await faults.backendContent(), model, 'the backend holds exactly the model')
  await engine.close()
})
