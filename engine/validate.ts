import { MemwalError } from './errors.js'
import type { ResolvedOptions } from './options.js'
import type { Op } from './format/record-codec.js'

/**
 * Checks what a caller hands in before anything is written. Every refusal is
 * a typed error; a refused operation writes nothing.
 */
export interface PutOptions {
  readonly namespace?: string
  readonly tags?: readonly string[]
}

export type BatchOp =
  | { readonly type: 'put'; readonly key: string; readonly value: unknown; readonly namespace?: string; readonly tags?: readonly string[] }
  | { readonly type: 'del'; readonly key: string }

export type Limits = Pick<ResolvedOptions, 'keyBytesMax' | 'labelBytesMax' | 'tagsMax' | 'batchOpsMax'>

export function checkKey(key: unknown, l: Limits): string {
  if (typeof key !== 'string') throw invalidKey(`key must be a string, not ${typeof key}`)
  if (key.length === 0) throw invalidKey('key must not be empty')
  const bytes = Buffer.byteLength(key, 'utf8')
  if (bytes > l.keyBytesMax) throw invalidKey(`key of ${bytes} bytes exceeds keyBytesMax ${l.keyBytesMax}`)
  if (!key.isWellFormed()) throw invalidKey('key is not well-formed UTF-16 (lone surrogate)')
  return key
}

/**
 * Only the top level here: the value contract (engine/format/value-codec.ts)
 * is checked by the record codec as it encodes, in the same walk, which
 * refuses with ENGINE_INVALID_VALUE naming the path inside the value.
 */
export function checkValue(value: unknown): unknown {
  if (value === undefined) throw invalidValue('value at $: undefined cannot be put (use delete)', undefined, '$')
  return value
}

export function checkPutOptions(o: PutOptions | undefined, l: Limits): PutOptions {
  if (o === undefined) return {}
  if (typeof o !== 'object' || o === null) throw invalidValue('put options must be an object')
  const out: { namespace?: string; tags?: readonly string[] } = {}
  if (o.namespace !== undefined) out.namespace = checkLabel('namespace', o.namespace, l)
  if (o.tags !== undefined) {
    if (!Array.isArray(o.tags)) throw invalidValue('tags must be an array of strings')
    if (o.tags.length > l.tagsMax) throw invalidValue(`${o.tags.length} tags exceed tagsMax ${l.tagsMax}`)
    out.tags = [...new Set(o.tags.map((t) => checkLabel('tag', t, l)))]
  }
  return out
}

export function checkBatch(ops: unknown, l: Limits): Op[] {
  if (!Array.isArray(ops)) throw invalidValue('batch takes an array of operations')
  if (ops.length === 0) throw invalidValue('batch is empty')
  if (ops.length > l.batchOpsMax) throw invalidValue(`batch of ${ops.length} operations exceeds batchOpsMax ${l.batchOpsMax}`)
  return ops.map((op: unknown): Op => {
    if (typeof op !== 'object' || op === null) throw invalidValue('a batch operation must be an object')
    const o = op as Partial<BatchOp> & { type?: unknown }
    const key = checkKey(o.key, l)
    if (o.type === 'del') return { type: 'del', key }
    if (o.type !== 'put') throw invalidValue(`batch operation type must be put or del, not ${String(o.type)}`)
    const p = o as Extract<BatchOp, { type: 'put' }>
    return { type: 'put', key, value: checkValue(p.value), ...checkPutOptions({ ...(p.namespace !== undefined ? { namespace: p.namespace } : {}), ...(p.tags !== undefined ? { tags: p.tags } : {}) }, l) }
  })
}

/** A namespace or tag as it can be stored: ENGINE_INVALID_VALUE (naming `what`) otherwise. */
export function checkLabel(what: string, s: unknown, l: Limits): string {
  if (typeof s !== 'string') throw invalidValue(`${what} must be a string`)
  if (s.length === 0) throw invalidValue(`${what} must not be empty`)
  if (s.includes('\u0000')) throw invalidValue(`${what} must not contain NUL`)
  if (Buffer.byteLength(s, 'utf8') > l.labelBytesMax) throw invalidValue(`${what} exceeds labelBytesMax ${l.labelBytesMax}`)
  if (!s.isWellFormed()) throw invalidValue(`${what} is not well-formed UTF-16`)
  return s
}

function invalidKey(message: string): MemwalError {
  return new MemwalError('ENGINE_INVALID_KEY', message)
}

/** A refused value or label; `path` names the place inside a value (`$.a[3]`), and is kept from a codec refusal that caused this one. */
export function invalidValue(message: string, cause?: unknown, path?: string): MemwalError {
  const at = path ?? (cause instanceof MemwalError && typeof cause.details['path'] === 'string' ? cause.details['path'] : undefined)
  return new MemwalError('ENGINE_INVALID_VALUE', message, { cause, ...(at !== undefined ? { details: { path: at } } : {}) })
}
