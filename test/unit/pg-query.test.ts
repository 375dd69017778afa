/**
 * MemWAL.query, queryPage and count with a PostgreSQL backend (issue 11
 * item 8): they answer from PostgreSQL, so each writer sees what every
 * writer applied, with this process's pending writes (acknowledged, not yet
 * applied) merged in and expired entries absent; and they answer as the
 * local-index path does (a LevelDB engine given the same writes) for random
 * queries, as entries, as pages through cursors and as counts, pending,
 * applied and after expiries. Seeded: MEMWAL_PGQUERY_SEED=<seed> replays one.
 */
import t from 'tap'
import { MemWAL, PgBackend, type Entry, type QueryOptions } from '../../engine/index.js'
import { ManualClock, SeededRandom } from '../../engine/testing.js'
import { SinkFaults } from '../support/faulty-sink.js'
import { TcpProxy } from '../../bench/tcp-proxy.js'
import { PG_URL, pgTarget, schemaWithClient, viaPort } from '../support/pg.js'
import { applyWrite, id, KEYS, modelAnswer, modelWrite, pagesOf, randomQuery, randomWrite, type ModelEntry } from '../support/random-query.js'
import { tmpDir } from '../support/tmp-dir.js'
import { sleep } from '../support/wait-for.js'

const NOW = 1_800_000_000_000
const HOUR_MS = 3_600_000

async function all(db: MemWAL, q: QueryOptions): Promise<Entry[]> {
  const out: Entry[] = []
  for await (const e of db.query({ ...q, limit: 100_000 })) out.push(e)
  return out
}

const ids = (es: readonly Entry[]): string[] => es.map((e) => id(e.namespace, e.key))

t.test('two writers on one schema: each one\'s query, pages and count see both writers\' entries', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgq2w')
  if (!pgdb) return
  const clock = new ManualClock(NOW)
  const open = (writerId: string): Promise<MemWAL> => MemWAL.open({ dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId, schema: pgdb.schema }), clock, sweepIntervalMs: 3_600_000 })
  const a = await open('a')
  const b = await open('b')
  t.teardown(async () => {
    await a.close()
    await b.close()
  })
  await a.put('a1', 'from a', { namespace: 'notes', tags: ['fact'] })
  await a.put('shared', 'a wrote it', { namespace: 'notes' })
  clock.advance(1000)
  await b.put('b1', 'from b', { namespace: 'notes', tags: ['fact', 'todo'] })
  await b.put('b2', 'below', { namespace: 'notes/sub', tags: ['todo'] })
  await b.put('b3', 'elsewhere', { namespace: 'other', tags: ['fact'] })
  await a.flush()
  await b.flush()
  for (const [name, db] of [['a', a], ['b', b]] as const) {
    t.strictSame(ids(await all(db, { namespace: 'notes' })), ['notes\u0000a1', 'notes\u0000b1', 'notes\u0000shared'], `${name}: one namespace, both writers' entries`)
    t.strictSame(ids(await all(db, { namespacePrefix: 'notes', reverse: true })), ['notes/sub\u0000b2', 'notes\u0000shared', 'notes\u0000b1', 'notes\u0000a1'], `${name}: a namespace prefix, reversed`)
    t.strictSame(ids(await all(db, { tags: { all: ['fact'] }, since: NOW + 1000 })), ['notes\u0000b1', 'other\u0000b3'], `${name}: tags and write time`)
    t.equal(await db.count({ tags: { any: ['fact', 'todo'] } }), 4, `${name}: count over both writers`)
    t.equal(await db.count({}), 5, `${name}: count of everything`)
    t.strictSame(await pagesOf(db, {}, 2), ['notes\u0000a1', 'notes\u0000b1', 'notes\u0000shared', 'notes/sub\u0000b2', 'other\u0000b3'], `${name}: pages of 2 through cursors`)
    t.match((await all(db, { namespace: 'notes', prefix: 'b' }))[0], { namespace: 'notes', key: 'b1', value: 'from b', tags: ['fact', 'todo'], version: 1, createdAt: NOW + 1000, updatedAt: NOW + 1000 }, `${name}: another writer's entry as getEntry shows it`)
  }
  clock.advance(1000)
  await b.put('shared', 'b wrote it later', { namespace: 'notes' })
  await b.flush()
  t.match(await all(a, { namespace: 'notes', gte: 'shared' }), [{ key: 'shared', value: 'b wrote it later', version: 4, createdAt: NOW, updatedAt: NOW + 2000 }], 'a sees b\'s later version of its own entry (last writer wins)')
})

