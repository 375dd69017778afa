import { DEFAULT_NAMESPACE, MemwalError, QUERY_RESULTS_MAX, type BatchOp, type MemWAL } from '../engine/index.js'

/**
 * How the adapters name what they store in one MemWAL: a record's identity is
 * a space (`lg.cp`, `cf.entry`, ...) and a tuple of string parts, encoded into
 * one memwal key, in the engine's `default` namespace (every read, write and
 * scan here names it). This is the ONE place that knows the encoding. The
 * adapters stay on this encoding under the engine's (namespace, key)
 * identity: their frameworks' tuples map to keys with order-preserving prefix
 * scans, which a namespace per tuple would not give; and the stores already
 * written read the same.
 *
 * Encoding: `<space>\0<part>\0<part>...`, each part escaped so that it never
 * contains `\0` (`\u0001` -> `\u0001\u0002`, `\0` -> `\u0001\u0001`). A scan
 * of the parts [a, b] is then a prefix query on `<space>\0a\0b\0`, which can
 * match no other tuple. Parts keep their relative order when they contain
 * neither escaped character (ids, uuid6 checkpoint ids, numbers padded by the
 * caller).
 */

/** Results one scan may hold: the engine's own query limit. Larger scans are refused, typed, never truncated. */
export const SCAN_RESULTS_MAX = QUERY_RESULTS_MAX
/** Operations per batch when deleting a whole range (under the engine's default batchOpsMax of 10,000). */
export const DELETE_BATCH_OPS_MAX = 1_000

const SEP = '\u0000'
const ESC = '\u0001'

export type KeyParts = readonly string[]

export interface ScanHit {
  readonly parts: KeyParts
  readonly value: unknown
  /** The LSN of the record that wrote it: orders two writes of one range by when they were appended. */
  readonly version: number
}

export interface WalkOptions {
  /** Last key first. */
  readonly reverse?: boolean
  /** Only keys before this one (full parts, not a prefix). */
  readonly before?: KeyParts
}

export class KeySpace {
  constructor(
    private readonly db: MemWAL,
    readonly space: string,
  ) {
    if (space.length === 0 || space.includes(SEP) || space.includes(ESC)) throw new MemwalError('ADAPTER_INVALID_ARGUMENT', `bad key space ${JSON.stringify(space)}`)
  }

  key(parts: KeyParts): string {
    return this.space + SEP + parts.map(escapePart).join(SEP)
  }

  /** Every key whose leading parts are `parts` starts with this (and no other key does). */
  prefix(parts: KeyParts): string {
    return parts.length === 0 ? this.space + SEP : this.key(parts) + SEP
  }

  parts(key: string): KeyParts {
    return key.slice(this.space.length + 1).split(SEP).map(unescapePart)
  }

  async get(parts: KeyParts): Promise<unknown> {
    return this.db.get(this.key(parts))
  }

  /** Durable when it resolves (the engine's sync durability). */
  async put(parts: KeyParts, value: unknown, tags?: readonly string[]): Promise<void> {
    await this.db.put(this.key(parts), value, tags ? { tags } : undefined)
  }

  /** An operation for `MemWAL.batch`: operations on several spaces commit as one atomic, durable record. */
  putOp(parts: KeyParts, value: unknown, tags?: readonly string[]): BatchOp {
    return { type: 'put', key: this.key(parts), value, ...(tags ? { tags } : {}) }
  }

  delOp(parts: KeyParts): BatchOp {
    return { type: 'del', key: this.key(parts) }
  }

  /**
   * Every entry under `parts` in key order. Refuses with ADAPTER_SCAN_TOO_LARGE
   * rather than answer with a silently cut list.
   */
  async scan(parts: KeyParts, tag?: string): Promise<ScanHit[]> {
    const hits: ScanHit[] = []
    for await (const r of this.db.query({ namespace: DEFAULT_NAMESPACE, prefix: this.prefix(parts), limit: SCAN_RESULTS_MAX, ...(tag !== undefined ? { tag } : {}) })) {
      hits.push({ parts: this.parts(r.key), value: r.value, version: r.version })
    }
    if (hits.length >= SCAN_RESULTS_MAX) {
      throw new MemwalError('ADAPTER_SCAN_TOO_LARGE', `more than ${SCAN_RESULTS_MAX - 1} entries under one ${this.space} prefix`, { details: { space: this.space } })
    }
    return hits
  }

