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
 * The namespaces that hold entries, with how many, in namespace order: the
 * index's counts (one keys-only pass over the range), corrected by the
 * pending writes (a put the index does not have yet adds one, a delete of an
 * entry it has takes one away), so a write shows at once, as reads see it.
 * Namespaces left with none are not listed.
 */
export async function listNamespaces(index: IndexSink, pending: PendingLog, config: Limits, options: NamespaceListOptions | undefined): Promise<NamespaceCount[]> {
  const o = checkFields<NamespaceListOptions>('listNamespaces options', options, FIELDS)
  const prefix = o.prefix === undefined ? undefined : checkNamespace(o.prefix, config, 'prefix')
  const limit = o.limit ?? limits.namespacesListedDefault
  if (limit < 1 || limit > limits.namespacesListedMax) throw new InvalidOptionsError(`listNamespaces options: limit must be an integer in [1, ${limits.namespacesListedMax}], not ${limit}`, 'limit')
  const counts = new Map<string, number>()
  for await (const c of index.namespaceCounts(prefix)) counts.set(c.namespace, c.entries)
  const ids = [...pending.keys()].filter((id) => isUnder(splitIdentity(id).namespace, prefix))
  const indexed = await index.has(ids)
  ids.forEach((id, i) => {
    const live = pending.latest(id)?.live === true
    const delta = (live ? 1 : 0) - (indexed[i] === true ? 1 : 0)
    if (delta === 0) return
    const { namespace } = splitIdentity(id)
    counts.set(namespace, (counts.get(namespace) ?? 0) + delta)
  })
  return [...counts]
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => compareCodePoints(a, b))
    .slice(0, limit)
    .map(([namespace, entries]) => ({ namespace, entries }))
}
