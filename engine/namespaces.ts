import type { PendingLog } from './apply/pending-log.js'
import { InvalidOptionsError } from './errors.js'
import { splitIdentity } from './format/identity.js'
import { limits } from './limits.js'
import { compareCodePoints } from './query/match.js'
import { isUnder, type IndexSink } from './sinks/index-sink.js'
import { checkFields, checkNamespace, type Limits } from './validate.js'

export interface NamespaceListOptions {
  /** Only this namespace and those under it (`prefix/...`). */
  readonly prefix?: string
  /** At most this many namespaces (default 1,000; at most 100,000). */
  readonly limit?: number
}

export interface NamespaceCount {
  readonly namespace: string
  /** Entries in it now, pending writes included. */
  readonly entries: number
}

const FIELDS = { prefix: 'string', limit: 'integer' } as const

/**
 * The namespaces that hold entries, with how many, in namespace order: each
 * identity with a pending write counts if that write is a put, every other
 * one as the index has it (one keys-only pass over the range, from a snapshot
 * taken in the same tick as the pending writes are read, so an apply landing
 * meanwhile is counted once), so a write shows at once, as reads see it.
 * Namespaces with none are not listed.
 */
export async function listNamespaces(index: IndexSink, pending: PendingLog, config: Limits, options: NamespaceListOptions | undefined): Promise<NamespaceCount[]> {
  const o = checkFields<NamespaceListOptions>('listNamespaces options', options, FIELDS)
  const prefix = o.prefix === undefined ? undefined : checkNamespace(o.prefix, config, 'prefix')
  const limit = o.limit ?? limits.namespacesListedDefault
  if (limit < 1 || limit > limits.namespacesListedMax) throw new InvalidOptionsError(`listNamespaces options: limit must be an integer in [1, ${limits.namespacesListedMax}], not ${limit}`, 'limit')
  // The pending writes decide for their identities (they are newer than anything applied); the index for the rest.
  const live: string[] = []
  const counts = await index.namespaceCounts(prefix, () => {
    const ids = new Set(pending.keys())
    for (const id of ids) if (pending.latest(id)?.live === true) live.push(id)
    return ids
  })
  for (const id of live) {
    const { namespace } = splitIdentity(id)
    if (isUnder(namespace, prefix)) counts.set(namespace, (counts.get(namespace) ?? 0) + 1)
  }
  return [...counts]
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => compareCodePoints(a, b))
    .slice(0, limit)
    .map(([namespace, entries]) => ({ namespace, entries }))
}

export interface ClearOptions {
  /** The namespace to clear (exactly: not the namespaces under it). */
  readonly namespace: string
  /** Only keys starting with this. */
  readonly prefix?: string
}

export interface ClearResult {
  /** Delete operations written: the entries the namespace held when the clear began (and maybe some deleted already). */
  readonly deleted: number
  /** Log records they took (each applied atomically by every sink); 0 when there was nothing to clear. */
  readonly records: number
  /** The LSN of the last one: the version at which the namespace is clear. */
  readonly lsn?: number
}

export interface ClearPorts {
  readonly index: IndexSink
  readonly pending: PendingLog
  readonly config: Limits & { readonly wal: { readonly limits: { readonly recordBytesMax: number } } }
  /** Writes one logged batch of deletes, acknowledged once durable. */
  batch(ops: readonly { readonly type: 'del'; readonly key: string; readonly namespace: string }[]): Promise<{ lsn: number }>
}

const CLEAR_FIELDS = { namespace: 'string', prefix: 'string' } as const
/** Bytes of a delete operation in a record beyond its namespace and key (msgpack array and string headers, generously). */
const DELETE_OP_OVERHEAD_BYTES = 16

/**
 * Deletes every entry of a namespace (with a key prefix, if given) through
 * the log, as batches of deletes: one record when they fit in one
 * (recordBytesMax, batchOpsMax), so every sink applies the clear atomically;
 * a larger namespace takes several records, each atomic, and a clear that a
 * crash interrupted is finished by running it again. Every entry written
 * before the call is deleted: it is either pending now (taken first,
 * synchronously) or applied by every sink, and so in the index the range scan
 * reads after. A write concurrent with the clear may land before or after it.
 */
export async function clearNamespace(p: ClearPorts, options: ClearOptions): Promise<ClearResult> {
  const o = checkFields<ClearOptions>('clear options', options, CLEAR_FIELDS)
  if (o.namespace === undefined) throw new InvalidOptionsError('clear options: namespace is required', 'namespace')
  const namespace = checkNamespace(o.namespace, p.config)
  const prefix = o.prefix ?? ''
  const ids = new Set<string>()
  for (const id of p.pending.keys()) {
    const s = splitIdentity(id)
    if (s.namespace === namespace && s.key.startsWith(prefix)) ids.add(id)
  }
  for await (const [id] of p.index.keys({ namespace, prefix })) ids.add(id)
  const keys = [...ids].map((id) => splitIdentity(id).key).sort(compareCodePoints)
  const budget = Math.floor(p.config.wal.limits.recordBytesMax * 0.9)
  let records = 0
  let lsn: number | undefined
  for (let i = 0; i < keys.length; ) {
    const ops: { type: 'del'; key: string; namespace: string }[] = []
    let bytes = 0
    for (; i < keys.length && ops.length < p.config.batchOpsMax; i++) {
      const key = keys[i] as string
      const size = Buffer.byteLength(key) + Buffer.byteLength(namespace) + DELETE_OP_OVERHEAD_BYTES
      if (ops.length > 0 && bytes + size > budget) break
      ops.push({ type: 'del', key, namespace })
      bytes += size
    }
    lsn = (await p.batch(ops)).lsn
    records++
  }
  return { deleted: keys.length, records, ...(lsn !== undefined ? { lsn } : {}) }
}
