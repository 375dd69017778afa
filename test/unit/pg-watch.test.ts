/**
 * The change feed across writers (pg-changes.ts) against the real
 * PostgreSQL: two writers (engines in this process, each with its own log
 * and PgBackend) and a watcher on a third backend:
 *
 * - every change each writer applied is seen once, none missed, each
 *   writer's in LSN (then batch operation) order, with its writer named;
 * - a watcher ended midway and opened again from the last token it read
 *   continues exactly (the union is every change, once);
 * - a token from another schema, or forged, is INVALID_OPTIONS; history
 *   pruned past a token is HISTORY_PURGED naming the writer and the oldest
 *   version left; close() ends a waiting watch; a server error that a retry
 *   cannot mend (the tables dropped) ends a watch with a typed error.
 *
 * Nothing here is timed: waits are for a count, bounded by a generous limit.
 */
import t from 'tap'
import { MemWAL, type MemwalOptions } from '../../engine/index.js'
import { PgBackend } from '../../engine/sinks/pg/pg-backend.js'
import type { PgChange } from '../../engine/sinks/pg/pg-changes.js'
import type { PgBackendOptions } from '../../engine/sinks/pg/pg-options.js'
import { take } from '../support/take.js'
import { tmpDir } from '../support/tmp-dir.js'
import { dropSchema, PG_URL, requirePg, testSchemaName } from '../support/pg.js'

/** applyTimeoutMs above the backends' statementTimeoutMs (800) + 1 s, as PgBackend requires. */
const fastResilience = { retryDelayMsMin: 5, retryDelayMsMax: 200, breakerThreshold: 3, breakerHalfOpenMs: 200, applyTimeoutMs: 2500 }


const id = (c: PgChange): string => `${c.writer}/${c.version}/${c.namespace ?? '*'}/${c.key}/${c.type}`

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p)
    return undefined
  } catch (err) {
    return (err as { code?: string }).code ?? String(err)
  }
}

