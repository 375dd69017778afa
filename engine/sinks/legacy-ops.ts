import { RecordType } from '../format/format.js'
import { splitIdentity } from '../format/identity.js'
import { isLegacyDelete, LegacyDeleteResolver, opsOf, type Op } from '../format/record-codec.js'
import type { AppliedRecord } from './sink.js'

/**
 * Records of record codec version 1 (a log written before (namespace, key)
 * identity) reaching an identity-keyed sink: the layout migration applies
 * them before any sink sees them, but a log replayed into a store that was
 * emptied (or an external backend behind) can still hold them. A v1 delete
 * deletes the key in every namespace the sink holds it in; a v1 put moves
 * the key (deleting it from the other namespaces). `namespacesOf` tells
 * where the sink holds each key now (a scan: rare, and only when such
 * records come). Records without v1 operations are returned as they are.
 */
export async function resolveLegacyOps(records: readonly AppliedRecord[], namespacesOf: (keys: ReadonlySet<string>) => Promise<Map<string, Set<string>>>): Promise<readonly AppliedRecord[]> {
  const legacyKeys = legacyKeysOf(records)
  if (legacyKeys.size === 0) return records
  const resolver = new LegacyDeleteResolver()
  for (const [key, namespaces] of await namespacesOf(legacyKeys)) resolver.seed(key, namespaces)
  return records.map((r) => {
    const ops: Op[] = opsOf(r.record).flatMap((op) => resolver.resolve(op))
    const [only] = ops
    const record = ops.length === 1 && only ? (only.type === 'put' ? { type: RecordType.PUT, op: only } : { type: RecordType.DELETE, op: only }) : { type: RecordType.BATCH, ops }
    return { ...r, record: { ...record, ...(r.record.hlc !== undefined ? { hlc: r.record.hlc } : {}) } as AppliedRecord['record'] }
  })
}

/** The keys of the version-1 operations in `records` (none, nearly always). */
export function legacyKeysOf(records: readonly AppliedRecord[]): Set<string> {
  const keys = new Set<string>()
  for (const r of records) for (const op of opsOf(r.record)) if (isLegacyDelete(op) || (op.type === 'put' && op.legacy === true)) keys.add(op.key)
  return keys
}

/** Where each of `keys` lives, from identities listed in any order. */
export function namespacesByKey(ids: Iterable<string>, keys: ReadonlySet<string>, out = new Map<string, Set<string>>()): Map<string, Set<string>> {
  for (const id of ids) {
    const { namespace, key } = splitIdentity(id)
    if (!keys.has(key)) continue
    let s = out.get(key)
    if (!s) out.set(key, (s = new Set()))
    s.add(namespace)
  }
  return out
}
