import type { Packr } from 'msgpackr'
import { InvalidOptionsError, MemwalError } from '../../errors.js'
import { passes, type Change, type ChangeFilter } from '../../format/change.js'
import { hlcMs, opsOf, type Op } from '../../format/record-codec.js'
import type { Clock } from '../../io/clock.js'
import type { Logger } from '../../io/logger.js'
import { checkFields } from '../../option-fields.js'
import type { AppliedRecord } from '../sink.js'
import { sqlState, type PgConnections } from './pg-pool.js'
import { toInt, type Tables } from './pg-schema.js'

/**
 * The change feed across writers: every operation each writer applied into
 * PostgreSQL, read back by any process (`PgBackend.watch`, and
 * `MemWAL.watch({ allWriters: true })`).
 *
 * Polling, not LISTEN/NOTIFY: a notification sent while a listener is
 * disconnected is lost, and a position in NOTIFY's stream cannot be resumed.
 * Each apply writes its operations into `changes` (writer, lsn, seq) in the
 * same statement as the rows and the checkpoint, so a writer's changes are
 * there exactly when its checkpoint covers them, once each (a replay finds
 * them there: DO NOTHING). A feed's position is, per writer, the next
 * (lsn, seq) to read: one writer's applies commit in LSN order, so nothing
 * can appear behind a position later. PostgreSQL's commit order across
 * writers (a sequence, an xid) has no such property: a sequence value taken
 * by a transaction that commits later would be skipped by a reader already
 * past it.
 *
 * Order: each writer's changes in LSN order (then operation order in a
 * batch), never a duplicate, never a skip. Across writers, each poll merges
 * what has reached PostgreSQL by HLC stamp (a writer's running maximum, so
 * its own order is kept); a change that another writer replicates later (its
 * lag) comes after changes already delivered, whatever its stamp.
 *
 * Resuming: every change carries `resumeToken`, the positions of every
 * writer after it (opaque; bound to the schema). A feed opened with it
 * continues exactly after that change, given the same namespace and prefix.
 *
 * Bounded: each poll reads at most `watchBatchRows` rows (shared among the
 * writers), and holds only them; a writer's rows older than its last
 * `changeHistoryRecords` records are pruned by its applies, and a feed that
 * needs them gets HISTORY_PURGED (details: writer, oldestVersion).
 */

/** A change read from PostgreSQL: which writer applied it, and where to resume after it. */
export interface PgChange extends Change {
  readonly writer: string
  readonly resumeToken: string
}

export interface PgWatchOptions {
  readonly namespace?: string
  readonly prefix?: string
  /** Continue after the change that carried this token (default: from now on). */
  readonly resumeToken?: string
}

const WATCH_FIELDS = { namespace: 'string', prefix: 'string', resumeToken: 'string' } as const

/** The writers a token can name: the token is bounded, and so is a poll's fan-out. */
export const FEED_WRITERS_MAX = 1_024
const TOKEN_PREFIX = 'mwpg1.'
const TOKEN_CHARS_MAX = 256 * FEED_WRITERS_MAX

/**
 * SQLSTATE classes a poll does not retry (the feed ends with the error):
 * 42 (a table or column gone, a privilege revoked), 3F (the schema gone),
 * 22 and 23 (the data). Anything else (the server down or restarting, a
 * timeout) is retried at the next poll.
 */
const UNMENDABLE_SQLSTATE_CLASSES: ReadonlySet<string> = new Set(['42', '3F', '22', '23'])

/** A writer's next change to read. */
interface Position {
  readonly lsn: number
  readonly seq: number
}

/** One row of `changes` as pg returns it. */
interface ChangeRow {
  writer: string
  lsn: string | number
  seq: number
  last: boolean
  namespace: string | null
  key: string
  deleted: boolean
  value: Buffer | null
  tags: string[] | null
  hlc: string | number
  expires_at: string | number | null
}