t.test('pending writes of this process are merged in; expired entries are absent', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgqpend')
  if (!pgdb) return
  const clock = new ManualClock(NOW)
  const faults = new SinkFaults({ targets: ['backend'] })
  const open = (writerId: string, wrap: boolean): Promise<MemWAL> => MemWAL.open({
    dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId, schema: pgdb.schema }), clock, sweepIntervalMs: HOUR_MS, resilience: { applyTimeoutMs: HOUR_MS },
    ...(wrap ? { wrapSink: <S,>(s: S): S => faults.wrap(s as never) as S } : {}),
  })
  const a = await open('a', true)
  const b = await open('b', false)
  t.teardown(async () => {
    faults.release()
    await a.close()
    await b.close()
  })
  await b.put('b1', 'b', { namespace: 'n', tags: ['x'] })
  await b.put('b2', 'b', { namespace: 'n', tags: ['x'] })
  await b.put('b3', 'b', { namespace: 'n', tags: ['x'] })
  await b.put('soon', 'b', { namespace: 'n', tags: ['x'], ttlMs: 5000 })
  await b.flush()
  clock.advance(1000) // a's versions are the later ones (last writer wins by clock stamp)
  faults.hang() // a's backend applies nothing from now on: what a writes stays pending
  await a.put('a1', 'pending', { namespace: 'n', tags: ['x'] })
  await a.put('b2', 'a over b, pending', { namespace: 'n', tags: ['x'] })
  await a.delete('b3', { namespace: 'n' })
  await a.put('b1', 'a over b, tag dropped', { namespace: 'n' })
  const want = [['a1', 'pending'], ['b2', 'a over b, pending'], ['soon', 'b']]
  t.strictSame((await all(a, { namespace: 'n', tags: { all: ['x'] } })).map((e) => [e.key, e.value]), want, 'a: its pending put, its pending overwrite of b\'s entry; b\'s entries a deleted or retagged (pending) are gone')
  t.strictSame((await all(a, { namespace: 'n', tags: { all: ['x'] }, reverse: true })).map((e) => e.key), ['soon', 'b2', 'a1'], 'reversed')
  t.strictSame(await pagesOf(a, { namespace: 'n', tags: { all: ['x'] } }, 1), want.map(([k]) => `n\u0000${k}`), 'pages of 1: the cursor passes pending and applied entries alike')
  t.equal(await a.count({ namespace: 'n', tags: { all: ['x'] } }), 3, 'a counts as it queries')
  t.equal(await a.count({ namespace: 'n' }), 4, 'a: b1 (its pending version), a1, b2, soon; b3 deleted')
  t.equal(await b.count({ namespace: 'n' }), 4, 'b sees none of a\'s pending writes (b1, b2, b3, soon)')
  t.equal((await pgdb.client.query(`SELECT count(*)::int AS n FROM "${pgdb.schema}".entries WHERE NOT deleted`)).rows[0].n, 4, 'nothing of a reached PostgreSQL')
  clock.advance(4000)
  t.strictSame((await all(a, { namespace: 'n' })).map((e) => e.key), ['a1', 'b1', 'b2'], 'b\'s expired entry is absent from a\'s query at once')
  t.equal(await a.count({ namespace: 'n' }), 3, '... and from its count')
  t.equal(await b.count({ namespace: 'n', tags: { all: ['x'] } }), 3, '... and from b\'s')
  t.equal((await pgdb.client.query(`SELECT count(*)::int AS n FROM "${pgdb.schema}".entries WHERE key = 'soon' AND NOT deleted`)).rows[0].n, 1, 'while its row is still in the table')
  faults.release()
  await a.flush()
  t.strictSame((await all(b, { namespace: 'n' })).map((e) => [e.key, e.value]), [['a1', 'pending'], ['b1', 'a over b, tag dropped'], ['b2', 'a over b, pending']], 'once a applied them, b sees a\'s writes')
})

