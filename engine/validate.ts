import { InvalidOptionsError, MemwalError } from './errors.js'
import { checkFields } from './option-fields.js'
import { DEFAULT_NAMESPACE } from './format/identity.js'
import { resolveExpiry } from './expiry-options.js'
import type { ResolvedOptions } from './options.js'
import type { Op } from './format/record-codec.js'

/**
 * Checks what a caller hands in before anything is written. Every refusal is
 * a typed error; a refused operation writes nothing. Option objects are
 * checked by the one checker, `checkFields` (option-fields.ts).
 */
export interface PutOptions {
  /** The entry's namespace (default `default`): identity is (namespace, key). */
  readonly namespace?: string
  readonly tags?: readonly string[]
  /**
   * When the entry expires, ms since the epoch, after the engine's clock and at most 100 years past it
   * (engine/expiry-options.ts), else INVALID_OPTIONS naming the field: from then on reads treat the entry as absent and the
   * expiry sweep deletes it through the log. One of expiresAt and ttlMs.
   */
  readonly expiresAt?: number
  /** Time to live, ms from the engine's clock at put (resolved once into expiresAt). One of expiresAt and ttlMs. */
  readonly ttlMs?: number
  /** Write only if the entry is at this version (the LSN its last put resolved with); else VERSION_MISMATCH, nothing written. */
  readonly ifVersion?: number
  /** Write only if the entry is absent; else VERSION_MISMATCH, nothing written. */
  readonly ifAbsent?: boolean
}

export interface ReadOptions {
  readonly namespace?: string
}

export interface DeleteOptions extends ReadOptions {
  /** Delete only if the entry is at this version; else VERSION_MISMATCH, nothing written. */
  readonly ifVersion?: number
}

/** A write's condition on one entry: at version `expected`, or absent (null). Never stored in the record. */
export interface WriteCondition {
  readonly namespace: string
  readonly key: string
  readonly expected: number | null
}

export type BatchOp =
  | ({ readonly type: 'put'; readonly key: string; readonly value: unknown } & PutOptions)
  | ({ readonly type: 'del'; readonly key: string } & DeleteOptions)

export type Limits = Pick<ResolvedOptions, 'keyBytesMax' | 'labelBytesMax' | 'tagsMax' | 'batchOpsMax'>
/** What put options are checked against: the limits, and the clock an `expiresAt` must lie after. */
export type PutLimits = Limits & Pick<ResolvedOptions, 'clock'>

const PUT_FIELDS = { namespace: 'string', tags: 'string[]', expiresAt: 'integer', ttlMs: 'integer', ifVersion: 'integer', ifAbsent: 'boolean' } as const
const READ_FIELDS = { namespace: 'string' } as const
const DELETE_FIELDS = { namespace: 'string', ifVersion: 'integer' } as const

/** The condition an option object states, if any (ifVersion, ifAbsent: one at most). */
export function checkCondition(o: { readonly ifVersion?: number; readonly ifAbsent?: boolean } | undefined, namespace: string, key: string, prefix = ''): WriteCondition | undefined {
  if (o === undefined) return undefined
  if (o.ifVersion !== undefined && o.ifAbsent === true) throw new InvalidOptionsError('ifVersion and ifAbsent cannot be given together', `${prefix}ifAbsent`)
  if (o.ifVersion !== undefined) {
    if (o.ifVersion < 1) throw new InvalidOptionsError(`ifVersion must be a version (an LSN, at least 1), not ${o.ifVersion}`, `${prefix}ifVersion`)
    return { namespace, key, expected: o.ifVersion }
  }
  return o.ifAbsent === true ? { namespace, key, expected: null } : undefined
}

export function checkKey(key: unknown, l: Limits): string {
  if (typeof key !== 'string') throw invalidKey(`key must be a string, not ${typeof key}`)
  if (key.length === 0) throw invalidKey('key must not be empty')
  const bytes = Buffer.byteLength(key, 'utf8')
  if (bytes > l.keyBytesMax) throw invalidKey(`key of ${bytes} bytes exceeds keyBytesMax ${l.keyBytesMax}`)
  if (!key.isWellFormed()) throw invalidKey('key is not well-formed UTF-16 (lone surrogate)')
  return key
}

/**
 * A key holding NUL, for a backend whose keys cannot hold it (PgBackend:
 * PostgreSQL text): ENGINE_INVALID_KEY naming `field`, refused before it is
 * logged (the write path) or imported (import), never dead-lettered after.
 */
