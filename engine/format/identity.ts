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

/**
 * Every string that starts with `prefix`, as a range [gte, lt) in the
 * store's order (LevelDB compares UTF-8 bytes, i.e. code points): `lt` is the
 * smallest string after all of them, so the range is exact, whatever
 * characters a key holds (a bound made by appending U+10FFFF would leave out
 * keys that go on after a U+10FFFF). `prefix` holds a NUL, which bounds it.
 */
export function prefixRange(prefix: string): { readonly gte: string; readonly lt: string } {
  const lt = prefixEnd(prefix)
  assert(lt !== undefined, 'a range prefix holds a character below U+10FFFF')
  return { gte: prefix, lt }
}

/** The range of ids in one namespace (and a key prefix in it): [gte, lt). */
export function namespaceRange(namespace: string, keyPrefix = ''): { readonly gte: string; readonly lt: string } {
  return prefixRange(identityOf(namespace, keyPrefix))
}

/** The largest code point. */
const CODE_POINT_MAX = 0x10ffff

/**
 * The smallest string greater (in code-point order) than every string
 * starting with `prefix`: its last code point below U+10FFFF plus one, what
 * follows dropped (U+D7FF is followed by U+E000: surrogates are no code
 * points); undefined when there is none (`prefix` empty, or only U+10FFFF).
 */
export function prefixEnd(prefix: string): string | undefined {
  assert(prefix.isWellFormed(), 'a range prefix is well-formed UTF-16')
  for (let end = prefix.length; end > 0; ) {
    const width = end >= 2 && isLowSurrogate(prefix.charCodeAt(end - 1)) ? 2 : 1
    const cp = prefix.codePointAt(end - width) as number
    end -= width
    if (cp < CODE_POINT_MAX) return prefix.slice(0, end) + String.fromCodePoint(cp === 0xd7ff ? 0xe000 : cp + 1)
  }
  return undefined
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff
}

/**
 * Order of strings as the store keeps keys (LevelDB compares UTF-8 bytes):
 * by code point, which for well-formed strings is the same order. JavaScript's
 * `<` compares UTF-16 code units and puts U+E000..U+FFFF after astral
 * characters: it would disagree with the index.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    // Surrogates (U+D800..U+DFFF) stand for code points above U+FFFF: they sort after every other unit.
    const sx = x >= 0xd800 && x <= 0xdfff
    const sy = y >= 0xd800 && y <= 0xdfff
    if (sx !== sy) return sx ? 1 : -1
    return x < y ? -1 : 1
  }
  return a.length - b.length
}