/** The change columns of an apply ($13..$22): one row per operation, in LSN then operation order. */
export function changeArgs(records: readonly AppliedRecord[], pack: (op: Extract<Op, { type: 'put' }>) => Buffer): unknown[] {
  const c = { lsn: [] as number[], seq: [] as number[], last: [] as boolean[], ns: [] as (string | null)[], key: [] as string[], del: [] as boolean[], value: [] as (Buffer | null)[], tags: [] as (string | null)[], hlc: [] as number[], exp: [] as (number | null)[] }
  for (const r of records) {
    const ops = opsOf(r.record)
    ops.forEach((op, i) => {
      c.lsn.push(r.lsn)
      c.seq.push(i)
      c.last.push(i === ops.length - 1)
      c.ns.push(op.namespace ?? null)
      c.key.push(op.key)
      c.del.push(op.type !== 'put')
      c.value.push(op.type === 'put' ? pack(op) : null)
      c.tags.push(op.type === 'put' && op.tags ? JSON.stringify(op.tags) : null)
      c.hlc.push(r.record.hlc ?? 0)
      c.exp.push(op.type === 'put' ? (op.expiresAt ?? null) : null)
    })
  }
  return [c.lsn, c.seq, c.last, c.ns, c.key, c.del, c.value, c.tags, c.hlc, c.exp]
}

/** What a feed needs from its PgBackend. */
export interface FeedHost {
  readonly conn: PgConnections
  readonly t: Tables
  readonly schema: string
  readonly packr: Packr
  readonly clock: Clock
  readonly logger: Logger
  readonly pollMs: number
  readonly batchRows: number
}

/** Checks a feed's options and opens it. */
export function openFeed(host: FeedHost, options: PgWatchOptions | undefined, onEnd: (f: PgChangeFeed) => void): PgChangeFeed {
  const o = checkFields<PgWatchOptions>('watch options', options, WATCH_FIELDS)
  const from = o.resumeToken === undefined ? undefined : parseResumeToken(o.resumeToken, host.schema)
  return new PgChangeFeed(host, { namespace: o.namespace, prefix: o.prefix ?? '' }, from, onEnd)
}

export function encodeResumeToken(schema: string, positions: ReadonlyMap<string, Position>): string {
  const p: [string, number, number][] = []
  for (const [w, at] of positions) p.push([w, at.lsn, at.seq])
  return TOKEN_PREFIX + Buffer.from(JSON.stringify({ s: schema, p })).toString('base64url')
}