export function refuseNulKey(key: string, field: string, keysMayHoldNul: boolean): void {
  if (keysMayHoldNul || !key.includes('\u0000')) return
  throw new MemwalError('ENGINE_INVALID_KEY', `${field} holds NUL, which this backend cannot store (PostgreSQL text)`, { details: { field } })
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

/**
 * A namespace: a non-empty string without NUL; `/` separates a hierarchy
 * (`agents/7/session/3`), so empty segments (a leading or trailing `/`,
 * `//`) are refused: a prefix query is then "equals P or starts with P/".
 */
export function checkNamespace(ns: unknown, l: Limits, field = 'namespace'): string {
  if (ns === undefined) return DEFAULT_NAMESPACE
  const s = checkLabel(field, ns, l)
  if (s.split('/').some((seg) => seg.length === 0)) throw invalidValue(`${field} must not have an empty segment (a leading or trailing /, or //): ${JSON.stringify(s)}`, undefined, undefined, field)
  return s
}

export interface CheckedPut {
  readonly namespace: string
  readonly tags?: readonly string[]
  readonly expiresAt?: number
}

export function checkPutOptions(o: unknown, l: PutLimits, prefix = ''): CheckedPut {
  const p = checkFields<PutOptions>('put options', o, PUT_FIELDS, prefix)
  const out: { namespace: string; tags?: readonly string[]; expiresAt?: number } = { namespace: checkNamespace(p.namespace, l, `${prefix}namespace`) }
  if (p.tags !== undefined) {
    if (p.tags.length > l.tagsMax) throw invalidValue(`${p.tags.length} tags exceed tagsMax ${l.tagsMax}`, undefined, undefined, `${prefix}tags`)
    out.tags = [...new Set(p.tags.map((t) => checkLabel(`${prefix}tags`, t, l)))]
  }
  // The expiry rules, once: a past instant, or one beyond the horizon, is a caller's mistake, refused before anything is written.
  const expiresAt = resolveExpiry(p, l.clock.nowMs(), prefix)
  if (expiresAt !== undefined) out.expiresAt = expiresAt
  return out
}

/** get and getEntry options: the namespace (default `default`). */
export function checkReadOptions(o: unknown, l: Limits, what = 'read options', prefix = ''): { readonly namespace: string } {
  const p = checkFields<ReadOptions>(what, o, READ_FIELDS, prefix)
  return { namespace: checkNamespace(p.namespace, l, `${prefix}namespace`) }
}

/** delete options: the namespace (default `default`) and an optional ifVersion. */
export function checkDeleteOptions(o: unknown, l: Limits, key: string, prefix = ''): { readonly namespace: string; readonly condition: WriteCondition | undefined } {
  const p = checkFields<DeleteOptions>('delete options', o, DELETE_FIELDS, prefix)
  const namespace = checkNamespace(p.namespace, l, `${prefix}namespace`)
  return { namespace, condition: checkCondition(p, namespace, key, prefix) }
}

/** A put's condition (its options were checked by checkPutOptions). */
export function putCondition(o: unknown, namespace: string, key: string, prefix = ''): WriteCondition | undefined {
  return checkCondition(o as PutOptions | undefined, namespace, key, prefix)
}

/** A batch's operations, and the conditions its operations state (all must hold, or nothing is written). */
export function checkBatch(ops: unknown, l: PutLimits): { ops: Op[]; conditions: WriteCondition[] } {
  const conditions: WriteCondition[] = []
  const checked = checkBatchOps(ops, l, conditions)
  return { ops: checked, conditions }
}

function checkBatchOps(ops: unknown, l: PutLimits, conditions: WriteCondition[]): Op[] {
  if (!Array.isArray(ops)) throw invalidValue('batch takes an array of operations')
  if (ops.length === 0) throw invalidValue('batch is empty')
  if (ops.length > l.batchOpsMax) throw invalidValue(`batch of ${ops.length} operations exceeds batchOpsMax ${l.batchOpsMax}`)
  return ops.map((op: unknown, i): Op => {
    if (typeof op !== 'object' || op === null) throw invalidValue('a batch operation must be an object')
    const o = op as Record<string, unknown>
    const at = `ops[${i}].`
    if (o['type'] !== 'put' && o['type'] !== 'del') throw invalidValue(`batch operation type must be put or del, not ${String(o['type'])}`)
    const { type: _t, key: rawKey, value, ...rest } = o
    const key = checkKey(rawKey, l)
    if (o['type'] === 'del') {
      if (Object.hasOwn(o, 'value')) throw new InvalidOptionsError('batch delete: unknown field "value"', `${at}value`)
      const { namespace, condition } = checkDeleteOptions(rest, l, key, at)
      if (condition) conditions.push(condition)
      return { type: 'del', key, namespace }
    }
    const put = checkPutOptions(rest, l, at)
    const condition = putCondition(rest, put.namespace, key, at)
    if (condition) conditions.push(condition)
    return { type: 'put', key, value: checkValue(value), ...put }
  })
}

/** A namespace or tag as it can be stored: INVALID_OPTIONS when not a string, ENGINE_INVALID_VALUE otherwise (naming `what`). */
export function checkLabel(what: string, s: unknown, l: Limits): string {
  if (typeof s !== 'string') throw new InvalidOptionsError(`${what} must be a string`, what)
  if (s.length === 0) throw invalidValue(`${what} must not be empty`, undefined, undefined, what)
  if (s.includes('\u0000')) throw invalidValue(`${what} must not contain NUL`, undefined, undefined, what)
  if (Buffer.byteLength(s, 'utf8') > l.labelBytesMax) throw invalidValue(`${what} exceeds labelBytesMax ${l.labelBytesMax}`, undefined, undefined, what)
  if (!s.isWellFormed()) throw invalidValue(`${what} is not well-formed UTF-16`, undefined, undefined, what)
  return s
}

function invalidKey(message: string): MemwalError {
  return new MemwalError('ENGINE_INVALID_KEY', message)
}

/**
 * A refused value or label; `path` names the place inside a value (`$.a[3]`),
 * and is kept from a codec refusal that caused this one; `field` names the
 * option whose value was refused.
 */
export function invalidValue(message: string, cause?: unknown, path?: string, field?: string): MemwalError {
  const at = path ?? (cause instanceof MemwalError && typeof cause.details['path'] === 'string' ? cause.details['path'] : undefined)
  const details = { ...(at !== undefined ? { path: at } : {}), ...(field !== undefined ? { field } : {}) }
  return new MemwalError('ENGINE_INVALID_VALUE', message, { cause, ...(Object.keys(details).length > 0 ? { details } : {}) })
}
