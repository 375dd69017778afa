import type { StoredEntry } from './sink.js'

/**
 * What a backend shared by several writers (PgBackend: pg/pg-query.ts)
 * answers for MemWAL.query and count, so that they see every writer's
 * entries, not only those this process's local index holds.
 *
 * The criteria are those of a checked query (engine/query/query-spec.ts's
 * QuerySpec is one of them; sinks sit below the query layer and cannot
 * import it). The engine merges this process's pending overlay in
 * (engine/query/all-writers-run.ts): the backend answers only for what it
 * holds.
 */
export interface EntryCriteria {
  readonly namespace?: string
  /** That namespace and every one below it (`a` matches `a` and `a/b`, not `ab`). */
  readonly namespacePrefix?: string
  readonly key: {
    readonly prefix?: string
    readonly gt?: string
    readonly gte?: string
    readonly lt?: string
    readonly lte?: string
  }
  readonly tagsAll: readonly string[]
  readonly tagsAny: readonly string[]
  /** Write time, ms, inclusive. */
  readonly since?: number
  /** Write time, ms, exclusive. */
  readonly until?: number
  /** Descending identity order. */
  readonly reverse: boolean
}

export interface AllWritersPage {
  /** Live entries, in identity order (namespace, then key, by code point; reversed with `reverse`). */
  readonly entries: readonly StoredEntry[]
  /** False when nothing follows the last entry. */
  readonly more: boolean
}

export interface AllWritersQuery {
  /**
   * Up to `limit` (the backend may return fewer, saying `more`) of the live
   * entries of every writer that match `c`, not expired at `nowMs`, strictly
   * after identity `after` in the query's order.
   */
  page(c: EntryCriteria, at: { readonly after?: string; readonly nowMs: number; readonly limit: number }): Promise<AllWritersPage>
  /** How many live entries of every writer match `c`, not expired at `nowMs`, leaving out the identities `excluded`. */
  count(c: EntryCriteria, at: { readonly nowMs: number; readonly excluded: readonly string[] }): Promise<number>
}
