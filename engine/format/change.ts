import { hlcMs, opsOf, type WalRecord } from './record-codec.js'

/** One committed change, as `MemWAL.watch` and `followLog` give it. */
export interface Change {
  readonly type: 'put' | 'delete'
  /** Absent only on a delete written by memwal before namespaces (log format 1), which meant the key in every namespace. */
  readonly namespace?: string
  readonly key: string
  /** The LSN of the record that made the change (every operation of a batch has the batch's). */
  readonly version: number
  /** When it was written: ms since the epoch, from the record's stamp (0 for a record with none). */
  readonly time: number
  /** Puts: the value as written. */
  readonly value?: unknown
  readonly tags?: readonly string[]
  readonly expiresAt?: number
  /** Watches of every writer (`allWriters`, a PostgreSQL backend): the writer that applied it; `version` is that writer's LSN. */
  readonly writer?: string
  /** Watches of every writer: where a watch opened with it continues (just after this change). */
  readonly resumeToken?: string
}

/** Which changes a consumer wants: one namespace (exactly) or all, and keys with a prefix ('' for all). */
export interface ChangeFilter {
  readonly namespace: string | undefined
  readonly prefix: string
}

/** Whether a change of `namespace` and `key` passes `filter`; undefined namespace (a v1 delete: every namespace) passes any namespace. */
export function passes(filter: ChangeFilter, namespace: string | undefined, key: string): boolean {
  return (filter.namespace === undefined || namespace === undefined || namespace === filter.namespace) && key.startsWith(filter.prefix)
}

/** The changes record `lsn` makes that pass `filter`, in operation order. */
export function changesOf(lsn: number, record: WalRecord, filter: ChangeFilter): Change[] {
  const time = record.hlc !== undefined ? hlcMs(record.hlc) : 0
  const out: Change[] = []
  for (const op of opsOf(record)) {
    if (!passes(filter, op.namespace, op.key)) continue
    const base = { key: op.key, version: lsn, time, ...(op.namespace !== undefined ? { namespace: op.namespace } : {}) }
    out.push(
      op.type === 'put'
        ? { type: 'put', ...base, value: op.value, ...(op.tags !== undefined ? { tags: op.tags } : {}), ...(op.expiresAt !== undefined ? { expiresAt: op.expiresAt } : {}) }
        : { type: 'delete', ...base },
    )
  }
  return out
}
