/**
 * Random writes and queries over a small world of namespaces (a hierarchy,
 * and ones that only start like another), tags and keys (code-point order:
 * U+00E9, U+FFFF and an astral character), with the in-memory model's
 * answer: what query-model.test.ts checks the engine against, and what
 * pg-query.test.ts asks of the PostgreSQL path and the local one alike.
 */
import type { MemWAL, QueryOptions } from '../../engine/index.js'
import type { ManualClock, SeededRandom } from '../../engine/testing.js'
import { compareCodePoints } from '../../engine/query/match.js'

export interface ModelEntry {
  readonly namespace: string
  readonly key: string
  readonly tags: readonly string[]
  readonly value: number
  readonly atMs: number
  readonly expiresAt?: number
}

export const NAMESPACES = ['default', 'agents', 'agents/7', 'agents/7/s1', 'agentsx', 'agents-b', 'other']
export const TAGS = ['a', 'b', 'c', 'd']
export const KEYS = ['k0', 'k1', 'k2', 'k10', 'k11', 'm', 'm/1', 'z', '\u00e9', '\u{1f600}', '\uffff']

export function pick<T>(r: SeededRandom, xs: readonly T[]): T {
  return xs[r.below(xs.length)] as T
}

function someTags(r: SeededRandom, max: number): string[] {
  return TAGS.filter(() => r.chance(max / TAGS.length / 2))
}

export const id = (namespace: string, key: string): string => `${namespace}\u0000${key}`

/** One write: a delete, or one put or a batch of puts (some expiring). */
export type RandomWrite =
  | { readonly type: 'del'; readonly namespace: string; readonly key: string }
  | { readonly type: 'put'; readonly made: readonly { readonly key: string; readonly namespace: string; readonly tags: string[]; readonly value: number; readonly ttlMs?: number }[] }

/** A write, after the clock moves by 0 to 4 s; `value` numbers each put. */
export function randomWrite(r: SeededRandom, clock: ManualClock, value: () => number): RandomWrite {
  clock.advance(r.below(5) * 1000)
  const namespace = pick(r, NAMESPACES)
  const key = pick(r, KEYS)
  if (r.chance(0.15)) return { type: 'del', namespace, key }
  const made = (r.chance(0.2) ? [key, pick(r, KEYS)] : [key]).map((k, i) => ({
    key: k, namespace: i === 0 ? namespace : pick(r, NAMESPACES), tags: someTags(r, 3), value: value(),
    ...(r.chance(0.2) ? { ttlMs: 1000 + r.below(20) * 1000 } : {}),
  }))
  return { type: 'put', made }
}

export async function applyWrite(db: MemWAL, w: RandomWrite): Promise<void> {
  if (w.type === 'del') {
    await db.delete(w.key, { namespace: w.namespace })
  } else if (w.made.length === 1) {
    const { key: k, value: v, ...o } = w.made[0] as (typeof w.made)[number]
    await db.put(k, v, o)
  } else {
    await db.batch(w.made.map(({ key: k, value: v, ...o }) => ({ type: 'put' as const, key: k, value: v, ...o })))
  }
}

export function modelWrite(model: Map<string, ModelEntry>, w: RandomWrite, now: number): void {
  if (w.type === 'del') {
    model.delete(id(w.namespace, w.key))
    return
  }
  for (const m of w.made) model.set(id(m.namespace, m.key), { namespace: m.namespace, key: m.key, tags: [...new Set(m.tags)], value: m.value, atMs: now, ...(m.ttlMs !== undefined ? { expiresAt: now + m.ttlMs } : {}) })
}

/** Every criterion, some of them at random; `bounds`: the key bounds to draw from (KEYS by default). */
export function randomQuery(r: SeededRandom, clock: ManualClock, start: number, times: readonly number[], bounds: readonly string[] = KEYS): QueryOptions {
  const q: Record<string, unknown> = {}
  if (r.chance(0.3)) q['namespace'] = pick(r, NAMESPACES)
  else if (r.chance(0.3)) q['namespacePrefix'] = pick(r, ['agents', 'agents/7', 'other', 'agents-b'])
  if (r.chance(0.2)) q['prefix'] = pick(r, ['k', 'k1', 'm', ''])
  if (r.chance(0.2)) q[pick(r, ['gt', 'gte'])] = pick(r, bounds)
  if (r.chance(0.2)) q[pick(r, ['lt', 'lte'])] = pick(r, bounds)
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

export function modelAnswer(model: ReadonlyMap<string, ModelEntry>, q: QueryOptions, nowMs: number): string[] {
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

/** The identities of every page of `q`, `limit` a page, followed through the cursors. */
export async function pagesOf(db: MemWAL, q: QueryOptions, limit: number): Promise<string[]> {
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
