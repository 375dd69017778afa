/**
 * Queries against an in-memory model (issue 11 item 3): random puts, deletes
 * and batches on namespaces, tags and keys, with the manual clock moving
 * between writes, then random queries (every criterion, reverse, limits,
 * pages through cursors) and counts, each compared with the model's answer.
 * Asked while writes are still pending, after a flush (the index answers),
 * and after a reopen. Seeded: MEMWAL_QUERY_SEED replays one run.
 */
import t from 'tap'
import { MemWAL, type QueryOptions } from '../../engine/index.js'
import { ManualClock, SeededRandom } from '../../engine/testing.js'
import { compareCodePoints } from '../../engine/query/match.js'
import { tmpDir } from '../support/tmp-dir.js'

interface ModelEntry { namespace?: string; tags: string[]; value: number; atMs: number }

const NAMESPACES = ['agents', 'agents/7', 'agents/7/s1', 'agentsx', 'other']
const TAGS = ['a', 'b', 'c', 'd']
const KEYS = ['k0', 'k1', 'k2', 'k10', 'k11', 'm', 'm/1', 'z', '\u00e9', '\u{1f600}']

function pick<T>(r: SeededRandom, xs: readonly T[]): T {
  return xs[r.below(xs.length)] as T
}

function someTags(r: SeededRandom, max: number): string[] {
  return TAGS.filter(() => r.chance(max / TAGS.length / 2))
}

function randomQuery(r: SeededRandom, clock: ManualClock, start: number, times: readonly number[]): QueryOptions {
  const q: Record<string, unknown> = {}
  if (r.chance(0.3)) q['namespace'] = pick(r, NAMESPACES)
  else if (r.chance(0.2)) q['namespacePrefix'] = pick(r, ['agents', 'agents/7', 'other'])
  if (r.chance(0.2)) q['prefix'] = pick(r, ['k', 'k1', 'm', ''])
  if (r.chance(0.2)) q[pick(r, ['gt', 'gte'])] = pick(r, KEYS)
  if (r.chance(0.2)) q[pick(r, ['lt', 'lte'])] = pick(r, KEYS)
  if (r.chance(0.4)) q['tags'] = { ...(r.chance(0.7) ? { all: someTags(r, 2) } : {}), ...(r.chance(0.4) ? { any: someTags(r, 2) } : {}) }
  // Often exactly an entry's write time, so that the edges (since inclusive, until exclusive) are met.
  const span = clock.nowMs() - start + 1
  const time = (): number => (times.length > 0 && r.chance(0.7) ? pick(r, times) : start + r.below(span))
  if (r.chance(0.3)) q['since'] = time()
  if (r.chance(0.3)) q['until'] = time()
  if (r.chance(0.3)) q['reverse'] = true
  return q as QueryOptions
}

function modelAnswer(model: Map<string, ModelEntry>, q: QueryOptions): string[] {
  const tagsAll = [...(q.tags?.all ?? [])]
  const tagsAny = q.tags?.any ?? []
  const out = [...model.entries()].filter(([key, e]) => {
    if (q.namespace !== undefined && e.namespace !== q.namespace) return false
    if (q.namespacePrefix !== undefined && !(e.namespace === q.namespacePrefix || (e.namespace ?? '').startsWith(`${q.namespacePrefix}/`))) return false
    if (q.prefix !== undefined && !key.startsWith(q.prefix)) return false
    if (q.gt !== undefined && compareCodePoints(key, q.gt) <= 0) return false
    if (q.gte !== undefined && compareCodePoints(key, q.gte) < 0) return false
    if (q.lt !== undefined && compareCodePoints(key, q.lt) >= 0) return false
    if (q.lte !== undefined && compareCodePoints(key, q.lte) > 0) return false
    if (!tagsAll.every((x) => e.tags.includes(x))) return false
    if (tagsAny.length > 0 && !tagsAny.some((x) => e.tags.includes(x))) return false
    if (typeof q.since === 'number' && e.atMs < q.since) return false
    if (typeof q.until === 'number' && e.atMs >= q.until) return false
    return true
  }).map(([key]) => key)
  out.sort(compareCodePoints)
  return q.reverse === true ? out.reverse() : out
}

