/**
 * MemWAL's public API on a real data directory: the basic semantics of
 * put/get/getEntry/delete/batch/query/flush/health/close, typed errors (by
 * code) for every invalid input with nothing written, batch atomicity,
 * ENGINE_CLOSED after close, LOCK_HELD for a second open (G7), prom-client
 * metrics on the registry the user passes, and that awaiting flush or a
 * backlog wait keeps the process alive until it settles.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Registry } from 'prom-client'
import t from 'tap'
import { MemWAL, QUERY_RESULTS_MAX, type MemwalOptions } from '../../engine/index.js'
import { fastResilience, SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'
import { childEnv } from '../support/child-env.js'


const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

async function open(dir: string, extra: Partial<MemwalOptions> = {}): Promise<MemWAL> {
  return MemWAL.open({ dir, resilience: fastResilience, closeGraceMs: 1000, ...extra })
}

async function openTemp(t: { teardown(fn: () => unknown): void }, extra: Partial<MemwalOptions> = {}): Promise<{ dir: string; engine: MemWAL }> {
  const dir = tmpDir(t)
  const engine = await open(dir, extra)
  t.teardown(() => engine.close())
  return { dir, engine }
}


async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (err) {
    return (err as { code?: string }).code ?? `no code: ${String(err)}`
  }
  return 'resolved'
}

async function drain(it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = []
  for await (const x of it) out.push(x)
  return out
}

t.test('put, get, getEntry, delete, batch, flush: basic semantics', async (t) => {
  const { dir, engine } = await openTemp(t)
  t.equal(await engine.get('missing'), undefined, 'a key never written reads as undefined (backend healthy)')
  t.equal(await engine.getEntry('missing'), undefined)
  const a = await engine.put('a', { n: 1 })
  const b = await engine.put('b', 'two', { namespace: 'ns', tags: ['x', 'y', 'x'] })
  t.equal(a.lsn, 1, 'the first LSN is 1')
  t.equal(b.lsn, 2, 'LSNs are contiguous')
  t.strictSame(await engine.get('a'), { n: 1 })
  t.match(await engine.getEntry('b', { namespace: 'ns' }), { namespace: 'ns', key: 'b', value: 'two', version: 2, tags: ['x', 'y'] }, 'getEntry: namespace, key, tags (deduplicated), version')
  t.equal(await engine.get('b'), undefined, 'b lives in ns, not in the default namespace')
  await engine.put('a', [1, 'x', null, true, 1.5, -7, { deep: { er: [] } }])
  t.strictSame(await engine.get('a'), [1, 'x', null, true, 1.5, -7, { deep: { er: [] } }], 'an overwrite wins')
  const d = await engine.delete('a')
  t.equal(d.lsn, 4)
  t.equal(await engine.get('a'), undefined, 'a delete removes')
  t.equal((await engine.delete('never-there')).lsn, 5, 'deleting an absent key is a logged no-op')
  const batch = await engine.batch([
    { type: 'put', key: 'c', value: 3, namespace: 'ns' },
    { type: 'put', key: 'd', value: 4, tags: ['x'] },
    { type: 'del', key: 'b', namespace: 'ns' },
    { type: 'put', key: 'twice', value: 'first' },
    { type: 'put', key: 'twice', value: 'second' },
    { type: 'put', key: 'gone', value: 'soon' },
    { type: 'del', key: 'gone' },
  ])
  t.equal(batch.lsn, 6, 'a batch is one record, one LSN')
  const expectAll = async (when: string, e: MemWAL): Promise<void> => {
    t.equal(await e.get('c', { namespace: 'ns' }), 3, `${when}: batch put`)
    t.equal(await e.get('d'), 4, `${when}: batch put`)
    t.equal(await e.get('b', { namespace: 'ns' }), undefined, `${when}: batch delete`)
    t.equal(await e.get('twice'), 'second', `${when}: the later op on a key in a batch wins`)
    t.equal(await e.get('gone'), undefined, `${when}: put then delete in one batch leaves nothing`)
  }
  await expectAll('pending or applied', engine)
  await engine.flush()
  await engine.flush() // nothing pending: resolves at once
  await expectAll('after flush', engine)
  const bin = new Uint8Array([0, 1, 2, 255])
  await engine.put('bin', bin)
  t.strictSame([...((await engine.get('bin')) as Uint8Array)], [0, 1, 2, 255], 'binary values round-trip')
  await engine.put('big-int', 2n ** 40n)
  t.equal(await engine.get('big-int'), 2n ** 40n, 'a BigInt round-trips')
  await engine.close()
  const again = await open(dir)
  t.teardown(() => again.close())
  await expectAll('after reopen (from the backend)', again)
  t.strictSame(await again.getEntry('b', { namespace: 'ns' }), undefined)
  t.match(await again.getEntry('d'), { namespace: 'default', key: 'd', value: 4, version: 6, tags: ['x'] })
  t.strictSame([...((await again.get('bin')) as Uint8Array)], [0, 1, 2, 255])
  t.equal(again.health().wal.lastLsn, 8)
  await again.close()
})

t.test('query by namespace, tag and prefix, in identity order (namespace, then key), with a limit', async (t) => {
  const { engine } = await openTemp(t)
  await engine.put('p:3', 3, { namespace: 'n1', tags: ['t1'] })
  await engine.put('p:1', 1, { namespace: 'n1', tags: ['t1', 't2'] })
  await engine.put('p:2', 2, { namespace: 'n2', tags: ['t2'] })
  await engine.put('q:1', 'q', { namespace: 'n1' })
  await engine.put('r:1', 'r')
  const keys = async (q: Parameters<MemWAL['query']>[0]): Promise<string[]> => (await drain(engine.query(q))).map((r) => (r as { key: string }).key)
  for (const when of ['pending', 'applied']) {
    if (when === 'applied') await engine.flush()
    t.strictSame(await keys({ namespace: 'n1' }), ['p:1', 'p:3', 'q:1'], `${when}: namespace`)
    t.strictSame(await keys({ tag: 't2' }), ['p:1', 'p:2'], `${when}: tag`)
    t.strictSame(await keys({ prefix: 'p:' }), ['p:1', 'p:3', 'p:2'], `${when}: prefix (n1 before n2)`)
    t.strictSame(await keys({ namespace: 'n1', tag: 't1' }), ['p:1', 'p:3'], `${when}: namespace and tag`)
    t.strictSame(await keys({ namespace: 'n1', prefix: 'q' }), ['q:1'], `${when}: namespace and prefix`)
    t.strictSame(await keys({}), ['r:1', 'p:1', 'p:3', 'q:1', 'p:2'], `${when}: everything (default, n1, n2)`)
    t.strictSame(await keys({ prefix: 'p:', limit: 2 }), ['p:1', 'p:3'], `${when}: limit`)
    t.strictSame(await keys({ namespace: 'none' }), [], `${when}: no match`)
  }
  t.match(await drain(engine.query({ tag: 't1', limit: 1 })), [{ key: 'p:1', value: 1, namespace: 'n1', tags: ['t1', 't2'], version: 2 }], 'results carry value, namespace, tags and version')
  await engine.put('p:1', 'other', { namespace: 'n2' })
  await engine.delete('p:3', { namespace: 'n1' })
  t.strictSame(await keys({ namespace: 'n1' }), ['p:1', 'q:1'], 'the same key in another namespace is another entry; a pending delete leaves at once')
  t.strictSame(await keys({ namespace: 'n2' }), ['p:1', 'p:2'])
  await engine.flush()
  t.strictSame(await keys({ namespace: 'n1' }), ['p:1', 'q:1'])
  t.strictSame(await keys({ tag: 't1' }), ['p:1'], 'the index dropped the deleted entry\'s tags')
})

t.test('invalid keys: ENGINE_INVALID_KEY, nothing written', async (t) => {
  const { engine } = await openTemp(t, { keyBytesMax: 64 })
  const bad: [string, unknown][] = [
    ['a number', 42], ['undefined', undefined], ['null', null], ['an object', { k: 1 }], ['empty', ''],
    ['65 ASCII bytes', 'k'.repeat(65)], ['22 x 3-byte chars (66 bytes)', '€'.repeat(22)], ['a lone surrogate', 'a\uD800b'],
  ]
  for (const [what, key] of bad) {
    t.equal(await codeOf(() => engine.put(key as string, 1)), 'ENGINE_INVALID_KEY', `put: ${what}`)
    t.equal(await codeOf(() => engine.get(key as string)), 'ENGINE_INVALID_KEY', `get: ${what}`)
    t.equal(await codeOf(() => engine.delete(key as string)), 'ENGINE_INVALID_KEY', `delete: ${what}`)
    t.equal(await codeOf(() => engine.batch([{ type: 'put', key: 'ok', value: 1 }, { type: 'put', key: key as string, value: 1 }])), 'ENGINE_INVALID_KEY', `batch: ${what}`)
  }
  t.equal(await codeOf(() => engine.put('k'.repeat(64), 1)), 'resolved', 'a key of exactly keyBytesMax bytes is fine')
  t.equal(engine.health().wal.lastLsn, 1, 'no refused operation was logged')
  t.equal(await engine.get('ok'), undefined, 'no op of a refused batch is visible')
})

t.test('invalid values, labels and batches: typed errors, nothing written', async (t) => {
  const { dir, engine } = await openTemp(t, { batchOpsMax: 10, labelBytesMax: 16, tagsMax: 3 })
  const circular: Record<string, unknown> = { a: 1 }
  circular.self = circular
  class Point {
    x = 1
  }
  const values: [string, unknown][] = [
    ['undefined', undefined], ['a function', () => 1], ['a symbol', Symbol('s')], ['a circular object', circular],
    ['a nested function', { f: () => 1 }], ['a function in an array', [1, () => 1]], ['a nested symbol', { s: Symbol('s') }], ['a class instance', { p: new Point() }], ['a Promise', [Promise.resolve(1)]], ['a lone surrogate in a string', 'x\uDC00'],
  ]
  for (const [what, value] of values) {
    t.equal(await codeOf(() => engine.put('k', value)), 'ENGINE_INVALID_VALUE', `put: ${what}`)
    t.equal(await codeOf(() => engine.batch([{ type: 'put', key: 'ok', value: 1 }, { type: 'put', key: 'k', value }])), 'ENGINE_INVALID_VALUE', `batch: ${what}`)
  }
  const labels: [string, object][] = [
    ['empty namespace', { namespace: '' }], ['numeric namespace', { namespace: 7 }], ['NUL in namespace', { namespace: 'a\u0000b' }],
    ['namespace over labelBytesMax', { namespace: 'n'.repeat(17) }], ['tags not an array', { tags: 'x' }], ['a numeric tag', { tags: ['ok', 1] }],
    ['an empty tag', { tags: [''] }], ['NUL in a tag', { tags: ['a\u0000'] }], ['more than tagsMax tags', { tags: ['a', 'b', 'c', 'd'] }],
    ['a tag over labelBytesMax', { tags: ['t'.repeat(17)] }],
  ]
  // A field of the wrong type is INVALID_OPTIONS naming it; a string or array of the right type with a bad content is ENGINE_INVALID_VALUE.
  const wrongType = new Set(['numeric namespace', 'tags not an array', 'a numeric tag'])
  for (const [what, opts] of labels) {
    const code = wrongType.has(what) ? 'INVALID_OPTIONS' : 'ENGINE_INVALID_VALUE'
    t.equal(await codeOf(() => engine.put('k', 1, opts)), code, `put: ${what}`)
    t.equal(await codeOf(() => engine.batch([{ type: 'put', key: 'k', value: 1, ...opts } as never])), code, `batch: ${what}`)
  }
  t.equal(await codeOf(() => engine.put('k', 1, 'ns' as never)), 'INVALID_OPTIONS', 'put: options not an object')
  t.equal(await codeOf(() => engine.batch([])), 'ENGINE_INVALID_VALUE', 'an empty batch')
  t.equal(await codeOf(() => engine.batch('x' as never)), 'ENGINE_INVALID_VALUE', 'a batch that is not an array')
  t.equal(await codeOf(() => engine.batch([{ type: 'upsert', key: 'k', value: 1 } as never])), 'ENGINE_INVALID_VALUE', 'an unknown op type')
  t.equal(await codeOf(() => engine.batch([null as never])), 'ENGINE_INVALID_VALUE', 'a null op')
  t.equal(await codeOf(() => engine.batch(Array.from({ length: 11 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: i })))), 'ENGINE_INVALID_VALUE', 'more than batchOpsMax ops')
  t.equal(await codeOf(() => drain(engine.query({ namespace: '' }))), 'ENGINE_INVALID_VALUE', 'query: empty namespace')
  t.equal(await codeOf(() => drain(engine.query({ tag: 'a\u0000' }))), 'ENGINE_INVALID_VALUE', 'query: NUL in tag')
  t.equal(await codeOf(() => drain(engine.query({ prefix: 3 as never }))), 'INVALID_OPTIONS', 'query: numeric prefix')
  t.equal(await codeOf(() => drain(engine.query({ limit: 0 }))), 'INVALID_OPTIONS', 'query: limit 0')
  t.equal(await codeOf(() => drain(engine.query({ limit: 1.5 }))), 'INVALID_OPTIONS', 'query: fractional limit')
  t.equal(await codeOf(() => drain(engine.query({ limit: 100_001 }))), 'INVALID_OPTIONS', 'query: limit over the maximum')
  t.equal(QUERY_RESULTS_MAX, 100_000, 'the exported maximum is the one README states')
  t.equal(await codeOf(() => drain(engine.query({ limit: QUERY_RESULTS_MAX }))), 'resolved', 'query: limit QUERY_RESULTS_MAX is taken')
  t.equal(await codeOf(() => drain(engine.query({ limit: QUERY_RESULTS_MAX + 1 }))), 'INVALID_OPTIONS', 'query: limit QUERY_RESULTS_MAX + 1 is refused')
  t.equal(await codeOf(() => engine.batch(Array.from({ length: 10 }, (_, i) => ({ type: 'put' as const, key: `k${i}`, value: i })))), 'resolved', 'batchOpsMax ops are fine')
  t.equal(engine.health().wal.lastLsn, 1, 'only the valid batch was logged')
  t.equal(await engine.get('ok'), undefined, 'no op of a refused batch is visible')
  await engine.close()
  const again = await open(dir)
  t.teardown(() => again.close())
  t.equal(again.recovery.records, 1, 'the log holds the one valid record')
  t.equal(again.health().wal.lastLsn, 1)
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
})

t.test('an oversized value is refused with a typed error and nothing is written', async (t) => {
  const { dir, engine } = await openTemp(t, { recordBytesMax: 64 * 1024 })
  await engine.put('before', 1)
  await engine.flush()
  const big = 'z'.repeat(64 * 1024 + 1)
  t.equal(await codeOf(() => engine.put('big', big)), 'WAL_RECORD_TOO_LARGE', 'a value over recordBytesMax')
  t.equal(await codeOf(() => engine.batch([{ type: 'put', key: 'small', value: 1 }, { type: 'put', key: 'big', value: big }])), 'WAL_RECORD_TOO_LARGE', 'a batch over recordBytesMax')
  t.equal(engine.health().wal.lastLsn, 1, 'nothing logged')
  t.equal(engine.health().backlog.bytes, 0, 'nothing in the backlog')
  t.equal(await engine.get('big'), undefined)
  t.equal(await engine.get('small'), undefined, 'no op of the refused batch is visible')
  t.equal((await engine.put('after', 2)).lsn, 2, 'the next write takes the next LSN')
  t.equal(engine.health().state, 'open')
  await engine.close()
  const tight = await open(dir, { maxBacklogBytes: 1024 })
  t.teardown(() => tight.close())
  t.equal(await codeOf(() => tight.put('big', 'y'.repeat(2000))), 'ENGINE_BACKLOG_FULL', 'a record larger than maxBacklogBytes (but under recordBytesMax)')
  t.equal(tight.health().wal.lastLsn, 2, 'nothing logged')
})

t.test('a batch is all or nothing: one record, visible whole', async (t) => {
  const faults = new SinkFaults({ targets: ['backend', 'index'] })
  const { dir, engine } = await openTemp(t, { wrapSink: (s) => faults.wrap(s) })
  const ops = Array.from({ length: 50 }, (_, i) => ({ type: 'put' as const, key: `b${String(i).padStart(2, '0')}`, value: i, namespace: 'batch' }))
  faults.down()
  // Observe visibility at every point the event loop gives: never a partial batch.
  const seen = new Set<number>()
  let observing = true
  let acked = false
  // Passes that began after the batch was acknowledged: one is awaited (a fixed sleep let a slow machine stop first).
  let passesAfterAck = 0
  const observer = (async () => {
    while (observing) {
      const afterAck = acked
      let n = 0
      for await (const r of engine.query({ namespace: 'batch', limit: 1000 })) if (r) n++
      seen.add(n)
      if (afterAck) passesAfterAck++
      await new Promise((r) => setImmediate(r))
    }
  })()
  await new Promise((r) => setTimeout(r, 5))
  const { lsn } = await engine.batch(ops)
  acked = true
  while (passesAfterAck === 0) await new Promise((r) => setImmediate(r))
  observing = false
  await observer
  t.ok([...seen].every((n) => n === 0 || n === 50), `query saw only 0 or 50 keys of the batch (${[...seen].join(', ')})`)
  t.ok(seen.has(50), 'and the whole batch once acknowledged')
  t.equal(engine.health().backlog.records, 1, 'one record')
  const values = await Promise.all(ops.map((o) => engine.get(o.key, { namespace: 'batch' })))
  t.strictSame(values, ops.map((o) => o.value), 'every op visible after the ack (pending)')
  await engine.close() // with backend and index down: the batch is only in the log
  const again = await open(dir)
  t.teardown(() => again.close())
  t.strictSame(await Promise.all(ops.map((o) => again.get(o.key, { namespace: 'batch' }))), ops.map((o) => o.value), 'every op visible after reopen (replayed from the log)')
  await again.flush()
  t.equal(again.health().sinks.backend?.checkpoint, lsn)
  t.equal((await drain(again.query({ namespace: 'batch' }))).length, 50, 'the index took the whole batch')
})

t.test('after close: ENGINE_CLOSED for every operation; close is idempotent', async (t) => {
  const { engine } = await openTemp(t)
  await engine.put('a', 1)
  const states: unknown[] = []
  engine.on('state', (e: unknown) => states.push(e))
  await engine.close()
  await engine.close()
  t.strictSame(states, [{ from: 'open', to: 'closed', level: 'closed', reason: 'closed' }], "one 'state' event")
  t.equal(engine.health().state, 'closed')
  t.equal(await codeOf(() => engine.put('a', 2)), 'ENGINE_CLOSED', 'put')
  t.equal(await codeOf(() => engine.delete('a')), 'ENGINE_CLOSED', 'delete')
  t.equal(await codeOf(() => engine.batch([{ type: 'del', key: 'a' }])), 'ENGINE_CLOSED', 'batch')
  t.equal(await codeOf(() => engine.get('a')), 'ENGINE_CLOSED', 'get')
  t.equal(await codeOf(() => engine.getEntry('a')), 'ENGINE_CLOSED', 'getEntry')
  t.equal(await codeOf(() => engine.flush()), 'ENGINE_CLOSED', 'flush')
  t.equal(await codeOf(() => drain(engine.query({}))), 'ENGINE_CLOSED', 'query')
})

t.test('a flush waiting when close starts settles: ENGINE_CLOSED (the records stay in the log)', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { dir, engine } = await openTemp(t, { wrapSink: (s) => faults.wrap(s) })
  faults.down()
  await engine.put('a', 1)
  const flushing = engine.flush().then(() => 'resolved', (e: { code?: string }) => e.code ?? 'no code')
  await engine.close()
  const outcome = await Promise.race([flushing, new Promise((r) => setTimeout(() => r('still pending 1 s after close'), 1000))])
  t.equal(outcome, 'ENGINE_CLOSED')
  const again = await open(dir)
  t.teardown(() => again.close())
  t.equal(await again.get('a'), 1, 'the record was kept for the next open')
})

t.test('flush with timeoutMs rejects with ENGINE_FLUSH_TIMEOUT while a sink is down', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine } = await openTemp(t, { wrapSink: (s) => faults.wrap(s) })
  faults.down()
  await engine.put('a', 1)
  const err = await engine.flush({ timeoutMs: 100 }).then(() => undefined, (e: unknown) => e as { code: string; transient: boolean; details: { state?: string } })
  t.equal(err?.code, 'ENGINE_FLUSH_TIMEOUT')
  t.equal(err?.transient, true)
  t.equal(err?.details.state, 'degraded', 'the error carries health()')
  faults.up()
  await engine.flush()
  t.equal(engine.health().backlog.records, 0, 'a later flush completes')
})

t.test('a write in flight when close starts is either acknowledged and durable, or refused', async (t) => {
  const { dir, engine } = await openTemp(t)
  const writes = Array.from({ length: 50 }, (_, i) => engine.put(`k${i}`, i).then((r) => ({ ok: true as const, lsn: r.lsn, i }), (e: { code: string }) => ({ ok: false as const, code: e.code, i })))
  await engine.close()
  const results = await Promise.all(writes)
  const refused = results.filter((r) => !r.ok)
  t.ok(refused.every((r) => !r.ok && r.code === 'ENGINE_CLOSED'), `refusals are ENGINE_CLOSED (${refused.length} refused)`)
  const again = await open(dir)
  t.teardown(() => again.close())
  for (const r of results) if (r.ok) t.equal(await again.get(`k${r.i}`), r.i, `acknowledged k${r.i} survived close`)
})

t.test('a second open of the same directory is refused with LOCK_HELD (G7)', async (t) => {
  const { dir, engine } = await openTemp(t)
  await engine.put('a', 1)
  const err = await open(dir).then(
    async (e) => {
      await e.close()
      return undefined
    },
    (e: unknown) => e as { code: string; details: { holder?: string } },
  )
  t.equal(err?.code, 'LOCK_HELD')
  t.match(err?.details.holder, new RegExp(`^process ${process.pid} on .*, this very process: it already has the directory open`), 'naming the holder: this very process, said so (a second open here is the caller\'s mistake)')
  t.equal(await engine.get('a'), 1, 'the first engine is unaffected')
  await engine.put('b', 2)
  await engine.close()
  const again = await open(dir)
  t.teardown(() => again.close())
  t.equal(await again.get('b'), 2, 'after close the directory opens again')
})

t.test('health(): fields and values', async (t) => {
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine } = await openTemp(t, { wrapSink: (s) => faults.wrap(s), maxBacklogBytes: 1 << 20, cacheBytes: 1 << 20 })
  let h = engine.health()
  t.equal(h.state, 'open')
  t.equal(h.reason, undefined, 'no reason when open')
  t.strictSame(h.wal, { lastLsn: 0, durableLsn: 0, activeSegment: h.wal.activeSegment })
  t.match(h.wal.activeSegment, /^\d{20}\.seg$/)
  t.strictSame(h.backlog, { records: 0, bytes: 0, maxBytes: 1 << 20, pendingKeys: 0 })
  t.strictSame(Object.keys(h.sinks).sort(), ['backend', 'cache', 'index'])
  t.strictSame([h.sinks.backend?.durable, h.sinks.index?.durable, h.sinks.cache?.durable], [true, true, false], 'backend and index are durable, the cache is not')
  for (let i = 0; i < 10; i++) await engine.put(`k${i}`, 'v'.repeat(100))
  await engine.flush()
  h = engine.health()
  t.equal(h.wal.lastLsn, 10)
  t.equal(h.wal.durableLsn, 10, 'sync durability: every acknowledged LSN is durable')
  t.strictSame(h.backlog, { records: 0, bytes: 0, maxBytes: 1 << 20, pendingKeys: 0 })
  t.equal(h.cache.entries, 10)
  t.ok(h.cache.bytes > 1000 && h.cache.bytes <= h.cache.maxBytes, `cache bytes ${h.cache.bytes}`)
  for (const [name, s] of Object.entries(h.sinks)) {
    t.equal(s.checkpoint, 10, `${name}: checkpoint`)
    t.equal(s.breaker, 'closed', `${name}: breaker`)
    t.strictSame(s.lag, { records: 0, bytes: 0, ms: 0 }, `${name}: no lag`)
    t.equal(s.consecutiveFailures, 0)
    t.equal(s.applied, 10, `${name}: applied 10 records`)
    t.equal(s.deadLetters, 0)
    t.equal(s.lastError, undefined)
  }
  faults.down()
  await engine.put('k0', 'again')
  await engine.put('k10', 'new')
  h = engine.health()
  t.equal(h.backlog.records, 2)
  t.equal(h.backlog.pendingKeys, 2)
  t.ok(h.backlog.bytes > 0)
  t.equal(h.sinks.backend?.lag.records, 2)
  t.ok((h.sinks.backend?.lag.bytes ?? 0) > 0)
  faults.up()
  await engine.flush()
})

t.test('metrics on the registry passed in; unregistered at close', async (t) => {
  const registry = new Registry()
  const faults = new SinkFaults({ targets: ['backend'] })
  const { engine } = await openTemp(t, { metrics: registry, wrapSink: (s) => faults.wrap(s), maxBacklogBytes: 300 })
  const value = async (name: string, labels: Record<string, string> = {}): Promise<number | undefined> => {
    const m = registry.getSingleMetric(name)
    if (!m) return undefined
    const v = (await m.get()).values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l))
    return v?.value
  }
  await engine.put('a', 1)
  await engine.put('b', 2)
  await engine.delete('a')
  await engine.batch([{ type: 'put', key: 'c', value: 3 }, { type: 'del', key: 'b' }])
  t.equal(await value('memwal_writes_total', { type: 'put' }), 2, 'puts counted')
  t.equal(await value('memwal_writes_total', { type: 'delete' }), 1, 'deletes counted')
  t.equal(await value('memwal_writes_total', { type: 'batch' }), 1, 'batches counted')
  await engine.flush()
  t.equal(await value('memwal_backlog_bytes'), 0)
  t.equal(await value('memwal_sink_checkpoint', { sink: 'backend' }), 4)
  t.ok((await value('memwal_apply_batches_total', { sink: 'backend' })) ?? 0 >= 1)
  t.ok(((await registry.getSingleMetric('memwal_ack_seconds')?.get())?.values.find((v) => (v as { metricName?: string }).metricName === 'memwal_ack_seconds_count')?.value ?? 0) === 4, 'every ack timed')

  faults.down()
  await engine.put('d', 'x'.repeat(100))
  await engine.put('e', 'x'.repeat(100))
  const h = engine.health()
  t.equal(await value('memwal_backlog_bytes'), h.backlog.bytes, 'the backlog gauge reports health().backlog.bytes')
  t.ok(h.backlog.bytes > 200)
  t.equal(await value('memwal_backlog_records'), 2)
  t.equal(await value('memwal_sink_lag_records', { sink: 'backend' }), 2)
  t.equal(await value('memwal_sink_lag_records', { sink: 'index' }), h.sinks.index?.lag.records)
  await t.rejects(engine.put('f', 'x'.repeat(100)), { code: 'ENGINE_BACKLOG_FULL' })
  t.equal(await value('memwal_writes_total', { type: 'put' }), 4, 'a refused write is not counted as written')
  t.equal(await value('memwal_write_errors_total', { code: 'ENGINE_BACKLOG_FULL' }), 1, 'a refused write is counted by its code')
  // A record that could never fit the backlog, though the log would take it; and one the log never would (counted by its own code).
  await t.rejects(engine.put('g', 'y'.repeat(1024 * 1024)), { code: 'ENGINE_BACKLOG_FULL' })
  t.equal(await value('memwal_write_errors_total', { code: 'ENGINE_BACKLOG_FULL' }), 2)
  await t.rejects(engine.put('g', 'y'.repeat(5 * 1024 * 1024)), { code: 'WAL_RECORD_TOO_LARGE' })
  t.equal(await value('memwal_write_errors_total', { code: 'WAL_RECORD_TOO_LARGE' }), 1)
  const text = await registry.metrics()
  t.match(text, /memwal_sink_breaker_open\{sink="backend"\} [01]/)
  faults.up()
  await engine.flush()
  t.equal(await value('memwal_sink_breaker_open', { sink: 'backend' }), 0)
  await engine.close()
  t.equal(registry.getSingleMetric('memwal_writes_total'), undefined, 'metrics unregistered at close')
  t.equal((await registry.getMetricsAsJSON()).length, 0, 'nothing left on the registry')
  const again = await open(tmpDir(t), { metrics: registry })
  t.teardown(() => again.close())
  await again.put('x', 1)
  t.equal(await value('memwal_writes_total', { type: 'put' }), 1, 'a new engine registers afresh on the same registry')
})

/** Runs a script in a child process (tsx), returning its stdout lines and exit code. */
function runChild(script: string, timeoutMs: number): Promise<{ lines: string[]; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`child timed out; stdout ${out}; stderr ${err}`))
    }, timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ lines: out.split('\n').filter(Boolean), code, stderr: err })
    })
  })
}