t.test('PostgreSQL unreachable: query and count are ENGINE_BACKEND_UNAVAILABLE (transient), never a partial answer; they answer again once it is back', async (t) => {
  const pgdb = await schemaWithClient(t, 'pgqdown')
  if (!pgdb) return
  const proxy = await TcpProxy.start(pgTarget())
  t.teardown(() => proxy.close())
  const backend = new PgBackend({ connectionString: viaPort(proxy.port), writerId: 'a', schema: pgdb.schema, statementTimeoutMs: 800, connectTimeoutMs: 500 })
  const db = await MemWAL.open({ dir: tmpDir(t), backend, resilience: { retryDelayMsMin: 5, retryDelayMsMax: 200, breakerHalfOpenMs: 200, applyTimeoutMs: 2500 } })
  t.teardown(() => db.close())
  await db.put('applied', 1, { namespace: 'n' })
  await db.flush()
  proxy.cut()
  await db.put('pending', 2, { namespace: 'n' })
  const failure = async (p: Promise<unknown>): Promise<unknown> => p.then(() => 'answered', (e: { code?: string; transient?: boolean }) => [e.code, e.transient])
  t.strictSame(await failure(db.count({ namespace: 'n' })), ['ENGINE_BACKEND_UNAVAILABLE', true], 'count: a typed, transient refusal, not the pending entry alone')
  t.strictSame(await failure(all(db, { namespace: 'n' })), ['ENGINE_BACKEND_UNAVAILABLE', true], 'query: the same')
  proxy.heal()
  let n: number | undefined
  for (let i = 0; i < 200 && n === undefined; i++) n = await db.count({ namespace: 'n' }).catch(async () => sleep(50).then(() => undefined))
  t.equal(n, 2, 'once PostgreSQL is back: the applied entry and the pending (or since applied) one')
  t.strictSame((await all(db, { namespace: 'n' })).map((e) => e.key), ['applied', 'pending'])
})

const seeds = process.env['MEMWAL_PGQUERY_SEED'] !== undefined ? [Number(process.env['MEMWAL_PGQUERY_SEED'])] : [1, 2]
/** Key bounds: the model's keys, and bounds holding a NUL (no PostgreSQL text holds one; pending keys may). */
const BOUNDS = [...KEYS, 'k1\u0000x', 'm\u0000', '\u0000']

for (const seed of seeds) {
  const replay = `(replay: MEMWAL_PGQUERY_SEED=${seed} npx tap --disable-coverage test/unit/pg-query.test.ts)`
  t.test(`seed ${seed}: with PostgreSQL, query, pages and count answer as the local-index path does for the same writes ${replay}`, async (t) => {
    const pgdb = await schemaWithClient(t, 'pgqdiff')
    if (!pgdb) return
    const r = new SeededRandom(seed)
    const clock = new ManualClock(NOW)
    const start = clock.nowMs()
    const faults = new SinkFaults({ targets: ['backend'] })
    // A hung apply must not time out by the manual clock (which moves by seconds here) and open the breaker, which gates reads.
    const common = { clock, durability: 'none' as const, sweepIntervalMs: 3_600_000, resilience: { applyTimeoutMs: HOUR_MS } }
    const pg = await MemWAL.open({ ...common, dir: tmpDir(t), random: new SeededRandom(seed + 1), backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema: pgdb.schema }), wrapSink: <S,>(s: S): S => faults.wrap(s as never) as S })
    const local = await MemWAL.open({ ...common, dir: tmpDir(t), random: new SeededRandom(seed + 2) })
    t.teardown(async () => {
      faults.release()
      await pg.close()
      await local.close()
    })
    const model = new Map<string, ModelEntry>()
    let value = 0
    const write = async (): Promise<void> => {
      const w = randomWrite(r, clock, () => ++value)
      await applyWrite(pg, w)
      await applyWrite(local, w)
      modelWrite(model, w, clock.nowMs())
    }
    const check = async (when: string): Promise<void> => {
      for (let i = 0; i < 25; i++) {
        const q = randomQuery(r, clock, start, [...model.values()].map((e) => e.atMs), BOUNDS)
        const shown = `${when}: ${JSON.stringify(q)} ${replay}`
        const want = await all(local, q)
        t.strictSame(ids(want), modelAnswer(model, q, clock.nowMs()), `the local path agrees with the model: ${shown}`)
        t.strictSame(await all(pg, q), want, `query ${shown}`)
        const size = 1 + r.below(3)
        t.strictSame(await pagesOf(pg, q, size), ids(want), `pages of ${size}: ${shown}`)
        t.equal(await pg.count(q), want.length, `count ${shown}`)
      }
    }
    faults.hang()
    for (let i = 0; i < 40; i++) await write()
    await check('pending (PostgreSQL holds nothing yet)')
    faults.release()
    await pg.flush()
    await check('applied')
    faults.hang()
    for (let i = 0; i < 30; i++) await write()
    await check('some pending after more writes')
    clock.advance(10_000)
    await check('after some expired')
    faults.release()
    await pg.flush()
    await check('expired, applied')
  })
}