/** The positions a token carries; INVALID_OPTIONS (field resumeToken) for anything memwal did not make for this schema. */
export function parseResumeToken(token: string, schema: string): Map<string, Position> {
  const bad = (why: string): InvalidOptionsError => new InvalidOptionsError(`watch options: resumeToken ${why}`, 'resumeToken')
  if (!token.startsWith(TOKEN_PREFIX) || token.length > TOKEN_CHARS_MAX) throw bad('is not one a PostgreSQL watch gave')
  let body: unknown
  try {
    body = JSON.parse(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'))
  } catch {
    throw bad('is not one a PostgreSQL watch gave')
  }
  const b = body as { s?: unknown; p?: unknown }
  if (typeof b !== 'object' || b === null || typeof b.s !== 'string' || !Array.isArray(b.p)) throw bad('is not one a PostgreSQL watch gave')
  if (b.s !== schema) throw bad(`belongs to schema ${b.s}, not ${schema}`)
  if (b.p.length > FEED_WRITERS_MAX) throw bad(`names more than ${FEED_WRITERS_MAX} writers`)
  const out = new Map<string, Position>()
  for (const e of b.p as unknown[]) {
    if (!Array.isArray(e) || e.length !== 3) throw bad('is damaged')
    const [w, lsn, seq] = e as unknown[]
    if (typeof w !== 'string' || !Number.isSafeInteger(lsn) || !Number.isSafeInteger(seq) || (lsn as number) < 0 || (seq as number) < 0) throw bad('is damaged')
    out.set(w, { lsn: lsn as number, seq: seq as number })
  }
  return out
}

/** Every writer's position after what it has applied now: a feed from here sees only what comes next. */
export async function presentPositions(host: Pick<FeedHost, 'conn' | 't'>): Promise<Map<string, Position>> {
  const r = await host.conn.query<{ writer: string; lsn: string }>(`SELECT writer, lsn FROM ${host.t.checkpoints}`)
  const at = new Map<string, Position>()
  for (const row of r.rows) at.set(row.writer, { lsn: toInt(row.lsn) + 1, seq: 0 })
  return at
}

/**
 * One consumer's feed: an iterator class (not a generator) so that return()
 * ends a feed waiting for its next poll at once.
 */
export class PgChangeFeed implements AsyncIterableIterator<PgChange> {
  private positions: Map<string, Position> | undefined
  private readonly starting: Promise<void>
  private ready: PgChange[] = []
  private done = false
  private pulling: Promise<unknown> = Promise.resolve()
  private wake: (() => void) | undefined

  constructor(
    private readonly host: FeedHost,
    private readonly filter: ChangeFilter,
    from: Map<string, Position> | undefined,
    private readonly onEnd: (f: PgChangeFeed) => void,
  ) {
    // "From now on" is each writer's checkpoint when the watch was opened.
    this.starting = from !== undefined ? Promise.resolve().then(() => void (this.positions = from)) : this.present()
    this.starting.catch(() => undefined)
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<PgChange> {
    return this
  }

  next(): Promise<IteratorResult<PgChange>> {
    const p = this.pulling.then(() => this.pull())
    this.pulling = p.catch(() => undefined)
    return p
  }

  return(): Promise<IteratorResult<PgChange>> {
    this.end()
    return Promise.resolve({ done: true, value: undefined })
  }

  /** Ends the feed: a pending next() resolves done. */
  end(): void {
    if (this.done) return
    this.done = true
    this.ready = []
    this.wake?.()
    this.onEnd(this)
  }

  private async pull(): Promise<IteratorResult<PgChange>> {
    try {
      await this.starting
      for (;;) {
        if (this.done) return { done: true, value: undefined }
        const c = this.ready.shift()
        if (c !== undefined) return { done: false, value: c }
        if ((await this.poll()) === 0) await this.sleep()
      }
    } catch (err) {
      const ended = this.done
      this.end()
      // The backend closed under the feed (which ended it first): its end, not a failure.
      if (ended || (err instanceof MemwalError && err.code === 'ENGINE_CLOSED')) return { done: true, value: undefined }
      throw err
    }
  }

  private async present(): Promise<void> {
    this.positions = await presentPositions(this.host)
  }

  /**
   * One read of every writer's next rows, in one snapshot (so a prune cannot
   * fall between the purge check and the read). Returns the rows consumed;
   * a transient failure (PostgreSQL down) counts as none: the next poll
   * tries again.
   */
  private async poll(): Promise<number> {
    let rows: ChangeRow[]
    let share: number
    try {
      ;({ rows, share } = await this.host.conn.withClient(undefined, async (c) => {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
        try {
          const w = await c.query<{ writer: string; changes_from: string }>(`SELECT writer, changes_from FROM ${this.host.t.checkpoints}`)
          const names: string[] = []
          const lsns: number[] = []
          const seqs: number[] = []
          for (const row of w.rows) {
            const p = this.positionOf(row.writer)
            const oldest = toInt(row.changes_from)
            if (Math.max(p.lsn, 1) < oldest) {
              throw new MemwalError('HISTORY_PURGED', `writer ${row.writer}'s changes from version ${p.lsn} are no longer in PostgreSQL; the oldest still there is ${oldest}`, {
                details: { writer: row.writer, oldestVersion: oldest },
              })
            }
            names.push(row.writer)
            lsns.push(p.lsn)
            seqs.push(p.seq)
          }
          if (names.length > FEED_WRITERS_MAX) throw new MemwalError('INVALID_OPTIONS', `a PostgreSQL watch follows at most ${FEED_WRITERS_MAX} writers; the schema has ${names.length}`, { details: { field: 'watch' } })
          const share = Math.max(1, Math.ceil(this.host.batchRows / Math.max(1, names.length)))
          const r = await c.query<ChangeRow>(
            `SELECT c.* FROM unnest($1::text[], $2::int8[], $3::int4[]) AS p(writer, lsn, seq)
              CROSS JOIN LATERAL (SELECT writer, lsn, seq, last, namespace, key, deleted, value, tags, hlc, expires_at FROM ${this.host.t.changes} c
                WHERE c.writer = p.writer AND (c.lsn, c.seq) >= (p.lsn, p.seq) ORDER BY c.lsn, c.seq LIMIT $4) c`,
            [names, lsns, seqs, share],
          )
          await c.query('COMMIT')
          return { rows: r.rows, share }
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined)
          throw err
        }
      }))
    } catch (err) {
      if (this.done || (err instanceof MemwalError && !err.transient)) throw err
      const state = sqlState(err)
      if (state !== undefined && UNMENDABLE_SQLSTATE_CLASSES.has(state.slice(0, 2))) {
        throw new MemwalError('ENGINE_BACKEND_UNAVAILABLE', `PostgreSQL watch: the server refused the poll with ${state}, which a retry cannot mend: ${(err as Error).message}`, { cause: err, details: { sqlState: state } })
      }
      this.host.logger.warn({ err }, 'PostgreSQL watch: poll failed, trying again')
      return 0
    }
    return this.take(rows, share)
  }

  /**
   * The rows in delivery order, up to where every writer's rows are known:
   * sorted by each writer's running maximum HLC (which keeps a writer's own
   * order), cut at the lowest last stamp of a writer whose share was full
   * (its later rows, unread, may stamp below another writer's).
   */
  private take(rows: readonly ChangeRow[], share: number): number {
    const byWriter = new Map<string, { row: ChangeRow; order: number }[]>()
    for (const row of rows) {
      const list = byWriter.get(row.writer) ?? []
      const prev = list[list.length - 1]
      list.push({ row, order: Math.max(prev?.order ?? 0, toInt(row.hlc)) })
      byWriter.set(row.writer, list)
    }
    let cut = Infinity
    for (const list of byWriter.values()) if (list.length >= share) cut = Math.min(cut, (list[list.length - 1] as { order: number }).order)
    const merged = [...byWriter.values()].flat().filter((x) => x.order <= cut)
    merged.sort((a, b) => a.order - b.order || (a.row.writer < b.row.writer ? -1 : a.row.writer > b.row.writer ? 1 : 0) || toInt(a.row.lsn) - toInt(b.row.lsn) || a.row.seq - b.row.seq)
    for (const { row } of merged) {
      const lsn = toInt(row.lsn)
      this.requirePositions().set(row.writer, row.last ? { lsn: lsn + 1, seq: 0 } : { lsn, seq: row.seq + 1 })
      const c = this.changeOf(row, lsn)
      if (c !== undefined) this.ready.push(c)
    }
    return merged.length
  }

  private changeOf(row: ChangeRow, lsn: number): PgChange | undefined {
    if (!passes(this.filter, row.namespace ?? undefined, row.key)) return undefined
    const hlc = toInt(row.hlc)
    const base = {
      key: row.key, version: lsn, time: hlc === 0 ? 0 : hlcMs(hlc), writer: row.writer,
      resumeToken: encodeResumeToken(this.host.schema, this.requirePositions()),
      ...(row.namespace !== null ? { namespace: row.namespace } : {}),
    }
    if (row.deleted || row.value === null) return { type: 'delete', ...base }
    return {
      type: 'put', ...base, value: this.host.packr.decode(row.value),
      ...(row.tags !== null ? { tags: row.tags } : {}),
      ...(row.expires_at !== null ? { expiresAt: toInt(row.expires_at) } : {}),
    }
  }

  /** A writer the feed has not met yet (it appeared after the feed started) is read from its first change. */
  private positionOf(writer: string): Position {
    return this.requirePositions().get(writer) ?? { lsn: 0, seq: 0 }
  }

  private requirePositions(): Map<string, Position> {
    if (this.positions === undefined) throw new MemwalError('ASSERTION_FAILED', 'a PostgreSQL watch reads after its start')
    return this.positions
  }

  private sleep(): Promise<void> {
    if (this.done) return Promise.resolve()
    return new Promise((resolve) => {
      const cancel = this.host.clock.setTimer(this.host.pollMs, () => {
        this.wake = undefined
        resolve()
      })
      this.wake = () => {
        cancel()
        this.wake = undefined
        resolve()
      }
    })
  }
}
