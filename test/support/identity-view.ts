/**
 * How the model-based tests (the torture, the kill tests) see
 * entries under (namespace, key) identity. Their models are keyed by key, so
 * each key lives in one namespace, a function of the key (`namespaceOf`):
 * some keys in `default` (written without a namespace), the rest in the
 * scenario's namespaces. Same key in two namespaces is tested by
 * test/unit/identity.test.ts. The projections turn what the engine returns
 * into the models' shape: namespace omitted when `default`, tags when empty,
 * the version as `lsn`.
 */
import { DEFAULT_NAMESPACE, type Entry } from '../../engine/index.js'
import { splitIdentity } from '../../engine/format/identity.js'
import type { StoredEntry } from '../../engine/sinks/sink.js'

/** The namespace `key` lives in: undefined for `default`. */
export function namespaceOf(key: string, namespaces: readonly string[]): string | undefined {
  let h = 0
  for (let i = 0; i < key.length; i++) h = (h * 31 + key.charCodeAt(i)) >>> 0
  const i = h % (namespaces.length + 1)
  return i === namespaces.length ? undefined : namespaces[i]
}

/** Read and delete options naming `key`'s namespace (none for `default`). */
export function nsOption(key: string, namespaces: readonly string[]): { namespace?: string } {
  const namespace = namespaceOf(key, namespaces)
  return namespace !== undefined ? { namespace } : {}
}

/** Identity order, as queries and backends list entries: namespace, then key. */
export function identityOrder(key: string, namespaces: readonly string[]): string {
  return `${namespaceOf(key, namespaces) ?? DEFAULT_NAMESPACE}\u0000${key}`
}

export interface ModelEntry {
  readonly value: unknown
  readonly lsn: number
  readonly namespace?: string
  readonly tags?: readonly string[]
}

function labels(namespace: string, tags: readonly string[] | undefined): { namespace?: string; tags?: readonly string[] } {
  return { ...(namespace !== DEFAULT_NAMESPACE ? { namespace } : {}), ...(tags && tags.length > 0 ? { tags } : {}) }
}

export function fromEntry(e: Entry | undefined): ModelEntry | undefined {
  return e ? { value: e.value, lsn: e.version, ...labels(e.namespace, e.tags) } : undefined
}

export function fromStored(e: StoredEntry): ModelEntry {
  return { value: e.value, lsn: e.lsn, ...labels(e.namespace, e.tags) }
}

export function fromQuery(e: Entry): { key: string; value: unknown; namespace?: string; tags?: readonly string[] } {
  return { key: e.key, value: e.value, ...labels(e.namespace, e.tags) }
}

export function fromIndexed(id: string, e: { readonly namespace: string; readonly tags?: readonly string[] }): [string, { namespace?: string; tags?: readonly string[] }] {
  return [splitIdentity(id).key, labels(e.namespace, e.tags)]
}

/** An op as written or as the log decodes it, compared alike: no namespace means `default`, so `default` is dropped; tags deduplicated, none when empty; a put's expiresAt kept. */
export function normalOp<O extends { readonly type: 'put' | 'del'; readonly key: string; readonly namespace?: string; readonly tags?: readonly string[]; readonly value?: unknown; readonly expiresAt?: number }>(o: O): object {
  const ns = o.namespace === undefined || o.namespace === DEFAULT_NAMESPACE ? {} : { namespace: o.namespace }
  if (o.type === 'del') return { type: 'del', key: o.key, ...ns }
  return { type: 'put', key: o.key, value: o.value, ...ns, ...normTags(o.tags), ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}) }
}

/** Tags as the engine keeps them: deduplicated, and none when empty. */
export function normTags(tags: readonly string[] | undefined): { tags?: readonly string[] } {
  return tags && tags.length > 0 ? { tags: [...new Set(tags)] } : {}
}
