import type { PendingLog } from '../apply/pending-log.js'
import { isExpired } from '../format/expiry-key.js'
import { compareCodePoints, splitIdentity } from '../format/identity.js'
import { keyInRange, namespaceMatches, tagsMatch, timeMatches } from './match.js'
import type { QuerySpec } from './query-spec.js'
import type { Entry } from '../read-path.js'

/** What a query takes from the pending overlay: the identities it overrides, and the pending puts it returns. */
export interface PendingOverlay {
  /**
   * Every pending identity the query could meet in a store (within its
   * range, namespaces and key range): what a store (the index, the backend)
   * says of it is superseded. The stores only give identities the query
   * admits, so the others need not be held.
   */
  readonly overridden: ReadonlySet<string>
  /** Pending identities whose latest version is a live put matching the query, in the query's order. */
  readonly hits: readonly string[]
}

/**
 * The pending overlay of one query, read once at its start (query-run.ts,
 * all-writers-run.ts): a pending put or delete overrides what any store holds
 * for its identity, as reads do. `within` narrows the hits further (the
 * query's identity range, its cursor). Every pending identity is looked at,
 * but only one the query's range, namespaces and key range admit has its op
 * read (a string test each; the op's read was most of a narrow query's cost
 * under a large backlog, issue 13). The op is read from the pending log's
 * shared decoded record (latestOp): a record is decoded once however many of
 * its ops are asked about.
 */
export function pendingOverlay(pending: PendingLog, spec: QuerySpec, nowMs: number, within: (id: string) => boolean): PendingOverlay {
  const overridden = new Set<string>()
  const hits: string[] = []
  for (const id of pending.keys()) {
    if (!within(id)) continue
    const { namespace, key } = splitIdentity(id)
    if (!namespaceMatches(spec, namespace) || !keyInRange(spec.key, key)) continue
    overridden.add(id)
    const latest = pending.latestOp(id)
    if (!latest) continue
    const { op, updatedAt } = latest
    if (op.type !== 'put') continue
    if (!isExpired(op.expiresAt, nowMs) && tagsMatch(spec, op.tags ?? []) && timeMatches(spec, updatedAt)) hits.push(id)
  }
  const order = spec.reverse ? -1 : 1
  hits.sort((a, b) => order * compareCodePoints(a, b))
  return { overridden, hits }
}

/**
 * The entries a query returns, at most `limit`: what a store found (in the
 * query's order, each with the read of its entry as it is now) merged with
 * the overlay's hits, the store's word on a pending identity left out. A
 * read that gives undefined (deleted, expired or changed since) is skipped.
 */
export async function* mergeOverlay(
  found: AsyncIterable<readonly [string, () => Promise<Entry | undefined>]>,
  overlay: PendingOverlay,
  reverse: boolean,
  limit: number,
  hit: (id: string) => Promise<Entry | undefined>,
): AsyncGenerator<Entry> {
  const { overridden, hits } = overlay
  const order = reverse ? -1 : 1
  let n = 0
  let i = 0
  for await (const [id, read] of found) {
    if (overridden.has(id)) continue
    while (i < hits.length && order * compareCodePoints(hits[i] as string, id) < 0) {
      const e = await hit(hits[i++] as string)
      if (!e) continue
      yield e
      if (++n >= limit) return
    }
    const e = await read()
    if (!e) continue
    yield e
    if (++n >= limit) return
  }
  while (i < hits.length) {
    const e = await hit(hits[i++] as string)
    if (!e) continue
    yield e
    if (++n >= limit) return
  }
}
