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
import { MemWAL, type QueryOptions } from '../../engine/index.js'
import { ManualClock, SeededRandom } from '../../engine/testing.js'
import { compareCodePoints } from '../../engine/query/match.js'
import { SinkFaults } from '../support/faulty-sink.js'
import { tmpDir } from '../support/tmp-dir.js'

interface ModelEntry {
  readonly namespace: string
  readonly key: string
  readonly tags: readonly string[]
  readonly value: number
  readonly atMs: number
  readonly expiresAt?: number
}

const NAMESPACES = ['default', 'agents', 'agents/7', 'agents/7/s1', 'agentsx', 'agents-b', 'other']
const TAGS = ['a', 'b', 'c', 'd']
const KEYS = ['k0', 'k1', 'k2', 'k10', 'k11', 'm', 'm/1', 'z', '\u00e9', '\u{1f600}', '\uffff']

function pick<T>(r: SeededRandom, xs: readonly T[]): T {
  return xs[r.below(xs.length)] as T
}

function someTags(r: SeededRandom, max: number): string[] {
  return TAGS.filter(() => r.chance(max / TAGS.length / 2))
}

const id = (namespace: string, key: string): string => `${namespace}\u0000${key}`

function randomQuery(r: SeededRandom, clock: ManualClock, start: number, times: readonly number[]): QueryOptions {
  const q: Record<string, unknown> = {}
  if (r.chance(0.3)) q['namespace'] = pick(r, NAMESPACES)
  else if (r.chance(0.3)) q['namespacePrefix'] = pick(r, ['agents', 'agents/7', 'other', 'agents-b'])
  if (r.chance(0.2)) q['prefix'] = pick(r, ['k', 'k1', 'm', ''])
  if (r.chance(0.2)) q[pick(r, ['gt', 'gte'])] = pick(r, KEYS)
  if (r.chance(0.2)) q[pick(r, ['lt', 'lte'])] = pick(r, KEYS)
  if (r.chance(0.5)) q['tags'] = { ...(r.chance(0.7) ? { all: someTags(r, 2) } : {}), ...(r.chance(0.4) ? { any: someTags(r, 2) } : {}) }
  else if (r.chance(0.1)) q['tag'] = pick(r, TAGS)
  // Often exactly an entry's write time, so that the edges (since inclusive, until exclusive) are met.
  const span = clock.nowMs() - start + 1
  const time = (): number => (times.length > 0 && r.chance(0.7) ? pick(r, times) : start + r.below(span))
  if (r.chance(0.3)) q['since'] = time()
  if (r.chance(0.3)) q['until'] = r.chance(0.2) ? new Date(time()) : time()
  if (r.chance(0.3)) q['reverse'] = true
  return q as QueryOptions
}

function modelAnswer(model: ReadonlyMap<string, ModelEntry>, q: QueryOptions, nowMs: number): string[] {
  const all = [...(q.tags?.all ?? []), ...(q.tag !== undefined ? [q.tag] : [])]
  const any = q.tags?.any ?? []
  const ms = (v: number | Date | undefined): number | undefined => (v instanceof Date ? v.getTime() : v)
  const since = ms(q.since)
  const until = ms(q.until)
  const out = [...model.entries()].filter(([, e]) => {
    if (e.expiresAt !== undefined && e.expiresAt <= nowMs) return false
    if (q.namespace !== undefined && e.namespace !== q.namespace) return false
    if (q.namespacePrefix !== undefined && !(e.namespace === q.namespacePrefix || e.namespace.startsWith(`${q.namespacePrefix}/`))) return false
    const key = e.key
    if (q.prefix !== undefined && !key.startsWith(q.prefix)) return false
    if (q.gt !== undefined && compareCodePoints(key, q.gt) <= 0) return false
    if (q.gte !== undefined && compareCodePoints(key, q.gte) < 0) return false
    if (q.lt !== undefined && compareCodePoints(key, q.lt) >= 0) return false
    if (q.lte !== undefined && compareCodePoints(key, q.lte) > 0) return false
    if (!all.every((x) => e.tags.includes(x))) return false
    if (any.length > 0 && !any.some((x) => e.tags.includes(x))) return false
    if (since !== undefined && e.atMs < since) return false
    if (until !== undefined && e.atMs >= until) return false
    return true
  }).map(([k]) => k)
  out.sort(compareCodePoints)
  return q.reverse === true ? out.reverse() : out
}

async function pagesOf(db: MemWAL, q: QueryOptions, limit: number): Promise<string[]> {
  const ids: string[] = []
  let cursor: string | undefined
  for (let guard = 0; guard < 200; guard++) {
    const page = await db.queryPage({ ...q, limit, ...(cursor !== undefined ? { cursor } : {}) })
    ids.push(...page.entries.map((e) => id(e.namespace, e.key)))
    if (page.cursor === undefined) return ids
    cursor = page.cursor
  }
  throw new Error('paging did not end')
}

const seeds = process.env['MEMWAL_QUERY_SEED'] !== undefined ? [Number(process.env['MEMWAL_QUERY_SEED'])] : [1, 2, 3, 4]

for (const seed of seeds) {
  const replay = `(replay: MEMWAL_QUERY_SEED=${seed} npx tap --disable-coverage test/unit/query-model.test.ts)`
  t.test(`seed ${seed}: query, queryPage and count agree with the model (pending, applied, expired, reopened) ${replay}`, async (t) => {
    const dir = tmpDir(t)
    const r = new SeededRandom(seed)
    const clock = new ManualClock()
    const start = clock.nowMs()
    const faults = new SinkFaults({ targets: ['index'] })
    const opts = { dir, clock, random: new SeededRandom(seed + 1000), durability: 'none' as const, wrapSink: <S,>(s: S): S => faults.wrap(s as never) as S }
    let db = await MemWAL.open(opts)
    t.teardown(() => db.close())
    const model = new Map<string, ModelEntry>()
    let value = 0
    const write = async (): Promise<void> => {
      clock.advance(r.below(5) * 1000)
      const namespace = pick(r, NAMESPACES)
      const key = pick(r, KEYS)
      if (r.chance(0.15)) {
        await db.delete(key, { namespace })
        model.delete(id(namespace, key))
        return
      }
      const made = (r.chance(0.2) ? [key, pick(r, KEYS)] : [key]).map((k, i) => ({
        key: k, namespace: i === 0 ? namespace : pick(r, NAMESPACES), tags: someTags(r, 3), value: ++value,
        ...(r.chance(0.2) ? { ttlMs: 1000 + r.below(20) * 1000 } : {}),
      }))
      const now = clock.nowMs()
      if (made.length === 1) {
        const { key: k, value: v, ...o } = made[0] as (typeof made)[number]
        await db.put(k, v, o)
      } else {
        await db.batch(made.map(({ key: k, value: v, ...o }) => ({ type: 'put' as const, key: k, value: v, ...o })))
      }
      for (const m of made) model.set(id(m.namespace, m.key), { namespace: m.namespace, key: m.key, tags: [...new Set(m.tags)], value: m.value, atMs: now, ...(m.ttlMs !== undefined ? { expiresAt: now + m.ttlMs } : {}) })
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