  /**
   * Every entry under `parts` in key order (with `reverse`, last first), read
   * as the caller consumes them (the engine's query is lazy): a caller that
   * stops after n entries has read about n, whatever the range holds. No
   * limit: past SCAN_RESULTS_MAX entries a new query goes on after the last key.
   */
  async *walk(parts: KeyParts, options: WalkOptions = {}): AsyncGenerator<ScanHit> {
    const reverse = options.reverse === true
    let after: string | undefined
    let upper = options.before === undefined ? undefined : this.key(options.before)
    for (;;) {
      let n = 0
      const range = reverse ? (upper !== undefined ? { lt: upper } : {}) : { ...(after !== undefined ? { gt: after } : {}), ...(upper !== undefined ? { lt: upper } : {}) }
      for await (const r of this.db.query({ namespace: DEFAULT_NAMESPACE, prefix: this.prefix(parts), limit: SCAN_RESULTS_MAX, reverse, ...range })) {
        n++
        if (reverse) upper = r.key
        else after = r.key
        yield { parts: this.parts(r.key), value: r.value, version: r.version }
      }
      if (n < SCAN_RESULTS_MAX) return
    }
  }

  /** The last entry under `parts` in key order, from one read of one entry. */
  async last(parts: KeyParts): Promise<ScanHit | undefined> {
    for await (const r of this.db.query({ namespace: DEFAULT_NAMESPACE, prefix: this.prefix(parts), limit: 1, reverse: true })) {
      return { parts: this.parts(r.key), value: r.value, version: r.version }
    }
    return undefined
  }

  /** Up to `limit` entries under `parts` in key order, after the key `after` (full parts) if given: one query, read whole. */
  async page(parts: KeyParts, after: KeyParts | undefined, limit: number): Promise<ScanHit[]> {
    const hits: ScanHit[] = []
    for await (const r of this.db.query({ namespace: DEFAULT_NAMESPACE, prefix: this.prefix(parts), limit, ...(after !== undefined ? { gt: this.key(after) } : {}) })) {
      hits.push({ parts: this.parts(r.key), value: r.value, version: r.version })
    }
    return hits
  }

  /**
   * The first entry (in key order) of each distinct first part in the
   * space, in order: a skip scan, one query of one entry per first part,
   * however many entries each holds. Every key of a first part p starts with
   * `<space>\0<p>\0`, and every key of a later one sorts at or after
   * `<space>\0<p>\u0001` (an escaped part holds no `\0`): the next query
   * starts there.
   */
  async *firstOfEach(): AsyncGenerator<ScanHit> {
    let from: string | undefined
    for (;;) {
      let hit: ScanHit | undefined
      for await (const r of this.db.query({ namespace: DEFAULT_NAMESPACE, prefix: this.space + SEP, limit: 1, ...(from !== undefined ? { gte: from } : {}) })) {
        hit = { parts: this.parts(r.key), value: r.value, version: r.version }
      }
      if (hit === undefined) return
      yield hit
      from = this.space + SEP + escapePart(hit.parts[0] as string) + ESC
    }
  }

  /** How many entries are under `parts` (with `tag`, if given): from the index, no value read. */
  async count(parts: KeyParts, tag?: string): Promise<number> {
    return this.db.count({ namespace: DEFAULT_NAMESPACE, prefix: this.prefix(parts), ...(tag !== undefined ? { tags: { all: [tag] } } : {}) })
  }

  /** Deletes everything under `parts`, in durable batches (not atomic as a whole: callers order their deletes so that a partial one hides nothing live). */
  async deleteAll(parts: KeyParts): Promise<number> {
    let n = 0
    for (;;) {
      const keys: string[] = []
      for await (const r of this.db.query({ namespace: DEFAULT_NAMESPACE, prefix: this.prefix(parts), limit: DELETE_BATCH_OPS_MAX })) keys.push(r.key)
      if (keys.length === 0) return n
      await this.db.batch(keys.map((key) => ({ type: 'del', key })))
      n += keys.length
    }
  }
}

function escapePart(p: string): string {
  if (typeof p !== 'string') throw new MemwalError('ADAPTER_INVALID_ARGUMENT', `a key part must be a string, not ${typeof p}`)
  return p.includes(ESC) || p.includes(SEP) ? p.replaceAll(ESC, ESC + '\u0002').replaceAll(SEP, ESC + ESC) : p
}

function unescapePart(p: string): string {
  return p.includes(ESC) ? p.replace(/\u0001([\u0001\u0002])/g, (_, c: string) => (c === ESC ? SEP : ESC)) : p
}
