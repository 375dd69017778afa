import { isDeepStrictEqual } from 'node:util'
import type * as Lg from '@langchain/langgraph-checkpoint'
import { MemwalError, type BatchOp, type MemWAL, type MemwalOptions } from '../../engine/index.js'
import { compareStrings, invalid } from '../args.js'
import { KeySpace } from '../keyspace.js'
import { langgraph, openOwned } from './peer.js'

/** LangGraph's default page size for search and listNamespaces. */
const SEARCH_LIMIT_DEFAULT = 10
const LIST_LIMIT_DEFAULT = 100

interface StoredItem {
  readonly ns: readonly string[]
  readonly key: string
  readonly value: Record<string, unknown>
  readonly createdAt: number
  readonly updatedAt: number
}

/**
 * LangGraph's long-term memory store (BaseStore) on memwal. The puts of one
 * `batch` call are one atomic memwal record, acknowledged once durable; the
 * reads of that call see the store as it was before them (as InMemoryStore
 * does).
 *
 * Items live in the key space `lg.store` under [...namespace, key], so a
 * namespace prefix is a key prefix. Costs: get is one memwal read; search and
 * listNamespaces scan every item under the prefix (listNamespaces with no
 * prefix scans the whole store), bounded by the scan limit (100,000 items,
 * ADAPTER_SCAN_TOO_LARGE past it). Semantic search (`query`) needs an
 * embeddings index this store does not keep: it is refused, typed, never
 * silently ignored.
 */
export class MemwalStore extends langgraph.BaseStore {
  private readonly items: KeySpace
  private closed = false

  /** A store on a MemWAL the caller opened and closes (one data directory can hold a MemwalSaver and a MemwalStore). */
  constructor(
    readonly db: MemWAL,
    private readonly owned = false,
    private readonly now: () => number = Date.now,
  ) {
    super()
    this.items = new KeySpace(db, 'lg.store')
  }

  static async open(options: MemwalOptions): Promise<MemwalStore> {
    return new MemwalStore(await openOwned(options, 'MemwalStore'), true)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.owned) await this.db.close()
  }

  async batch<Op extends Lg.Operation[]>(operations: Op): Promise<Lg.OperationResults<Op>> {
    if (this.closed) throw new MemwalError('ENGINE_CLOSED', 'the store is closed')
    const results: unknown[] = []
    const puts = new Map<string, Lg.PutOperation>()
    for (const op of operations as Lg.Operation[]) {
      if ('namespacePrefix' in op) results.push(await this.searchOp(op))
      else if ('value' in op) {
        const put = op as Lg.PutOperation
        langgraph.validateNamespace(put.namespace)
        checkKey(put.key)
        if (put.index !== undefined && put.index !== false) throw invalid('this store keeps no embeddings index: put with `index` is refused')
        puts.set(this.items.key([...put.namespace, put.key]), put) // the last put of a key in one batch wins
        results.push(undefined)
      } else if ('key' in op) results.push(await this.getOp(op as Lg.GetOperation))
      else results.push(await this.listNamespacesOp(op as Lg.ListNamespacesOperation))
    }
    if (puts.size > 0) await this.write([...puts.values()])
    return results as Lg.OperationResults<Op>
  }

  private async getOp(op: Lg.GetOperation): Promise<Lg.Item | null> {
    langgraph.validateNamespace(op.namespace, { allowReservedRoot: true })
    checkKey(op.key)
    const stored = (await this.items.get([...op.namespace, op.key])) as StoredItem | undefined
    return stored ? itemOf(stored) : null
  }

  private async write(ops: readonly Lg.PutOperation[]): Promise<void> {
    const now = this.now()
    const batch: BatchOp[] = []
    for (const op of ops) {
      const parts = [...op.namespace, op.key]
      if (op.value === null) {
        batch.push(this.items.delOp(parts))
        continue
      }
      const old = (await this.items.get(parts)) as StoredItem | undefined
      const item: StoredItem = { ns: op.namespace, key: op.key, value: op.value, createdAt: old?.createdAt ?? now, updatedAt: now }
      batch.push(this.items.putOp(parts, item))
    }
    await this.db.batch(batch)
  }

  private async searchOp(op: Lg.SearchOperation): Promise<Lg.SearchItem[]> {
    if (op.query !== undefined) throw invalid('semantic search (query) needs an embeddings index, which MemwalStore does not keep; search with filter instead')
    if (op.namespacePrefix.length > 0) langgraph.validateNamespace(op.namespacePrefix, { allowReservedRoot: true })
    const offset = checkCount('offset', op.offset ?? 0)
    const limit = checkCount('limit', op.limit ?? SEARCH_LIMIT_DEFAULT)
    const out: Lg.SearchItem[] = []
    let skipped = 0
    for (const hit of await this.items.scan(op.namespacePrefix)) {
      const stored = hit.value as StoredItem
      if (op.filter && !Object.entries(op.filter).every(([k, v]) => matches(stored.value[k], v))) continue
      if (skipped++ < offset) continue
      if (out.length >= limit) break
      out.push(itemOf(stored))
    }
    return out
  }

  private async listNamespacesOp(op: Lg.ListNamespacesOperation): Promise<string[][]> {
    const conditions = op.matchConditions ?? []
    // A prefix condition without wildcards narrows the scan.
    const fixed = conditions.find((c) => c.matchType === 'prefix' && !c.path.includes('*'))?.path ?? []
    const seen = new Map<string, string[]>()
    for (const hit of await this.items.scan(fixed)) {
      let ns = [...(hit.value as StoredItem).ns]
      if (!conditions.every((c) => namespaceMatches(c, ns))) continue
      if (op.maxDepth !== undefined) ns = ns.slice(0, op.maxDepth)
      seen.set(JSON.stringify(ns), ns)
    }
    const all = [...seen.values()].sort((a, b) => compareStrings(a.join(':'), b.join(':')))
    const offset = checkCount('offset', op.offset ?? 0)
    return all.slice(offset, offset + checkCount('limit', op.limit ?? LIST_LIMIT_DEFAULT))
  }
}