t.test('awaiting flush, or a write waiting for backlog room, keeps the process alive until it settles', async (t) => {
  const dir = tmpDir(t)
  const engineUrl = new URL('../../engine/index.js', import.meta.url).href
  const faultsUrl = new URL('../support/faulty-sink.js', import.meta.url).href
  // The script holds no timer of its own: only what memwal holds keeps it running while the backend is down.
  const script = `
    import { MemWAL } from '${engineUrl}'
    import { SinkFaults } from '${faultsUrl}'
    const faults = new SinkFaults({ targets: ['backend'] })
    const engine = await MemWAL.open({
      dir: ${JSON.stringify(dir)}, maxBacklogBytes: 100, backlogPolicy: 'wait', backlogWaitMsMax: 10000,
      resilience: { retryDelayMsMin: 50, retryDelayMsMax: 100, breakerThreshold: 3, breakerHalfOpenMs: 100 },
      wrapSink: (s) => faults.wrap(s),
    })
    process.on('exit', (code) => console.log('exit ' + code))
    faults.down()
    await engine.put('a', 'x'.repeat(60))
    setTimeout(() => faults.up(), 400).unref()
    await engine.flush({ timeoutMs: 10000 })
    console.log('flushed')
    faults.down()
    await engine.put('b', 'x'.repeat(60))
    setTimeout(() => faults.up(), 400).unref()
    await engine.put('c', 'x'.repeat(60))
    console.log('admitted')
    await engine.close()
    console.log('closed')
  `
  const r = await runChild(script, 30_000)
  t.strictSame(r.lines, ['flushed', 'admitted', 'closed', 'exit 0'], `the script ran to the end (stderr: ${r.stderr.slice(0, 500)})`)
  t.equal(r.code, 0)
})
