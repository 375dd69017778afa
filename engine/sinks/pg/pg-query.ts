import { ID_SEP, prefixEnd, splitIdentity } from '../../format/identity.js'
import type { AllWritersPage, AllWritersQuery, EntryCriteria } from '../all-writers-query.js'
import type { StoredEntry } from '../sink.js'
import type { PgConnections } from './pg-pool.js'
import { ROW, type EntryRow, type Tables } from './pg-schema.js'

/**
 * MemWAL.query and count over every writer's rows (all-writers-query.ts):
 * a checked query's criteria as one SELECT over `entries`, the engine
 * merging its pending overlay in.
 *
 * - Order: `ORDER BY namespace, key` (both COLLATE "C": UTF-8 bytes, which
 *   is code-point order, the engine's identity order), DESC with `reverse`.
 *   A page continues after the last identity by a row comparison on
 *   (namespace, key), which the primary key's btree answers as a range.
 * - Namespace, namespace prefix (`p`, or from `p/` up to the end of `p/`),
 *   key prefix and key bounds are ranges on the primary key; tags are
 *   `@>` (all) and `&&` (any) on the GIN index of live rows; write time is
 *   `updated_at` (the index on (namespace, updated_at) of live rows);
 *   expiry is judged by the caller's clock (`expires_at > now`).
 * - Tombstones (`deleted`) are never returned, as `get` never returns them.
 *
 * PostgreSQL text holds no NUL, so no stored key does, while a query's key
 * bound or a cursor's position (a pending key) may: such a bound is
 * rewritten to the NUL-free string just before it (`nulFree`), which the same
 * stored keys pass, and a key prefix holding a NUL matches nothing.
 */
export interface PgQueryHost {
  readonly conn: PgConnections
  readonly t: Tables
  /** Rows per statement at most (PgBackendOptions.pageRows). */
  readonly pageRows: number
  readonly entryOf: (row: EntryRow) => StoredEntry
}

export class PgAllWritersQuery implements AllWritersQuery {
  constructor(private readonly h: PgQueryHost) {}

  async page(c: EntryCriteria, at: { readonly after?: string; readonly nowMs: number; readonly limit: number }): Promise<AllWritersPage> {
    const q = new Statement()
    const where = conditions(c, at.nowMs, q)
    if (at.after !== undefined) {
      const { namespace, key } = splitIdentity(at.after)
      const [op, k] = nulFree(c.reverse ? '<' : '>', key)
      where.push(`(namespace, key) ${op} (${q.param(namespace)}, ${q.param(k)})`)
    }
    const n = Math.min(at.limit, this.h.pageRows)
    const dir = c.reverse ? 'DESC' : 'ASC'
    const r = await this.h.conn.query<EntryRow>(
      `SELECT ${ROW} FROM ${this.h.t.entries} WHERE ${where.join(' AND ')} ORDER BY namespace ${dir}, key ${dir} LIMIT ${q.param(n)}`,
      q.params,
    )
    return { entries: r.rows.map(this.h.entryOf), more: r.rows.length === n }
  }

  async count(c: EntryCriteria, at: { readonly nowMs: number; readonly excluded: readonly string[] }): Promise<number> {
    const q = new Statement()
    const where = conditions(c, at.nowMs, q)
    // A key with a NUL is never a row (text cannot hold it): it has nothing to leave out, and could not be a parameter.
    const out = at.excluded.filter((id) => id.indexOf(ID_SEP) === id.lastIndexOf(ID_SEP)).map(splitIdentity)
    if (out.length > 0) {
      where.push(`NOT EXISTS (SELECT 1 FROM unnest(${q.param(out.map((x) => x.namespace))}::text[], ${q.param(out.map((x) => x.key))}::text[]) AS x(namespace, key)
        WHERE x.namespace = e.namespace AND x.key = e.key)`)
    }
    const r = await this.h.conn.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.h.t.entries} AS e WHERE ${where.join(' AND ')}`, q.params)
    return Number(r.rows[0]?.n ?? 0)
  }
}

/** A statement's parameters, numbered as they are added. */
class Statement {
  readonly params: unknown[] = []
  param(v: unknown): string {
    return `$${this.params.push(v)}`
  }
}

type Comparison = '<' | '<=' | '>' | '>='

/**
 * The criteria as conditions on live, unexpired rows. Key bounds are given
 * to SQL as they are (AND-ed, the tightest one wins), not merged.
 */
function conditions(c: EntryCriteria, nowMs: number, q: Statement): string[] {
  const where = ['NOT deleted', `(expires_at IS NULL OR expires_at > ${q.param(nowMs)})`]
  if (c.namespace !== undefined) where.push(`namespace = ${q.param(c.namespace)}`)
  else if (c.namespacePrefix !== undefined) {
    const below = `${c.namespacePrefix}/`
    where.push(`(namespace = ${q.param(c.namespacePrefix)} OR (namespace >= ${q.param(below)} AND namespace < ${q.param(prefixEnd(below))}))`)
  }
  const k = c.key
  if (k.prefix !== undefined && k.prefix !== '') {
    // The conditions so far keep their parameters: dropping them would leave parameters no placeholder names.
    if (k.prefix.includes('\u0000')) {
      where.push('false')
      return where
    }
    where.push(`key >= ${q.param(k.prefix)}`)
    const end = prefixEnd(k.prefix)
    if (end !== undefined) where.push(`key < ${q.param(end)}`)
  }
  for (const [op, bound] of [['>', k.gt], ['>=', k.gte], ['<', k.lt], ['<=', k.lte]] as const) {
    if (bound === undefined) continue
    const [o, b] = nulFree(op, bound)
    where.push(`key ${o} ${q.param(b)}`)
  }
  if (c.tagsAll.length > 0) where.push(`tags @> ${q.param(c.tagsAll)}::text[]`)
  if (c.tagsAny.length > 0) where.push(`tags && ${q.param(c.tagsAny)}::text[]`)
  if (c.since !== undefined) where.push(`updated_at >= ${q.param(c.since)}`)
  if (c.until !== undefined) where.push(`updated_at < ${q.param(c.until)}`)
  return where
}

/**
 * `x op s` for strings x with no NUL, as a comparison with a NUL-free
 * string. With `u` the part of `s` before its first NUL, every NUL-free x is
 * either at most u (then below s) or above u (then above s, since s starts
 * with u and goes on with the smallest character): x < s and x <= s are
 * x <= u; x > s and x >= s are x > u.
 */
export function nulFree(op: Comparison, s: string): [Comparison, string] {
  const cut = s.indexOf('\u0000')
  if (cut < 0) return [op, s]
  const u = s.slice(0, cut)
  return op === '<' || op === '<=' ? ['<=', u] : ['>', u]
}
