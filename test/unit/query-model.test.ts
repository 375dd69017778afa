/**
 * Queries against an in-memory model (issue 11 item 3): random puts (some
 * expiring), deletes and batches over several namespaces (a hierarchy, and
 * one that only starts like another), tags and keys, with the manual clock
 * moving between writes; then random queries (every criterion, reverse,
 * limits, pages through cursors) and counts, each compared with the model's
 * answer (identities in code-point order, namespace then key; nothing
 * expired). Asked while the index has applied nothing (writes pending), once
 * applied, after more writes and expiries, and after a reopen. Seeded: a
 * failure names its seed, and MEMWAL_QUERY_SEED=<seed> replays that run.
 */
import t from 'tap'
import { MemWAL } from '../../engine/index.js'
import { ManualClock, SeededRandom } from '../../engine/testing.js'
import { SinkFaults } from '../support/faulty-sink.js'
import { applyWrite, id, modelAnswer, modelWrite, pagesOf, randomQuery, randomWrite, type ModelEntry } from '../support/random-query.js'
import { tmpDir } from '../support/tmp-dir.js'

const seeds = process.env['MEMWAL_QUERY_SEED'] !== undefined ? [Number(process.env['MEMWAL_QUERY_SEED'])] : [1, 2, 3, 4]

for (const seed of seeds) {
  const replay = `(replay: MEMWAL_QUERY_SEED=${seed} npx tap --disable-coverage test/unit/query-model.test.ts)`
  t.test(`seed ${seed}: query, queryPage and count agree with the model (pending, applied, expired, reopened) ${replay}`, async (t) => {
    const dir = tmpDir(t)
    const r = new SeededRandom(seed)
    const clock = new ManualClock()
    const start = clock.nowMs()
    const faults = new SinkFaults({ targets: ['index'] })
    // The hung index apply must not time out on the manual clock (the writes below advance it by up to 160 s): a timed-out
    // apply is retried after a backoff timer on that clock, which nothing advances after release(), so flush() would wait
    // for ever whenever the applier happened to be asleep in that backoff at release (1 in 6 runs under load).
    const resilience = { applyTimeoutMs: 24 * 3_600_000 }
    const opts = { dir, clock, random: new SeededRandom(seed + 1000), durability: 'none' as const, resilience, wrapSink: <S,>(s: S): S => faults.wrap(s as never) as S }
    let db = await MemWAL.open(opts)
    t.teardown(() => db.close())
    const model = new Map<string, ModelEntry>()
    let value = 0
    const write = async (): Promise<void> => {
      const w = randomWrite(r, clock, () => ++value)
      await applyWrite(db, w)
      modelWrite(model, w, clock.nowMs())
    }
    const check = async (when: string): Promise<void> => {
      for (let i = 0; i < 25; i++) {
        const q = randomQuery(r, clock, start, [...model.values()].map((e) => e.atMs))
        const want = modelAnswer(model, q, clock.nowMs())
        const shown = `${when}: ${JSON.stringify(q)} ${replay}`
        const got = []
        for await (const e of db.query({ ...q, limit: 100_000 })) got.push(e)
        t.strictSame(got.map((e) => id(e.namespace, e.key)), want, `query ${shown}`)
        for (const e of got) t.equal(e.value, model.get(id(e.namespace, e.key))?.value, `${when}: value of ${e.namespace} ${e.key}`)
        t.strictSame(await pagesOf(db, q, 1 + r.below(3)), want, `pages of ${shown}`)
        t.equal(await db.count(q), want.length, `count ${shown}`)
      }
    }
    // The index applies nothing: every answer comes from the pending overlay over an index that lags.
    faults.hang()
    for (let i = 0; i < 40; i++) await write()
    await check('pending (the index holds nothing yet)')
    faults.release()
    await db.flush()
    await check('applied')
    for (let i = 0; i < 30; i++) await write()
    await check('some pending after more writes')
    clock.advance(10_000)
    await check('after some expired')
    await db.flush()
    await db.close()
    db = await MemWAL.open(opts)
    await check('after reopen')
  })
}

t.test('a cursor from another store, for another query, altered or forged is refused', async (t) => {
  const mk = async (seed: number): Promise<MemWAL> => {
    const db = await MemWAL.open({ dir: tmpDir(t), random: new SeededRandom(seed), durability: 'none' })
    t.teardown(() => db.close())
    for (const k of ['a', 'b', 'c']) await db.put(k, k, { namespace: 'n', tags: ['x'] })
    return db
  }
  const one = await mk(1)
  const two = await mk(2)
  const page = await one.queryPage({ namespace: 'n', limit: 1 })
  t.strictSame(page.entries.map((e) => e.key), ['a'])
  t.type(page.cursor, 'string')
  const cursor = page.cursor as string
  t.strictSame((await one.queryPage({ namespace: 'n', limit: 5, cursor })).entries.map((e) => e.key), ['b', 'c'], 'the same store continues')
  const last = await one.queryPage({ namespace: 'n', limit: 5, cursor })
  t.equal(last.cursor, undefined, 'the last page has no cursor')
  const code = async (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: { code?: string }) => e.code)
  t.equal(await code(two.queryPage({ namespace: 'n', limit: 1, cursor })), 'QUERY_INVALID_CURSOR', 'another store refuses it')
  t.equal(await code(one.queryPage({ namespace: 'n', tags: { all: ['x'] }, limit: 1, cursor })), 'QUERY_INVALID_CURSOR', 'another query refuses it')
  t.equal(await code(one.queryPage({ namespace: 'n', reverse: true, limit: 1, cursor })), 'QUERY_INVALID_CURSOR', 'the same query reversed refuses it')
  t.equal(await code(one.queryPage({ namespace: 'n', limit: 1, cursor: cursor.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) })), 'QUERY_INVALID_CURSOR', 'an altered cursor is refused')
  const body = Buffer.from(JSON.stringify([1, 'x', 'n\u0000b'])).toString('base64url')
  t.equal(await code(one.queryPage({ namespace: 'n', cursor: `${body}.${'A'.repeat(43)}` })), 'QUERY_INVALID_CURSOR', 'a forged cursor is refused')
  t.equal(await code(one.queryPage({ namespace: 'n', cursor: 'x'.repeat(9000) })), 'QUERY_INVALID_CURSOR', 'a huge cursor is refused')
  t.equal(await code((async () => { for await (const _ of one.query({ namespace: 'n', cursor: 'nonsense' })) break })()), 'QUERY_INVALID_CURSOR', 'query refuses it as queryPage does')
})