function itemOf(s: StoredItem): Lg.Item {
  return { namespace: [...s.ns], key: s.key, value: s.value, createdAt: new Date(s.createdAt), updatedAt: new Date(s.updatedAt) }
}

/** LangGraph's filter semantics: $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, or a plain value compared for equality. */
function matches(actual: unknown, filter: unknown): boolean {
  if (typeof filter === 'object' && filter !== null && !Array.isArray(filter)) {
    const ops = Object.entries(filter)
    if (ops.length > 0 && ops.every(([k]) => k.startsWith('$'))) return ops.every(([op, v]) => operator(op, actual, v))
  }
  return isDeepStrictEqual(actual, filter)
}

function operator(op: string, actual: unknown, v: unknown): boolean {
  switch (op) {
    case '$eq':
      return isDeepStrictEqual(actual, v)
    case '$ne':
      return !isDeepStrictEqual(actual, v)
    case '$gt':
      return Number(actual) > Number(v)
    case '$gte':
      return Number(actual) >= Number(v)
    case '$lt':
      return Number(actual) < Number(v)
    case '$lte':
      return Number(actual) <= Number(v)
    case '$in':
      return Array.isArray(v) && v.some((x) => isDeepStrictEqual(actual, x))
    case '$nin':
      return Array.isArray(v) && !v.some((x) => isDeepStrictEqual(actual, x))
    default:
      throw invalid(`unknown filter operator ${op}`)
  }
}

function namespaceMatches(c: Lg.MatchCondition, ns: readonly string[]): boolean {
  if (c.path.length > ns.length) return false
  const start = c.matchType === 'prefix' ? 0 : ns.length - c.path.length
  return c.path.every((p, i) => p === '*' || ns[start + i] === p)
}

function checkKey(key: unknown): void {
  if (typeof key !== 'string' || key.length === 0) throw invalid('an item key must be a non-empty string')
}

function checkCount(what: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw invalid(`${what} must be a non-negative integer`)
  return n
}