async function pagesOf(db: MemWAL, q: QueryOptions, limit: number): Promise<string[]> {
  const keys: string[] = []
  let cursor: string | undefined
  for (let guard = 0; guard < 100; guard++) {
    const page = await db.queryPage({ ...q, limit, ...(cursor !== undefined ? { cursor } : {}) })
    keys.push(...page.entries.map((e) => e.key))
    if (page.cursor === undefined) return keys
    cursor = page.cursor
  }
  throw new Error('paging did not end')
}

const seeds = process.env['MEMWAL_QUERY_SEED'] !== undefined ? [Number(process.env['MEMWAL_QUERY_SEED'])] : [1, 2, 3]

for (const seed of seeds) {
  t.test(`seed ${seed}: query, queryPage and count agree with the model (pending, applied, reopened)`, async (t) => {
    const dir = tmpDir(t)
    const r = new SeededRandom(seed)
    const clock = new ManualClock()
    const start = clock.nowMs()
    const opts = { dir, clock, random: new SeededRandom(seed + 1000), durability: 'none' as const }
    let db = await MemWAL.open(opts)
    t.teardown(() => db.close())
    const model = new Map<string, ModelEntry>()
    let value = 0
    const write = async (): Promise<void> => {
      clock.advance(r.below(5) * 1000)
      const key = pick(r, KEYS)
      if (r.chance(0.15)) {
        await db.delete(key)
        model.delete(key)
        return
      }
      const ops = r.chance(0.2) ? [key, pick(r, KEYS)] : [key]
      const made = ops.map((k) => ({ key: k, namespace: r.chance(0.9) ? pick(r, NAMESPACES) : undefined, tags: someTags(r, 3), value: ++value }))
      if (made.length === 1) {
        const m = made[0] as (typeof made)[number]
        await db.put(m.key, m.value, { ...(m.namespace !== undefined ? { namespace: m.namespace } : {}), tags: m.tags })
      } else {
        await db.batch(made.map((m) => ({ type: 'put' as const, key: m.key, value: m.value, ...(m.namespace !== undefined ? { namespace: m.namespace } : {}), tags: m.tags })))
      }
      for (const m of made) model.set(m.key, { ...(m.namespace !== undefined ? { namespace: m.namespace } : {}), tags: [...new Set(m.tags)], value: m.value, atMs: clock.nowMs() })
    }
    const check = async (when: string): Promise<void> => {
      for (let i = 0; i < 25; i++) {
        const q = randomQuery(r, clock, start, [...model.values()].map((e) => e.atMs))
        const want = modelAnswer(model, q)
        const got = []
        for await (const e of db.query(q)) got.push(e)
        t.strictSame(got.map((e) => e.key), want, `${when}: query ${JSON.stringify(q)}`)
        for (const e of got) t.equal(e.value, model.get(e.key)?.value, `${when}: value of ${e.key}`)
        t.strictSame(await pagesOf(db, q, 1 + r.below(3)), want, `${when}: pages of ${JSON.stringify(q)}`)
        const { reverse: _reverse, ...criteria } = q
        t.equal(await db.count(criteria), want.length, `${when}: count ${JSON.stringify(criteria)}`)
      }
    }
    for (let i = 0; i < 40; i++) await write()
    await check('pending or applied')
    await db.flush()
    await check('applied')
    for (let i = 0; i < 20; i++) await write()
    await check('some pending after more writes')
    await db.close()
    db = await MemWAL.open(opts)
    await check('after reopen')
  })
}

t.test('a cursor from another store, or for another query, is refused', async (t) => {
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
  const code = async (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: { code?: string }) => e.code)
  t.equal(await code(two.queryPage({ namespace: 'n', limit: 1, cursor })), 'QUERY_INVALID_CURSOR', 'another store refuses it')
  t.equal(await code(one.queryPage({ namespace: 'n', tag: 'x', limit: 1, cursor })), 'QUERY_INVALID_CURSOR', 'another query refuses it')
  t.equal(await code(one.queryPage({ namespace: 'n', limit: 1, cursor: cursor.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) })), 'QUERY_INVALID_CURSOR', 'an altered cursor is refused')
})
