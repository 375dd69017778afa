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

/** The changes record `lsn` makes that pass `filter`, in operation order, appended to `out`. */
export function changesOf(lsn: number, record: WalRecord, filter: ChangeFilter, out: Change[] = []): Change[] {
  const time = record.hlc !== undefined ? hlcMs(record.hlc) : 0
  for (const op of opsOf(record)) {
    if (!passes(filter, op.namespace, op.key)) continue
    // Built field by field, not by spreading a base: a change costs one object (watch.ts hands out each one).
    const c: { -readonly [K in keyof Change]: Change[K] } = { type: op.type === 'put' ? 'put' : 'delete', key: op.key, version: lsn, time }
    if (op.namespace !== undefined) c.namespace = op.namespace
    if (op.type === 'put') {
      c.value = op.value
      if (op.tags !== undefined) c.tags = op.tags
      if (op.expiresAt !== undefined) c.expiresAt = op.expiresAt
    }
    out.push(c)
  }
  return out
}
