import type { PendingLog } from '../apply/pending-log.js'
import { isExpired } from '../format/expiry-key.js'
import { compareCodePoints, identityOf, splitIdentity } from '../format/identity.js'
import type { AllWritersQuery } from '../sinks/all-writers-query.js'
import type { StoredEntry } from '../sinks/sink.js'
import type { Entry } from '../read-path.js'
import type { CursorSigner } from './cursor.js'
import { entryMatches, keyInRange, namespaceMatches } from './match.js'
import { mergeOverlay, pendingOverlay } from './pending-overlay.js'
import { queryFingerprint, type QuerySpec } from './query-spec.js'

export interface AllWritersRunParts {
  /** The backend's answer over every writer's entries (PgBackend: pg-query.ts). */
  readonly backend: AllWritersQuery
  /** A backend read through its applier's breaker and timeout: a failure is ENGINE_BACKEND_UNAVAILABLE, counted toward its health. */
  readonly read: <T>(fn: () => Promise<T>) => Promise<T>
  readonly pending: PendingLog
  /** The entry as a read returns it now (pending first, then the cache, then the backend), undefined when absent or expired. */
  readonly entry: (id: string) => Promise<Entry | undefined>
  /** A backend row as an entry. */
  readonly entryOf: (e: StoredEntry) => Entry
  readonly nowMs: () => number
  readonly signer: CursorSigner
}

/**
 * Runs one checked query over a backend that several writers share
 * (MemWAL.query, queryPage and count with PgBackend): the backend answers
 * for every writer's entries, in the query's order, a page at a time; this
 * process's pending overlay (acknowledged, not yet applied) is merged in, as
 * query-run.ts merges it with the local index: a pending put or delete
 * overrides the backend's row for its identity. Same order (identity order by
 * code point, reversed with `reverse`), limit and cursor as the local path
 * (the cursor holds the last identity returned, signed by this store).
 */
export class AllWritersRun {
  private readonly fingerprint: string
  private readonly after: string | undefined

  constructor(private readonly p: AllWritersRunParts, private readonly spec: QuerySpec) {
    this.fingerprint = queryFingerprint(spec)
    this.after = spec.cursor !== undefined ? p.signer.open(this.fingerprint, spec.cursor) : undefined
  }

  /** A cursor that continues this query after identity `id`. */
  cursorAfter(id: string): string {
    return this.p.signer.make(this.fingerprint, id)
  }

  /** Matching entries, in order, at most `limit`. */
  async *entries(limit: number): AsyncGenerator<Entry> {
    const after = this.after
    const order = this.spec.reverse ? -1 : 1
    const overlay = pendingOverlay(this.p.pending, this.spec, this.p.nowMs(), (id) => after === undefined || order * compareCodePoints(id, after) > 0)
    yield* mergeOverlay(this.rows(limit), overlay, this.spec.reverse, limit, (id) => this.entry(id))
  }

  /**
   * The backend's matching rows after the cursor, a page at a time, each
   * with the read of its entry. A page asks for `limit` rows: the rows of
   * pending identities, left out, may call for another.
   */
  private async *rows(limit: number): AsyncGenerator<readonly [string, () => Promise<Entry | undefined>]> {
    let after = this.after
    for (let more = true; more; ) {
      const page = await this.p.read(() => this.p.backend.page(this.spec, { ...(after !== undefined ? { after } : {}), nowMs: this.p.nowMs(), limit }))
      more = page.more && page.entries.length > 0
      for (const row of page.entries) {
        after = identityOf(row.namespace, row.key)
        const id = after
        yield [id, () => this.current(id, row)]
      }
    }
  }

  /** How many entries match: the backend counts its rows but the pending identities, the overlay adds its hits. No value is read. */
  async count(): Promise<number> {
    const { overridden, hits } = pendingOverlay(this.p.pending, this.spec, this.p.nowMs(), () => true)
    // Only the pending identities the query's namespace and key criteria admit can be among the rows counted.
    const excluded = [...overridden].filter((id) => {
      const { namespace, key } = splitIdentity(id)
      return namespaceMatches(this.spec, namespace) && keyInRange(this.spec.key, key)
    })
    return hits.length + (await this.p.read(() => this.p.backend.count(this.spec, { nowMs: this.p.nowMs(), excluded })))
  }

  /** The entry as it is now, if it still matches (a write may have landed since the overlay was read). */
  private async entry(id: string): Promise<Entry | undefined> {
    const e = await this.p.entry(id)
    return e && entryMatches(this.spec, e) ? e : undefined
  }

  /** A backend row, unless this process has written the identity since the overlay was read (then its pending version). */
  private async current(id: string, row: StoredEntry): Promise<Entry | undefined> {
    if (this.p.pending.latest(id) !== undefined) return this.entry(id)
    const e = this.p.entryOf(row)
    return isExpired(e.expiresAt, this.p.nowMs()) || !entryMatches(this.spec, e) ? undefined : e
  }
}
