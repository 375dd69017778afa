import { MemwalError } from './errors.js'
import { assert } from './assert.js'

/** One condition of a write: (namespace, key) must be at `expected` (an LSN), or absent (`null`). */
export interface Condition {
  readonly id: string
  readonly namespace: string
  readonly key: string
  readonly expected: number | null
}

/** Where the gate looks up versions it does not hold. */
export interface VersionSources {
  /** The latest pending version of an identity (null: a pending delete), or undefined when nothing is pending for it. */
  pending(id: string): number | null | undefined
  /** The version the cache or the backend holds (null: absent); rejects, typed, when the backend cannot answer. */
  stored(id: string): Promise<number | null>
}

/** Set when a write to a watched identity is appended: a stored version read before it may be stale. */
interface Mark {
  touched: boolean
}

/**
 * What one write's decision carries between calls of `decide`: the stored
 * versions read (null: absent), each still watched, so that one an append
 * made stale while the write waited (for another identity's write, or
 * another read) is read again, never used. `VersionGate.release` ends the
 * watches once the write is decided, refused or abandoned.
 */
export interface GateState {
  readonly stored: Map<string, { readonly version: number | null; readonly mark: Mark }>
  reads: number
}

export function gateState(): GateState {
  return { stored: new Map(), reads: 0 }
}

/** Backend reads for one write's conditions before it gives up (ENGINE_GATE_BUSY): each is repeated only when a write to the same identity raced it. */
export const STORED_READS_MAX = 64

/**
 * Conditional writes (`ifVersion`, `ifAbsent`) decided at append time, in
 * log order. The log orders records by the order of `Wal.append` calls, so
 * the check and the append run in one synchronous step: nothing else can
 * append in between. What the check reads:
 *
 * - a write to the identity appended but not yet in the pending log (its
 *   durability is in progress): the gate waits for it to settle, then looks
 *   again (its LSN will be the version);
 * - the pending log's latest version (a delete: absent);
 * - otherwise the cache or the backend, read with an await; a write to the
 *   identity appended during that read, or after it while the write waits
 *   for something else (a batch's other identities), makes the gate read
 *   again, so a stale answer is never used (every write passes `appending`
 *   first).
 *
 * `decide` is synchronous when it can decide, and the caller appends in the
 * same step; when it cannot, it returns what to wait for, and is called
 * again afterwards.
 *
 * A refusal is VERSION_MISMATCH with {namespace, key, expected, current}
 * (current: the version now, null when absent) and nothing is appended.
 */
export class VersionGate {
  /** Identity -> the append in progress that wrote it last (settles once the record is in the pending log, or failed). */
  private readonly inFlight = new Map<string, Promise<void>>()
  /** Identities whose stored version is being read or is held by a write's state, and whether a write touched them since. */
  private readonly watched = new Map<string, Mark[]>()

  constructor(private readonly sources: VersionSources) {}

  /**
   * Decides the conditions now, synchronously: returns `true` when every one
   * holds (the caller appends in the same synchronous step, calling
   * `appending` first), throws VERSION_MISMATCH when one does not, or
   * returns a promise to await before deciding again (a write to one of the
   * identities is in flight, or a stored version must be read). `state`
   * carries the versions read between calls; `release` it once done.
   */
  decide(conditions: readonly Condition[], state: GateState): true | Promise<void> {
    const busy = conditions.map((c) => this.inFlight.get(c.id)).filter((p): p is Promise<void> => p !== undefined)
    if (busy.length > 0) return Promise.all(busy).then(() => undefined)
    for (const [id, held] of state.stored) {
      if (!held.mark.touched) continue
      // Written since it was read (while this write waited): the pending log or a new read answers now.
      this.unwatch(id, held.mark)
      state.stored.delete(id)
    }
    const unknown = conditions.filter((c) => this.sources.pending(c.id) === undefined && !state.stored.has(c.id))
    if (unknown.length === 0) {
      for (const c of conditions) {
        const p = this.sources.pending(c.id)
        const current = p !== undefined ? p : (state.stored.get(c.id)?.version ?? null)
        if (current !== c.expected) throw mismatch(c, current)
      }
      return true
    }
    if ((state.reads += unknown.length) > STORED_READS_MAX) {
      // Contention on these entries, not a full backlog: a caller backing off for the appliers would wait for nothing.
      throw new MemwalError('ENGINE_GATE_BUSY', `the versions of ${unknown.length} entries kept changing while they were read (${state.reads} reads): retry the conditional write`, {
        transient: true,
        details: { reads: state.reads, identities: unknown.map((c) => ({ namespace: c.namespace, key: c.key })) },
      })
    }
    return this.readStored(unknown, state)
  }

  /** Whether a write to `id` is appended and not yet in the pending log (or failed): a reader cannot see it yet. */
  writing(id: string): boolean {
    return this.inFlight.has(id)
  }

  /** Ends the watches a write's state holds (its conditions were decided, refused, or it gave up). */
  release(state: GateState): void {
    for (const [id, held] of state.stored) this.unwatch(id, held.mark)
    state.stored.clear()
  }

  private async readStored(unknown: readonly Condition[], state: GateState): Promise<void> {
    const marks = unknown.map((c) => this.watch(c.id))
    const kept = new Set<Mark>()
    try {
      const read = await Promise.all(unknown.map((c) => this.sources.stored(c.id)))
      unknown.forEach((c, i) => {
        const mark = marks[i] as Mark
        // Written meanwhile: this read may be older than that write; look again. Kept: still watched, until `release`.
        if (mark.touched || state.stored.has(c.id)) return
        state.stored.set(c.id, { version: read[i] as number | null, mark })
        kept.add(mark)
      })
    } finally {
      unknown.forEach((c, i) => kept.has(marks[i] as Mark) || this.unwatch(c.id, marks[i] as Mark))
    }
  }

  /**
   * Called synchronously right before every append (conditional or not)
   * with the identities it writes. The returned function is called once the
   * record is in the pending log, or the append failed: from then on the
   * pending log answers for those identities.
   */
  appending(ids: readonly string[]): () => void {
    let done = (): void => undefined
    const settled = new Promise<void>((resolve) => (done = resolve))
    for (const id of ids) {
      this.inFlight.set(id, settled)
      for (const w of this.watched.get(id) ?? []) w.touched = true
    }
    return () => {
      for (const id of ids) if (this.inFlight.get(id) === settled) this.inFlight.delete(id)
      done()
    }
  }

  private watch(id: string): Mark {
    const mark = { touched: false }
    const list = this.watched.get(id)
    if (list) list.push(mark)
    else this.watched.set(id, [mark])
    return mark
  }

  private unwatch(id: string, mark: Mark): void {
    const list = this.watched.get(id)
    assert(list !== undefined, 'a watched identity has a list')
    const rest = list.filter((m) => m !== mark)
    if (rest.length > 0) this.watched.set(id, rest)
    else this.watched.delete(id)
  }
}

function mismatch(c: Condition, current: number | null): MemwalError {
  const want = c.expected === null ? 'absent' : `at version ${c.expected}`
  const now = current === null ? 'absent' : `at version ${current}`
  return new MemwalError('VERSION_MISMATCH', `${JSON.stringify(c.key)} in namespace ${JSON.stringify(c.namespace)} is ${now}, not ${want}: nothing was written`, {
    details: { namespace: c.namespace, key: c.key, expected: c.expected, current },
  })
}
