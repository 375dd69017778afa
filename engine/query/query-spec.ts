import { MemwalError } from '../errors.js'
import { limits } from '../limits.js'
import { checkLabel, invalidValue, type Limits } from '../validate.js'

/**
 * The query language, as callers write it (README, "Queries"). Every field is
 * optional; criteria given together must all hold.
 *
 * - `namespace` (exact) or `namespacePrefix` (that namespace and every
 *   namespace below it: `a` matches `a` and `a/b`, not `ab`);
 * - `prefix` (key prefix) and a key range `gt`/`gte`, `lt`/`lte`;
 * - `tags: { all, any }`: every tag of `all`, at least one of `any`;
 *   `tag` is the deprecated alias of `tags: { all: [tag] }`;
 * - `since` (inclusive) and `until` (exclusive): write time, ms since the
 *   epoch (or a Date), from the record's clock stamp;
 * - `reverse`, `limit`, and `cursor` (from a page: continue after it).
 */
export interface QueryOptions {
  readonly namespace?: string
  readonly namespacePrefix?: string
  readonly prefix?: string
  readonly gt?: string
  readonly gte?: string
  readonly lt?: string
  readonly lte?: string
  readonly tags?: { readonly all?: readonly string[]; readonly any?: readonly string[] }
  /** @deprecated use `tags: { all: [tag] }`. */
  readonly tag?: string
  readonly since?: number | Date
  readonly until?: number | Date
  readonly reverse?: boolean
  /** At most this many results (default 1,000; at most 100,000). */
  readonly limit?: number
  readonly cursor?: string
}

/** A query checked and normalised once: what the planner and the matcher read. */
export interface QuerySpec {
  readonly namespace?: string
  readonly namespacePrefix?: string
  readonly key: KeyRange
  /** Sorted, distinct. */
  readonly tagsAll: readonly string[]
  readonly tagsAny: readonly string[]
  /** ms, inclusive. */
  readonly since?: number
  /** ms, exclusive. */
  readonly until?: number
  readonly reverse: boolean
  readonly limit: number
  readonly cursor?: string
}

export interface KeyRange {
  readonly prefix?: string
  readonly gt?: string
  readonly gte?: string
  readonly lt?: string
  readonly lte?: string
}

const FIELDS: ReadonlySet<string> = new Set(['namespace', 'namespacePrefix', 'prefix', 'gt', 'gte', 'lt', 'lte', 'tags', 'tag', 'since', 'until', 'reverse', 'limit', 'cursor'])
const TAG_FIELDS: ReadonlySet<string> = new Set(['all', 'any'])
/** Write-time bounds: ms since the epoch, up to the largest instant a Date holds (as expiresAt). */
const TIME_MS_MAX = limits.expiresAtMax

/**
 * Checks a query: an unknown field, a wrong type or a number out of range is
 * INVALID_OPTIONS naming the field; a namespace or tag that could never be
 * stored (empty, NUL, over labelBytesMax) is ENGINE_INVALID_VALUE, as `put`
 * refuses it. Nothing is ignored.
 */
