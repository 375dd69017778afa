import { compareCodePoints } from '../format/identity.js'
import type { KeyRange, QuerySpec } from './query-spec.js'

/** What a query looks at in an entry. `updatedAt` is the write time (ms) from the record's clock stamp, when known. */
export interface QueryableEntry {
  readonly namespace?: string
  readonly key: string
  readonly tags?: readonly string[]
  readonly updatedAt?: number
}

export { compareCodePoints }

export function namespaceMatches(spec: Pick<QuerySpec, 'namespace' | 'namespacePrefix'>, namespace: string | undefined): boolean {
  if (spec.namespace !== undefined) return namespace === spec.namespace
  if (spec.namespacePrefix !== undefined) return namespace !== undefined && (namespace === spec.namespacePrefix || namespace.startsWith(`${spec.namespacePrefix}/`))
  return true
}

export function keyInRange(r: KeyRange, key: string): boolean {
  if (r.prefix !== undefined && !key.startsWith(r.prefix)) return false
  if (r.gt !== undefined && compareCodePoints(key, r.gt) <= 0) return false
  if (r.gte !== undefined && compareCodePoints(key, r.gte) < 0) return false
  if (r.lt !== undefined && compareCodePoints(key, r.lt) >= 0) return false
  if (r.lte !== undefined && compareCodePoints(key, r.lte) > 0) return false
  return true
}

export function tagsMatch(spec: Pick<QuerySpec, 'tagsAll' | 'tagsAny'>, tags: readonly string[] | undefined): boolean {
  const has = tags ?? []
  return spec.tagsAll.every((t) => has.includes(t)) && (spec.tagsAny.length === 0 || spec.tagsAny.some((t) => has.includes(t)))
}

/** Whether the spec bounds the write time (then an entry's time must be known to match). */
export function boundsTime(spec: Pick<QuerySpec, 'since' | 'until'>): boolean {
  return spec.since !== undefined || spec.until !== undefined
}

export function timeMatches(spec: Pick<QuerySpec, 'since' | 'until'>, updatedAt: number | undefined): boolean {
  if (!boundsTime(spec)) return true
  if (updatedAt === undefined) return false
  return (spec.since === undefined || updatedAt >= spec.since) && (spec.until === undefined || updatedAt < spec.until)
}

/** Every criterion of the spec, on one entry (the cursor and the limit are the executor's). */
export function entryMatches(spec: QuerySpec, e: QueryableEntry): boolean {
  return namespaceMatches(spec, e.namespace) && keyInRange(spec.key, e.key) && tagsMatch(spec, e.tags) && timeMatches(spec, e.updatedAt)
}