if (await requirePg(t)) {
  const schemas: string[] = []
  t.teardown(async () => {
    for (const s of schemas) await dropSchema(s)
  })
  const newSchema = (): string => {
    const s = testSchemaName('watch')
    schemas.push(s)
    return s
  }
  type Teardown = { teardown(fn: () => unknown): void }
  const backend = (tt: Teardown, schema: string, writerId: string, extra: Partial<PgBackendOptions> = {}): PgBackend => {
    const b = new PgBackend({ connectionString: PG_URL, writerId, schema, watchPollMs: 20, pageRows: 50, statementTimeoutMs: 800, ...extra })
    tt.teardown(() => b.close())
    return b
  }
  const engine = async (tt: Teardown, schema: string, writerId: string, extra: Partial<PgBackendOptions> = {}, o: Partial<MemwalOptions> = {}): Promise<MemWAL> => {
    const e = await MemWAL.open({ dir: tmpDir(tt as never, `memwal-pgw-${writerId}-`), backend: backend(tt, schema, writerId, extra), resilience: fastResilience, closeGraceMs: 2000, ...o })
    tt.teardown(() => e.close())
    return e
  }

  /** What a writer does: puts, and every 7th round a batch (a put in another namespace and a delete). */
  async function writeSome(e: MemWAL, w: string, rounds: number): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      await e.put(`k${i}`, { w, i }, { namespace: 'n', tags: ['t'] })
      if (i % 7 === 0) await e.batch([{ type: 'put', key: `b${i}`, value: i, namespace: 'm' }, { type: 'del', key: `k${i}`, namespace: 'n' }])
    }
  }
  const ROUNDS = 120
  /** Changes per writer: ROUNDS puts, and 18 batches of two operations. */
  const PER_WRITER = ROUNDS + Math.ceil(ROUNDS / 7) * 2

  /** Each writer's changes in the order seen: versions never go back, and within one version operations keep batch order. */
  function checkOrder(t: { ok(v: unknown, m: string): void }, seen: readonly PgChange[]): void {
    const last = new Map<string, number>()
    let ordered = true
    for (const c of seen) {
      const prev = last.get(c.writer) ?? 0
      if (c.version < prev) ordered = false
      last.set(c.writer, c.version)
    }
    t.ok(ordered, 'each writer\'s changes in LSN order')
  }

  t.test('two writers, one watcher: every change once, each writer in LSN order; a restart from a token resumes exactly', async (t) => {
    const schema = newSchema()
    const A = await engine(t, schema, 'a')
    const B = await engine(t, schema, 'b')
    const W = backend(t, schema, 'watcher')
    await W.open()
    await A.put('before', 1)
    await A.flush()
    const start = await W.resumeTokenNow()
    await Promise.all([writeSome(A, 'a', ROUNDS), writeSome(B, 'b', ROUNDS)])
    await Promise.all([A.flush(), B.flush()])

    const all = await take(W.watch({ resumeToken: start }), 2 * PER_WRITER)
    t.equal(all.length, 2 * PER_WRITER, 'every change of both writers')
    t.equal(new Set(all.map(id)).size, all.length, 'none twice')
    t.notOk(all.some((c) => c.key === 'before'), 'nothing from before the token')
    checkOrder(t, all)
    const batch = all.filter((c) => c.writer === 'b' && c.key === 'b7')[0]
    t.match(batch, { type: 'put', namespace: 'm', value: 7, writer: 'b' }, 'a batch\'s put, with its value')
    const del = all.find((c) => c.writer === 'b' && c.version === batch?.version && c.type === 'delete')
    t.match(del, { key: 'k7', namespace: 'n' }, 'and the batch\'s delete, at the same version')
    t.match(all.find((c) => c.writer === 'a' && c.key === 'k1'), { type: 'put', value: { w: 'a', i: 1 }, tags: ['t'] }, 'a put with its tags')
    const a = all.filter((c) => c.writer === 'a')
    t.ok(a.every((c, i) => i === 0 || c.time >= (a[i - 1] as PgChange).time), 'times follow the writer\'s clock')

    // A consumer that stops after some, and starts again from the last token it read.
    const feed = W.watch({ resumeToken: start })
    const part1 = await take(feed, 101)
    await feed.return?.()
    const again = W.watch({ resumeToken: (part1[part1.length - 1] as PgChange).resumeToken })
    const part2 = await take(again, 2 * PER_WRITER - part1.length)
    void again.return?.()
    t.same([...part1, ...part2].map(id), all.map(id), 'the two parts are the whole feed, once, in the same order')

    // Changes made while no one watches are there for the next reader of the token.
    const tail = all[all.length - 1] as PgChange
    await A.delete('k1', { namespace: 'n' })
    await A.flush()
    const more = await take(W.watch({ resumeToken: tail.resumeToken }), 1)
    t.match(more, [{ type: 'delete', key: 'k1', namespace: 'n', writer: 'a' }], 'later changes follow the last token')
  })

  t.test('MemWAL.watch({ allWriters: true }): its own changes and the other writer\'s, each once, resumable', async (t) => {
    const schema = newSchema()
    const bA = backend(t, schema, 'a')
    const A = await MemWAL.open({ dir: tmpDir(t, 'memwal-pgw-a-'), backend: bA, resilience: fastResilience, closeGraceMs: 2000 })
    t.teardown(() => A.close())
    const B = await engine(t, schema, 'b')
    const start = await bA.resumeTokenNow()
    const feed = A.watch({ allWriters: true, resumeToken: start })
    await Promise.all([writeSome(A, 'a', 30), writeSome(B, 'b', 30)])
    await Promise.all([A.flush(), B.flush()])
    const per = 30 + Math.ceil(30 / 7) * 2
    const seen = (await take(feed, 2 * per)) as PgChange[]
    t.equal(seen.length, 2 * per, 'every change of both writers, its own included')
    t.equal(new Set(seen.map(id)).size, seen.length, 'none twice')
    t.same([...new Set(seen.map((c) => c.writer))].sort(), ['a', 'b'], 'each named with its writer')
    checkOrder(t, seen)
    const half = seen[per - 1] as PgChange
    const rest = (await take(A.watch({ allWriters: true, resumeToken: half.resumeToken }), per)) as PgChange[]
    t.same(rest.map(id), seen.slice(per).map(id), 'resumed from a token: the rest, exactly')
    const local = A.watch({ fromVersion: 0 })
    t.ok(((await take(local, 1))[0] as { writer?: string }).writer === undefined, 'a watch without allWriters is still its own log')
    await local.return?.()

    t.equal(await codeOf(() => A.watch({ allWriters: true, fromVersion: 3 })), 'INVALID_OPTIONS', 'fromVersion with allWriters: a version is one writer\'s')
    t.equal(await codeOf(() => A.watch({ resumeToken: start })), 'INVALID_OPTIONS', 'a token without allWriters')
    t.equal(await codeOf(() => A.watch({ allWriters: 1 } as never)), 'INVALID_OPTIONS', 'allWriters not a boolean')
    const level = await MemWAL.open({ dir: tmpDir(t, 'memwal-pgw-level-'), closeGraceMs: 1000 })
    t.teardown(() => level.close())
    t.equal(await codeOf(() => level.watch({ allWriters: true })), 'INVALID_OPTIONS', 'allWriters needs a backend several writers share')
    await A.close()
    t.same(await feed.next(), { done: true, value: undefined }, 'close() ends it')
  })

  t.test('filters, a watch from now, close() ending a waiting watch', async (t) => {
    const schema = newSchema()
    const A = await engine(t, schema, 'a')
    const W = backend(t, schema, 'watcher')
    await W.open()
    const start = await W.resumeTokenNow()
    await writeSome(A, 'a', 14)
    await A.flush()
    const mFeed = W.watch({ resumeToken: start, namespace: 'm' })
    t.teardown(() => mFeed.return?.())
    const m = await take(mFeed, 2)
    t.same(m.map((c) => c.key), ['b0', 'b7'], 'one namespace only')
    const pFeed = W.watch({ resumeToken: start, prefix: 'k1' })
    t.teardown(() => pFeed.return?.())
    const p = await take(pFeed, 5)
    t.same(p.map((c) => c.key), ['k1', 'k10', 'k11', 'k12', 'k13'], 'keys with a prefix')
    const waiting = W.watch()
    const pending = waiting.next()
    await W.close()
    t.same(await pending, { done: true, value: undefined }, 'close() ends a watch waiting for changes')
  })

  t.test('refusals: a forged token, a token of another schema, a field not understood; history pruned is HISTORY_PURGED', async (t) => {
    const schema = newSchema()
    const A = await engine(t, schema, 'a', { changeHistoryRecords: 10 })
    const W = backend(t, schema, 'watcher')
    await W.open()
    const other = backend(t, newSchema(), 'x')
    await other.open()
    const foreign = await other.resumeTokenNow()
    t.equal(await codeOf(() => W.watch({ resumeToken: 'mwpg1.' + Buffer.from('{"s":1}').toString('base64url') })), 'INVALID_OPTIONS', 'a forged token')
    t.equal(await codeOf(() => W.watch({ resumeToken: foreign })), 'INVALID_OPTIONS', 'a token of another schema')
    t.equal(await codeOf(() => W.watch({ since: 1 } as never)), 'INVALID_OPTIONS', 'an option not understood')
    t.equal(await codeOf(() => new PgBackend({ connectionString: PG_URL, writerId: 'a', watchPollMs: 0 })), 'INVALID_OPTIONS', 'a poll interval of 0')

    const start = await W.resumeTokenNow()
    for (let i = 0; i < 30; i++) await A.put(`k${i}`, i)
    await A.flush()
    const err = await W.watch({ resumeToken: start }).next().then(() => undefined, (e: unknown) => e)
    t.match(err, { code: 'HISTORY_PURGED', details: { writer: 'a' } }, 'history past the window: HISTORY_PURGED, naming the writer')
    const oldest = (err as { details: { oldestVersion: number } }).details.oldestVersion
    t.ok(oldest > 1 && oldest <= 21, `the oldest version left (${oldest}) is within the last 10 records`)
  })

  t.test('tables gone under a watch (schema dropped): next() rejects, typed, instead of polling a failure forever', async (t) => {
    const schema = newSchema()
    const W = backend(t, schema, 'watcher')
    await W.open()
    const feed = W.watch()
    t.teardown(() => feed.return?.())
    await dropSchema(schema)
    // Without the mend the feed logs a warning each poll and next() never settles: the guard turns that into a failure.
    const guard = new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 20 s'), 20_000).unref())
    const err = await Promise.race([feed.next().then(() => 'settled without an error', (e: unknown) => e), guard])
    t.match(err, { code: 'ENGINE_BACKEND_UNAVAILABLE', transient: false, details: { sqlState: '42P01' } }, 'a permanent server error ends the feed, with its SQLSTATE')
    if (typeof err === 'string') await feed.return?.()
    t.same(await feed.next(), { done: true, value: undefined }, 'and the feed is ended')
  })
}
