import { assert } from '../assert.js'

/**
 * An entry's identity is (namespace, key). Below the facade (the pending
 * overlay, the cache, the LevelDB rows and index, the reconciler) it is ONE
 * string, built here and nowhere else:
 *
 *   id = namespace + '\0' + key
 *
 * A namespace cannot hold NUL (validate.ts refuses it), so the first NUL
 * splits an id back; a key may hold NUL. Ids sort by namespace, then key
 * (a namespace that is a prefix of another sorts first, as the pair would),
 * which range scans over one namespace rely on.
 */
export const DEFAULT_NAMESPACE = 'default'
export const ID_SEP = '\u0000'

export function identityOf(namespace: string, key: string): string {
  return namespace + ID_SEP + key
}

/**
 * The id of an operation (no namespace: `default`). A version-1 delete
 * ("the key, wherever it is") has none and must be resolved first.
 */
export function opIdentity(op: { readonly type: 'put' | 'del'; readonly key: string; readonly namespace?: string | undefined; readonly legacy?: true | undefined }): string {
  assert(!(op.type === 'del' && op.legacy === true), 'a v1 delete is resolved before it is keyed by identity')
  return identityOf(op.namespace ?? DEFAULT_NAMESPACE, op.key)
}

export function splitIdentity(id: string): { readonly namespace: string; readonly key: string } {
  const cut = id.indexOf(ID_SEP)
  assert(cut >= 0, 'an identity holds a namespace separator')
  return { namespace: id.slice(0, cut), key: id.slice(cut + 1) }
}

/** The range of ids in one namespace: [gte, lt). */
export function namespaceRange(namespace: string, keyPrefix = ''): { readonly gte: string; readonly lt: string } {
  const p = identityOf(namespace, keyPrefix)
  return { gte: p, lt: p + '\u{10FFFF}' }
}
