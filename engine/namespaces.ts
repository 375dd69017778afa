import type { PendingLog } from './apply/pending-log.js'
import { InvalidOptionsError } from './errors.js'
import { DEFAULT_NAMESPACE, splitIdentity } from './format/identity.js'
import { limits } from './limits.js'
import { compareCodePoints } from './query/match.js'
import { isUnder } from './sinks/index-sink.js'
import type { IndexReads } from './index-reads.js'
import { isExpired } from './format/expiry-key.js'
import { packedValueOf, type PutOp } from './format/record-codec.js'
import { createPackr } from './format/value-codec.js'
import { checkFields } from './option-fields.js'
import { checkNamespace, type Limits } from './validate.js'

export interface NamespaceListOptions {
  /** Only this namespace and those under it (`prefix/...`). */
  readonly prefix?: string
  /** At most this many namespaces (default 1,000; at most 100,000). */
  readonly limit?: number
}

export interface NamespaceCount {
  readonly namespace: string
  /** Entries in it now, pending writes included, expired ones not. */
  readonly entries: number
}

export interface NamespaceStats extends NamespaceCount {
  /** Bytes of its entries' values as stored (the value codec's msgpack, as the log and the backend hold it). */
  readonly bytes: number
}

export interface StoreStats {
  /** Per namespace, in namespace order (at most `limit`). */
  readonly namespaces: readonly NamespaceStats[]
  /** Entries in every namespace matched (those past `limit` too). */
  readonly entries: number
  /** Their values' bytes, as `bytes` above. */
  readonly bytes: number
  /** Entries indexed before sizes were kept, whose value was read from the backend to size it. */
  readonly sizedFromRows: number
}

export interface NamespacePorts {
  readonly index: IndexReads
  readonly pending: PendingLog
  readonly config: Limits
  /** ms now, by the engine's clock: an entry expired by then is not counted (as reads hide it). */
  nowMs(): number
  /** The bytes of the stored value of each identity (0 when gone): for entries indexed before sizes were kept. */
  storedValueBytes(ids: readonly string[]): Promise<number[]>
}

const FIELDS = { prefix: 'string', limit: 'integer' } as const
/** Identities whose stored value is read at once to size it (entries indexed before sizes were kept). */
const SIZE_READ_BATCH = 256

interface Tally {
  readonly totals: Map<string, { entries: number; bytes: number }>
  readonly sizedFromRows: number
}

/** The namespaces that hold entries, with how many, in namespace order (see `tally`). */
export async function listNamespaces(p: NamespacePorts, options: NamespaceListOptions | undefined): Promise<NamespaceCount[]> {
  const { prefix, limit } = checkListOptions('listNamespaces options', p.config, options)
  const { totals } = await tally(p, prefix, false)
  return inOrder(totals, limit).map(([namespace, t]) => ({ namespace, entries: t.entries }))
}

/** Entries and their values' bytes per namespace and in all (see `tally`). */
export async function namespaceStats(p: NamespacePorts, options: NamespaceListOptions | undefined): Promise<StoreStats> {
  const { prefix, limit } = checkListOptions('stats options', p.config, options)
  const { totals, sizedFromRows } = await tally(p, prefix, true)
  let entries = 0
  let bytes = 0
  for (const t of totals.values()) {
    entries += t.entries
    bytes += t.bytes
  }
  return { namespaces: inOrder(totals, limit).map(([namespace, t]) => ({ namespace, ...t })), entries, bytes, sizedFromRows }
}

function checkListOptions(what: string, config: Limits, options: NamespaceListOptions | undefined): { prefix: string | undefined; limit: number } {
  const o = checkFields<NamespaceListOptions>(what, options, FIELDS)
  const prefix = o.prefix === undefined ? undefined : checkNamespace(o.prefix, config, 'prefix')
  const limit = o.limit ?? limits.namespacesListedDefault
  if (limit < 1 || limit > limits.namespacesListedMax) throw new InvalidOptionsError(`${what}: limit must be an integer in [1, ${limits.namespacesListedMax}], not ${limit}`, 'limit')
  return { prefix, limit }
}

function inOrder<T extends { entries: number }>(totals: Map<string, T>, limit: number): [string, T][] {
  return [...totals].filter(([, t]) => t.entries > 0).sort(([a], [b]) => compareCodePoints(a, b)).slice(0, limit)
}

/**
 * Entries (and, with `sized`, their values' bytes) per namespace under
 * `prefix`, as reads see them: each identity with a pending write counts if
 * that write is a put, every other one as the index has it (one pass over
 * the index's forward entries in the range, from a snapshot taken in the same
 * tick as the pending writes are read, so an apply landing meanwhile is
 * counted once). An entry expired by the engine's clock (taken in that tick)
 * is not counted, whether or not the sweep has deleted it yet. Sizes come
 * from the index (kept at apply), or for a pending put from its value; an
 * entry indexed before sizes were kept has its stored value read (in batches
 * of SIZE_READ_BATCH).
 */
async function tally(p: NamespacePorts, prefix: string | undefined, sized: boolean): Promise<Tally> {
  const totals = new Map<string, { entries: number; bytes: number }>()
  const add = (namespace: string, bytes: number): void => {
    const t = totals.get(namespace)
    if (t) {
      t.entries++
      t.bytes += bytes
    } else totals.set(namespace, { entries: 1, bytes })
  }
  let now = 0
  const live: PutOp[] = []
  const forward = p.index.forward(prefix, () => {
    now = p.nowMs()
    const ids = new Set(p.pending.keys())
    for (const id of ids) {
      const v = p.pending.latestOp(id)
      if (v?.op.type === 'put' && !isExpired(v.op.expiresAt, now) && isUnder(splitIdentity(id).namespace, prefix)) live.push(v.op)
    }
    return ids
  })
  const packr = sized ? createPackr() : undefined
  for (const op of live) add(op.namespace ?? DEFAULT_NAMESPACE, packr ? packedValueOf(packr, op).length : 0)
  let unsized: { id: string; namespace: string }[] = []
  let sizedFromRows = 0
  const sizeFromRows = async (): Promise<void> => {
    const bytes = await p.storedValueBytes(unsized.map((u) => u.id))
    unsized.forEach((u, i) => add(u.namespace, bytes[i] ?? 0))
    sizedFromRows += unsized.length
    unsized = []
  }
  for await (const [id, e] of forward) {
    if (isExpired(e.expiresAt, now)) continue
    if (!sized || e.valueBytes !== undefined) add(e.namespace, e.valueBytes ?? 0)
    else if (unsized.push({ id, namespace: e.namespace }) >= SIZE_READ_BATCH) await sizeFromRows()
  }
  if (unsized.length > 0) await sizeFromRows()
  return { totals, sizedFromRows }
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
  readonly index: IndexReads
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