export function parseQuery(q: unknown, l: Limits): QuerySpec {
  if (q === undefined) q = {}
  if (typeof q !== 'object' || q === null || Array.isArray(q)) throw bad('query', 'must be an object', q)
  const o = q as Record<string, unknown>
  for (const field of Object.keys(o)) if (!FIELDS.has(field)) throw refuse(field, `query field ${JSON.stringify(field)} is not understood (known: ${[...FIELDS].join(', ')})`)
  const at = (f: string): unknown => (Object.hasOwn(o, f) ? o[f] : undefined)
  if (at('namespace') !== undefined && at('namespacePrefix') !== undefined) throw refuse('namespacePrefix', 'query: give namespace or namespacePrefix, not both')
  if (at('gt') !== undefined && at('gte') !== undefined) throw refuse('gte', 'query: give gt or gte, not both')
  if (at('lt') !== undefined && at('lte') !== undefined) throw refuse('lte', 'query: give lt or lte, not both')
  const namespace = label('namespace', at('namespace'), l)
  const namespacePrefix = label('namespacePrefix', at('namespacePrefix'), l)
  const key: KeyRange = {}
  for (const f of ['prefix', 'gt', 'gte', 'lt', 'lte'] as const) {
    const v = at(f)
    if (v === undefined) continue
    if (typeof v !== 'string') throw bad(f, 'must be a string', v)
    if (Buffer.byteLength(v, 'utf8') > l.keyBytesMax) throw bad(f, `must be at most keyBytesMax ${l.keyBytesMax} bytes`, `${v.length} characters`)
    // No key holds a lone surrogate (put refuses it), and the index's UTF-8 order has no place for one.
    if (!v.isWellFormed()) throw invalidValue(`${f} is not well-formed UTF-16 (lone surrogate)`, undefined, undefined, f)
    ;(key as Record<string, string>)[f] = v
  }
  const { all, any } = tagsOf(at('tags'), at('tag'), l)
  const since = time('since', at('since'))
  const until = time('until', at('until'))
  const reverse = at('reverse')
  if (reverse !== undefined && typeof reverse !== 'boolean') throw bad('reverse', 'must be true or false', reverse)
  const limit = at('limit') ?? limits.queryResultsDefault
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > limits.queryResultsMax) throw bad('limit', `must be an integer in [1, ${limits.queryResultsMax}]`, limit)
  const cursor = at('cursor')
  if (cursor !== undefined && typeof cursor !== 'string') throw bad('cursor', 'must be the string a page returned', cursor)
  return {
    ...(namespace !== undefined ? { namespace } : {}),
    ...(namespacePrefix !== undefined ? { namespacePrefix } : {}),
    key, tagsAll: all, tagsAny: any,
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
    reverse: reverse === true, limit,
    ...(cursor !== undefined ? { cursor } : {}),
  }
}

/**
 * What a cursor is bound to: every criterion and the direction, not the
 * limit (a caller may change page sizes) nor the cursor itself. Canonical:
 * two specs that select the same entries in the same order give the same
 * string.
 */
export function queryFingerprint(s: QuerySpec): string {
  return JSON.stringify([s.namespace ?? null, s.namespacePrefix ?? null, s.key.prefix ?? null, s.key.gt ?? null, s.key.gte ?? null, s.key.lt ?? null, s.key.lte ?? null, s.tagsAll, s.tagsAny, s.since ?? null, s.until ?? null, s.reverse])
}

function tagsOf(tags: unknown, tag: unknown, l: Limits): { all: string[]; any: string[] } {
  const all = new Set<string>()
  const any = new Set<string>()
  if (tag !== undefined) all.add(label('tag', tag, l) as string)
  if (tags !== undefined) {
    if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) throw bad('tags', 'must be an object { all?: string[], any?: string[] }', tags)
    const t = tags as Record<string, unknown>
    for (const f of Object.keys(t)) if (!TAG_FIELDS.has(f)) throw refuse(`tags.${f}`, `query field ${JSON.stringify(`tags.${f}`)} is not understood (known: tags.all, tags.any)`)
    for (const [f, into] of [['all', all], ['any', any]] as const) {
      const list = Object.hasOwn(t, f) ? t[f] : undefined
      if (list === undefined) continue
      if (!Array.isArray(list)) throw bad(`tags.${f}`, 'must be an array of strings', list)
      if (list.length > l.tagsMax) throw bad(`tags.${f}`, `must hold at most tagsMax ${l.tagsMax} tags`, `${list.length} tags`)
      list.forEach((v: unknown, i) => into.add(label(`tags.${f}[${i}]`, v, l) as string))
    }
  }
  return { all: [...all].sort(), any: [...any].sort() }
}

function label(field: string, v: unknown, l: Limits): string | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'string') throw bad(field, 'must be a string', v)
  return checkLabel(field, v, l)
}

function time(field: string, v: unknown): number | undefined {
  if (v === undefined) return undefined
  const ms = v instanceof Date ? v.getTime() : v
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0 || ms > TIME_MS_MAX) throw bad(field, `must be ms since the epoch (an integer in [0, ${TIME_MS_MAX}]) or a valid Date`, v)
  return ms
}

/** INVALID_OPTIONS, with the field in `details.field` as well as in the message. */
function refuse(field: string, message: string): MemwalError {
  return new MemwalError('INVALID_OPTIONS', message, { details: { field } })
}

function bad(field: string, must: string, got: unknown): MemwalError {
  const shown = typeof got === 'string' ? JSON.stringify(got.length > 40 ? `${got.slice(0, 40)}...` : got) : typeof got === 'object' ? (got === null ? 'null' : Array.isArray(got) ? 'an array' : 'an object') : String(got)
  return refuse(field, `query field ${JSON.stringify(field)} ${must}, not ${shown}`)
}
