import type { Packr } from 'msgpackr'
import type { PendingLog, PendingVersion } from './apply/pending-log.js'
import { InvalidOptionsError, isMemwalError, MemwalError, osError } from './errors.js'
import { encoded, EXPORT_SEED, FRAME_HEADER_BYTES, LINE_SUM_BYTES, LINE_SUM_HEAD, msgpackEncoder, MSGPACK_NIL, ndjsonEncoder, type EntryWriter, type ExportEntry } from './export-encoders.js'
import type { Checksums } from './format/checksum.js'
import { isExpired } from './format/expiry-key.js'
import { identityOf, splitIdentity } from './format/identity.js'
import { decodeJsonValue } from './format/json-values.js'
import { assert } from './assert.js'
import { createPackr, packValue } from './format/value-codec.js'
import { PutRecordSizer } from './format/record-codec.js'
import { SourceBytes } from './source-bytes.js'
import { compareCodePoints } from './query/match.js'
import type { RowSnapshot } from './sinks/level-snapshot.js'
import { rowBounds } from './sinks/backend-row.js'
import type { BackendSnapshot, SnapshotRow } from './sinks/sink.js'
import { checkFields } from './option-fields.js'
import { checkKey, checkNamespace, checkPutOptions, refuseNulKey, type BatchOp, type Limits, type PutLimits } from './validate.js'

/**
 * Export and import (issue 12 item 2): every entry of a store (or of one
 * namespace) as a stream, and that stream written back through the log.
 *
 * The stream, in either encoding, is a header, one record per entry in
 * identity order (namespace, then key), and an end record, each record
 * carrying its place in the stream `n` (format 3: the header 0, the entries
 * from 1, the end last):
 *   {"memwal":"export","format":3,"encoding":"ndjson"|"msgpack","version":N,"namespace"?:NS,"n":0}
 *   {"namespace":NS,"key":K,"value":V,"tags":[...],"expiresAt"?:MS,"n":I}
 *   {"memwal":"end","entries":COUNT,"n":COUNT+1}
 * ndjson: one JSON object per line, values in the exact JSON form of
 * format/json-values.ts; from format 2 every line (header and end included)
 * ends with `,"xxh32":"<8 hex>"}`, the xxh32 (seed EXPORT_SEED) of the
 * line's exact bytes before that `,`: a changed digit or letter anywhere in
 * the line is found. msgpack: frames of [u32 BE length][u32 BE xxh32 of
 * the payload, seed EXPORT_SEED][payload], each payload one msgpack map, the
 * value in the value codec's encoding (types kept as the log keeps them).
 * A checksum covers one record: a record dropped, repeated or moved keeps
 * its own. So format 3 numbers them, under the checksum: import refuses a
 * record whose `n` is not the next, naming its line or offset, and whether
 * records before it are missing (n ahead) or it came already (n behind).
 * Formats 1 and 2 (written before; 1 without checksums, read unchecked)
 * still import; in format 2 an entry not strictly after the one before in
 * identity order (a repeated or moved line) is refused, and a dropped line
 * is found only by the end record's count. The end record says the stream
 * is whole: import refuses one without it.
 *
 * Consistency: the entries are those of one version (the header's): the
 * committed LSN V at the call. Pending holds every record some sink has not
 * applied; what left it the backend had applied. An identity with a pending
 * write takes its latest pending version; the others come from a snapshot
 * of the backend that holds every record up to V that left pending, and no
 * record of this process past V. How each backend gives one:
 * - LevelDB: the pending versions are read, and decoded, in the same tick as
 *   the snapshot iterator is made, so the snapshot is the backend at V.
 * - PostgreSQL (PgBackend, sinks/pg/pg-export.ts): the snapshot is taken by
 *   a REPEATABLE READ transaction's first statement, on the server, after a
 *   round trip; records applied meanwhile would be in it. So in the call's
 *   tick V and the pending versions are read and the backend's applier is
 *   held at V (apply/applier.ts holdAt) until the first statement answers:
 *   a batch built before holds only records up to V, later ones stop at V.
 *   A record that left pending before the call was committed (its apply
 *   answered) before the first statement was sent, so the snapshot holds
 *   it; a record past V is applied only after the snapshot's moment. So the
 *   snapshot holds exactly this writer's records up to some C, with
 *   (applied before the call) <= C <= V, and the pending versions cover
 *   (C, V]. Records up to V keep being applied while it is taken. (Reading
 *   pending when the first statement answers instead would not do: a
 *   record whose apply committed after the snapshot's moment but answered
 *   first, on another connection, would have left pending: in neither.) That
 *   first statement reads this writer's checkpoint row in the snapshot
 *   (committed with each apply's rows): it is C, and one outside those
 *   bounds (another process using this writerId, or the tables restored)
 *   is EXPORT_INCONSISTENT, not an export of no version. Other writers'
 *   rows are in it as their applies committed before the snapshot: the
 *   header's version is this process's committed LSN, and says nothing of
 *   theirs. An identity this process has a pending write for takes it, as
 *   reads do.
 * Writes go on meanwhile and are not in the export. An entry expired by the
 * engine's clock at the call is left out, as reads hide it. A backend that
 * gives no snapshot (a BackendSink of one's own without exportSnapshot) is
 * refused (EXPORT_UNSUPPORTED). A snapshot that cannot be read whole (a
 * reopen of LevelDB after a failed write, a PostgreSQL failure or its
 * transaction ended) fails the stream with EXPORT_INTERRUPTED, without its
 * end record, which import refuses as truncated.
 */

export interface ExportOptions {
  /** Only this namespace (exactly: not those under it). */
  readonly namespace?: string
  /** `ndjson` (default): one JSON object per line; `msgpack`: length-prefixed, checksummed msgpack records. */
  readonly format?: 'ndjson' | 'msgpack'
}

/**
 * An export: its chunks, each whole records (the header alone, then many
 * entries at a time, then the end record), and the version it is of.
 */
export interface ExportStream extends AsyncIterableIterator<Buffer> {
  /** The committed LSN the entries are as of (the header's version). */
  readonly version: number
  /** Entries in the chunks handed out so far: all of the export's once the end record is. */
  readonly entries: number
}

export interface ImportProgress {
  /** Entries written so far (in whole batches). */
  readonly entries: number
  readonly batches: number
  /** Bytes of the source read so far. */
  readonly bytes: number
}

export interface ImportOptions {
  /** Puts per batch (default 1,000, at most batchOpsMax): each batch is one log record, applied atomically. */
  readonly batchOps?: number
  /** Called after each batch is written. */
  readonly onProgress?: (p: ImportProgress) => void
}

export interface ImportResult {
  /** Entries written. */
  readonly entries: number
  /** Entries not written because their expiresAt had passed (or comes within EXPIRED_MARGIN_MS) when imported. */
  readonly expired: number
  readonly batches: number
  /** The version the export was taken at (its header's). */
  readonly exportVersion: number
  /** The LSN of the last batch written (absent when there was nothing to write). */
  readonly lsn?: number
}

/** The export format this code writes (3: records carry their place in the stream); it reads 1 to 3. */
export const EXPORT_FORMAT = 3
/** The first format whose ndjson lines carry a checksum, and whose entries import checks are in identity order. */
const CHECKSUMMED_FORMAT = 2
/** The first format whose records carry their place in the stream (`n`). */
const NUMBERED_FORMAT = 3
const HEX8 = /^[0-9a-f]{8}$/
const BATCH_OPS_DEFAULT = 1000
/**
 * An entry expiring within this of its import is not written: put refuses an
 * expiresAt at or before the clock, and the batch is written a little after
 * the entry is read.
 */
export const EXPIRED_MARGIN_MS = 1000
/**
 * How many times its value's bytes (the value codec's) an ndjson line may
 * take: the JSON form's worst, measured, is 6.7 (an array of undefined:
 * `{"$undefined":true},` for 3 bytes), then a Date (6.2), control characters
 * in a string and typed arrays (6); the labels add their own (escapes: 6).
 * A line longer than this times recordBytesMax is no entry put takes.
 */
const LINE_EXPANSION_MAX = 8

export interface ExportSource {
  readonly config: Limits
  readonly pending: PendingLog
  readonly sums: Checksums
  /** The committed LSN now. */
  committedLsn(): number
  /** ms now, by the engine's clock: an entry expired by then is left out, as reads hide it. */
  nowMs(): number
  /** ENGINE_CLOSED once the engine closed (which closes the snapshot under a reader). */
  assertReadable(): void
  /** The backend's rows of `namespace` (or all), from a snapshot this call makes or starts; undefined when the backend gives none. */
  snapshot(namespace: string | undefined): ExportSnapshot | undefined
  /** Until the release is called, the backend's applier applies no record past `lsn` (Applier.holdAt). */
  holdBackendAt(lsn: number): () => void
}

/** LevelDB's snapshot, made in the caller's tick; or one a backend takes asynchronously (PostgreSQL). */
export type ExportSnapshot = { readonly kind: 'level'; readonly rows: RowSnapshot } | { readonly kind: 'async'; readonly rows: BackendSnapshot }

const EXPORT_FIELDS = { namespace: 'string', format: 'string' } as const
const IMPORT_FIELDS = { batchOps: 'integer', onProgress: 'function' } as const

/**
 * The export stream of `src` as of now: Buffers, each holding whole records
 * (the header alone, then the entries of one step of snapshot rows, then
 * the end record). The snapshot is taken by this call, not by the first read.
 */
export function exportEntries(src: ExportSource, options: ExportOptions | undefined): ExportStream {
  const o = checkFields<ExportOptions>('export options', options, EXPORT_FIELDS)
  const format = o.format ?? 'ndjson'
  if (format !== 'ndjson' && format !== 'msgpack') throw new InvalidOptionsError(`export options: format is ndjson or msgpack, not ${JSON.stringify(format)}`, 'format')
  const namespace = o.namespace === undefined ? undefined : checkNamespace(o.namespace, src.config)
  const inRange = (id: string): boolean => namespace === undefined || splitIdentity(id).namespace === namespace
  // One tick: the committed LSN, the pending versions (decoded now: the log's slabs move on) and the snapshot (or its hold).
  const version = src.committedLsn()
  const appliedThrough = src.pending.firstLsn - 1
  const nowMs = src.nowMs()
  const overlay = new Map<string, PendingVersion>()
  for (const id of src.pending.keys()) {
    if (!inRange(id)) continue
    const v = src.pending.lookup(id)
    if (v) overlay.set(id, v)
  }
  const snap = src.snapshot(namespace)
  if (snap === undefined) {
    throw new MemwalError('EXPORT_UNSUPPORTED', 'this store\'s backend gives export no snapshot to read its rows at one version (a BackendSink without exportSnapshot)')
  }
  const header = { memwal: 'export', format: EXPORT_FORMAT, encoding: format, version, ...(namespace !== undefined ? { namespace } : {}) }
  const packr = createPackr()
  const encoder = format === 'ndjson' ? ndjsonEncoder(packr, src.sums) : msgpackEncoder(packr, src.sums)
  const out = { entries: 0 }
  let stream: AsyncGenerator<Buffer>
  let rows: RowSteps<unknown>
  if (snap.kind === 'level') {
    const level = closedOnce(snap.rows)
    rows = level
    stream = encoded(header, encoder, out, (write) =>
      merged(overlay, level, { row: (id, bytes) => writeRow(packr, write, id, bytes, nowMs), put: write.entry, failed: levelFailure(snap.rows, src.assertReadable, version), nowMs }),
    )
  } else {
    const release = src.holdBackendAt(version)
    snap.rows.taken.then(release, release)
    const held = closedOnce(checkedSnapshot(snap.rows, { version, appliedThrough }))
    rows = held
    const keepBytes = format === 'msgpack'
    stream = encoded(header, encoder, out, (write) =>
      merged(overlay, held, {
        row: (id, r) => {
          const e = snapshotRowEntry(packr, id, r, keepBytes, nowMs)
          if (e !== undefined) write.entry(e)
          return e !== undefined
        },
        put: write.entry,
        failed: backendFailure(src.assertReadable, version),
        nowMs,
      }),
    )
  }
  // return() closes the snapshot even before the first read: a generator not yet started never runs its finally.
  const returned = stream.return.bind(stream)
  stream.return = async (value) => {
    try {
      return await returned(value)
    } finally {
      await rows.close()
    }
  }
  return Object.defineProperties(stream, { version: { value: version, enumerable: true }, entries: { get: () => out.entries, enumerable: true } }) as ExportStream
}

/** The same steps, whose close() closes the snapshot once however often it is called (merged's finally, return()). */
function closedOnce<R>(steps: RowSteps<R>): RowSteps<R> {
  let closing: Promise<void> | undefined
  return { next: () => steps.next(), close: () => (closing ??= steps.close()) }
}

/**
 * An asynchronous snapshot whose first step first checks the checkpoint it
 * holds: this writer's records through C, where the header's reasoning
 * needs appliedThrough <= C <= version (EXPORT_INCONSISTENT otherwise).
 */
function checkedSnapshot(rows: BackendSnapshot, at: { readonly version: number; readonly appliedThrough: number }): RowSteps<SnapshotRow> {
  let checked = false
  return {
    async next() {
      if (!checked) {
        const checkpoint = await rows.taken
        checked = true
        if (checkpoint > at.version || checkpoint < at.appliedThrough) {
          throw new MemwalError('EXPORT_INCONSISTENT', `the backend's snapshot holds this writer's records through ${checkpoint}, outside [${at.appliedThrough}, ${at.version}] (applied before the export, its version): is another process using the same writerId, or were the tables restored?`, {
            details: { version: at.version, checkpoint, appliedThrough: at.appliedThrough },
          })
        }
      }
      return rows.next()
    },
    close: () => rows.close(),
  }
}

/** A backend snapshot row as an entry to write (its value's bytes kept as they are, or decoded); undefined when it expired by `nowMs`. */
function snapshotRowEntry(packr: Packr, id: string, r: SnapshotRow, keepBytes: boolean, nowMs: number): ExportEntry | undefined {
  if (r.expiresAt !== null && isExpired(r.expiresAt, nowMs)) return undefined
  return rowEntry(id, keepBytes ? undefined : packr.decode(r.valueBytes), keepBytes ? r.valueBytes : undefined, r.tags, r.expiresAt, nowMs)
}

/**
 * A LevelDB step that failed: the engine closed (ENGINE_CLOSED), or a reopen
 * of the store's LevelDB (level-store.ts, after a failed write) closed the
 * snapshot under the reader: EXPORT_INTERRUPTED. The export can neither
 * start again (it has streamed its header and entries to the caller) nor go
 * on from a new snapshot after the last identity out: a new snapshot is the
 * store after writes past `version` (updates, new entries, deletes whose
 * rows it no longer has), which the overlay taken at the call cannot take
 * back out. So the stream ends without its end record, which an import
 * refuses as truncated, and the caller runs the export again. A step read
 * whole before the reopen is of the snapshot, and is written.
 */
function levelFailure(rows: RowSnapshot, assertReadable: () => void, version: number): (cause: unknown, emitted: number) => Error {
  return (cause, emitted) => {
    assertReadable() // closed under the reader: ENGINE_CLOSED, not LevelDB's error
    if (rows.reopened()) return interrupted(cause, version, emitted, 'the store was reopened after a failed write during the export, which closed its snapshot')
    return osError(cause, 'read the store for export')
  }
}

/** A PostgreSQL step that failed: the engine closed, the snapshot's checkpoint did not fit (EXPORT_INCONSISTENT), or anything PostgreSQL did: EXPORT_INTERRUPTED (for the same reasons as levelFailure's). */
function backendFailure(assertReadable: () => void, version: number): (cause: unknown, emitted: number) => Error {
  return (cause, emitted) => {
    assertReadable()
    if (isMemwalError(cause)) return cause
    return interrupted(cause, version, emitted, `the backend failed during the export (${(cause as Error).message})`)
  }
}

function interrupted(cause: unknown, version: number, emitted: number, what: string): MemwalError {
  return new MemwalError('EXPORT_INTERRUPTED', `${what} (version ${version}) after ${emitted} entries: the stream ends without its end record (an import refuses it as truncated); run it again`, {
    cause,
    transient: true,
    details: { version, entriesEmitted: emitted },
  })
}

/**
 * Writes a LevelDB snapshot row's entry unless it expired by `nowMs`; false
 * when it did (nothing written). Only the row's expiresAt is decoded here:
 * the encoders take the other fields' bytes from the row (rowBounds).
 */
function writeRow(packr: Packr, write: EntryWriter, id: string, row: Uint8Array, nowMs: number): boolean {
  const b = rowBounds(row)
  let expiresAt: number | undefined
  if (row[b.expiresAtStart] !== MSGPACK_NIL) {
    expiresAt = packr.decode(row.subarray(b.expiresAtStart)) as number
    assert(typeof expiresAt === 'number', "a row's expiresAt is a number or nil")
    if (isExpired(expiresAt, nowMs)) return false
  }
  write.row(id, row, b, expiresAt)
  return true
}

/** A backend snapshot row's fields as an entry to write; undefined when it expired by `nowMs`. */
function rowEntry(id: string, value: unknown, valueBytes: Uint8Array | undefined, tags: string[] | null, expiresAt: number | null, nowMs: number): ExportEntry | undefined {
  if (expiresAt !== null && isExpired(expiresAt, nowMs)) return undefined
  const { namespace, key } = splitIdentity(id)
  return { namespace, key, value, valueBytes, tags: tags ?? [], expiresAt: expiresAt ?? undefined }
}

/** A snapshot read a step at a time: rows in identity order, [identity, row] (empty once at the end). */
interface RowSteps<R> {
  next(): Promise<readonly (readonly [string, R])[]>
  close(): Promise<void>
}

/** What merged reads with and writes to. */
interface MergeContext<R> {
  /** Writes a snapshot row's entry into the chunk at hand; false when it expired (nothing written). */
  readonly row: (id: string, r: R) => boolean
  /** Writes a pending put's entry into the chunk at hand. */
  readonly put: (e: ExportEntry) => void
  /** The error a failed step ends the stream with, `emitted` entries out before it. */
  readonly failed: (cause: unknown, emitted: number) => Error
  readonly nowMs: number
}

/**
 * Writes the snapshot's rows and the pending puts, in identity order, and
 * yields (how many it wrote) after each step of rows; an identity with a
 * pending write takes it. Each entry is written from its row as the row
 * comes, so none outlives its row (what stays alive is what the collector copies). An entry expired
 * at `nowMs` (the call's clock, read with the snapshot) is left out, whether
 * or not the sweep has deleted it yet: the export is the store as readers saw
 * it then. While one step is decoded and written, the next is read (on the
 * thread pool, or from PostgreSQL): at most two steps are held. A step that
 * fails ends the stream with `failed`'s error (levelFailure,
 * backendFailure); a step read whole before is of the snapshot, and is
 * written.
 */
async function* merged<R>(overlay: ReadonlyMap<string, PendingVersion>, rows: RowSteps<R>, c: MergeContext<R>): AsyncGenerator<number> {
  const { row, put, failed, nowMs } = c
  const puts: { id: string; entry: ExportEntry }[] = []
  for (const [id, v] of overlay) {
    if (v.kind !== 'put' || isExpired(v.op.expiresAt, nowMs)) continue
    const { op } = v
    puts.push({ id, entry: { namespace: splitIdentity(id).namespace, key: op.key, value: op.value, valueBytes: undefined, tags: op.tags ?? [], expiresAt: op.expiresAt } })
  }
  puts.sort((a, b) => compareCodePoints(a.id, b.id))
  let i = 0
  let emitted = 0 // entries yielded: each step is out once the reader asks for the next
  const read = (): Promise<readonly (readonly [string, R])[]> => {
    const step = rows.next()
    step.catch(() => {}) // read ahead: if the reader stops before awaiting it, its failure is nobody's (the finally closes the snapshot)
    return step
  }
  const settled = async (step: Promise<readonly (readonly [string, R])[]>): Promise<readonly (readonly [string, R])[]> => {
    try {
      return await step
    } catch (cause) {
      throw failed(cause, emitted)
    }
  }
  try {
    let ahead = read()
    for (let step = await settled(ahead); step.length > 0; step = await settled(ahead)) {
      ahead = read()
      let written = 0
      for (const [id, r] of step) {
        while (i < puts.length && compareCodePoints((puts[i] as { id: string }).id, id) < 0) {
          put((puts[i++] as { entry: ExportEntry }).entry)
          written++
        }
        if ((overlay.size > 0 && overlay.has(id)) || !row(id, r)) continue // no pending write: no lookup (hashing the identity)
        written++
      }
      yield written
      emitted += written
    }
  } finally {
    await rows.close()
  }
  if (i === puts.length) return
  for (const p of puts.slice(i)) put(p.entry)
  yield puts.length - i
}

// ---- import ----

export interface ImportSink {
  readonly config: PutLimits & { readonly wal: { readonly limits: { readonly recordBytesMax: number } } }
  readonly sums: Checksums
  /** Whether the store's backend takes a key holding NUL (BackendSink.keysMayHoldNul): an entry with one is refused where it stands in the source. */
  readonly keysMayHoldNul: boolean
  /** Writes one logged batch of puts, atomic, acknowledged once durable. */
  batch(ops: readonly BatchOp[]): Promise<{ lsn: number }>
  /** Writes one put as a record of its own (as db.put does): a batch of one takes 2 bytes more, which an entry at put's maximum has not. */
  put(op: ImportPut): Promise<{ lsn: number }>
}

/** A put as import writes it. */
export type ImportPut = Extract<BatchOp, { readonly type: 'put' }>

/** Where a record of the source starts: its line (ndjson) or its byte offset (msgpack). */
interface Place {
  readonly line?: number
  readonly offset: number
}

/** One record of the source, parsed but not yet checked. */
interface SourceRecord {
  readonly place: Place
  readonly record: unknown
  /** Bytes of the source read once this record is. */
  readonly read: number
  /** Its checksum was verified (every msgpack frame; an ndjson line that ends with one). */
  readonly checked: boolean
}

/**
 * Writes an export stream into the store through the log, in batches of puts
 * (one record each: atomic). Every record is checked before its batch is
 * written; a bad one (or a stream without its end record: truncated) is
 * IMPORT_INVALID naming its line (ndjson) or byte offset (msgpack), and the
 * batches before the one it falls in are written, nothing of that batch or
 * after (details.entriesWritten). Running it twice leaves the same entries.
 */
export async function importEntries(sink: ImportSink, source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, options: ImportOptions | undefined): Promise<ImportResult> {
  const o = checkFields<ImportOptions>('import options', options, IMPORT_FIELDS)
  const l = sink.config
  const batchOps = o.batchOps ?? Math.min(BATCH_OPS_DEFAULT, l.batchOpsMax)
  if (batchOps < 1 || batchOps > l.batchOpsMax) throw new InvalidOptionsError(`import options: batchOps must be an integer in [1, ${l.batchOpsMax}] (batchOpsMax), not ${batchOps}`, 'batchOps')
  const recordBytesMax = l.wal.limits.recordBytesMax
  // A record of the source may be larger than the put it becomes (the JSON form), never beyond LINE_EXPANSION_MAX times.
  const recordMax = Math.max(LINE_EXPANSION_MAX * recordBytesMax, 1 << 20)
  const packr = createPackr()
  const sizer = new PutRecordSizer(packr)
  let entries = 0
  let expired = 0
  let batches = 0
  let lsn: number | undefined
  let batch: ImportPut[] = []
  let batchBytes = 0 // the batch's puts' PutRecordSizer.opBytes: exact
  let read = 0
  const refuse = (place: Place, what: string, cause?: unknown): MemwalError => {
    const where = place.line !== undefined ? `line ${place.line}` : `byte offset ${place.offset}`
    return new MemwalError('IMPORT_INVALID', `import: ${where}: ${what}; the ${entries} entries of the ${batches} batches before it are written, nothing from its batch on`, {
      ...(cause !== undefined ? { cause } : {}),
      details: { ...place, entriesWritten: entries, batchesWritten: batches },
    })
  }
  const write = async (): Promise<void> => {
    if (batch.length === 0) return
    // Expired while the batch filled (a slow source): put would refuse it.
    const now = l.clock.nowMs()
    const live = batch.filter((op) => op.type !== 'put' || op.expiresAt === undefined || op.expiresAt > now + EXPIRED_MARGIN_MS)
    expired += batch.length - live.length
    if (live.length > 0) {
      // One put goes as a put record: the same, atomic, 2 bytes shorter (an entry at put's maximum fits no batch).
      lsn = (await (live.length === 1 ? sink.put(live[0] as ImportPut) : sink.batch(live))).lsn
      batches++
    }
    entries += live.length
    batch = []
    batchBytes = 0
    o.onProgress?.({ entries, batches, bytes: read })
  }
  const records = readRecords(source, recordMax, sink.sums)
  let exportVersion: number | undefined
  let sourceFormat = EXPORT_FORMAT
  let ended = false
  let seen = 0
  let last: Place = { offset: 0, line: 0 }
  let before: string | undefined // the identity of the entry before, for the order check
  try {
    for await (const r of records) {
      last = r.place
      read = r.read
      if (ended) throw refuse(r.place, 'something follows the end record')
      if (exportVersion === undefined) {
        ;({ version: exportVersion, format: sourceFormat } = checkHeader(r.record, (what) => refuse(r.place, what)))
        if (sourceFormat >= CHECKSUMMED_FORMAT && !r.checked) throw refuse(r.place, `the header has no checksum, which format ${sourceFormat} gives every line (damaged)`)
        if (sourceFormat >= NUMBERED_FORMAT) checkPlace(r.record, 0, (what) => refuse(r.place, what))
        continue
      }
      if (sourceFormat >= CHECKSUMMED_FORMAT && !r.checked) throw refuse(r.place, `a line without its checksum, which format ${sourceFormat} gives every line (damaged)`)
      // Every record before this one (the header, `seen` entries) was read in its place: this one is due next.
      if (sourceFormat >= NUMBERED_FORMAT) checkPlace(r.record, seen + 1, (what) => refuse(r.place, what))
      const rec = r.record as Record<string, unknown>
      if (isObject(rec) && rec['memwal'] === 'end') {
        if (rec['entries'] !== seen) throw refuse(r.place, `the end record counts ${String(rec['entries'])} entries, the stream holds ${seen}`)
        ended = true
        continue
      }
      seen++
      const checked = checkEntry(r.record, r.place.line !== undefined, l, { packr, sizer, keysMayHoldNul: sink.keysMayHoldNul }, (what, cause) => refuse(r.place, what, cause))
      // After the entry check: its namespace and key are ones put takes.
      if (sourceFormat >= CHECKSUMMED_FORMAT) before = checkOrder(rec, before, (what) => refuse(r.place, what))
      if (checked === 'expired') {
        expired++
        continue
      }
      const { op, bytes } = checked
      // Exactly what put checks: an entry put takes is imported, alone in its record if it must be.
      const alone = sizer.putBytes(bytes)
      if (alone > recordBytesMax) throw refuse(r.place, `the entry takes ${alone} bytes as a record, more than recordBytesMax ${recordBytesMax} (put refuses it too)`)
      if (batch.length > 0 && sizer.batchBytes(batch.length + 1, batchBytes + bytes) > recordBytesMax) await write()
      batch.push(op)
      batchBytes += bytes
      // Written once full, not when the next entry comes: a damaged next line then finds it already written.
      if (batch.length >= batchOps) await write()
    }
  } catch (err) {
    if (isMemwalError(err) && err.code === 'IMPORT_INVALID') throw err
    if (err instanceof SourceError) throw refuse(err.place, err.message)
    throw err
  }
  if (exportVersion === undefined) throw refuse(last, 'the source is empty: no export header')
  if (!ended) throw refuse({ ...last, ...(last.line !== undefined ? { line: last.line + 1 } : {}), offset: read }, 'the stream ends without its end record (truncated)')
  await write()
  return { entries, expired, batches, exportVersion, ...(lsn !== undefined ? { lsn } : {}) }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map)
}

function checkHeader(r: unknown, refuse: (what: string) => MemwalError): { version: number; format: number } {
  if (!isObject(r) || r['memwal'] !== 'export') throw refuse('not a memwal export (the first record is not its header)')
  const format = r['format']
  if (typeof format !== 'number' || !Number.isInteger(format) || format < 1 || format > EXPORT_FORMAT) throw refuse(`export format ${String(format)} is not one this memwal reads (1 to ${EXPORT_FORMAT})`)
  const version = r['version']
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) throw refuse('the header has no version')
  return { version, format }
}

/**
 * Format 3: the record's place in the stream (`n`) is `due`, or it is
 * refused, saying whether records before it are missing or it came already.
 * Then `n` goes: it is the stream's, not the record's.
 */
function checkPlace(r: unknown, due: number, refuse: (what: string) => MemwalError): void {
  if (!isObject(r)) return // not a record: refused as one
  const n = r['n']
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw refuse(`a record without its place in the stream ("n"), which format ${NUMBERED_FORMAT} gives every record (damaged)`)
  if (n > due) throw refuse(`record ${n} of the export where record ${due} was due: ${n - due === 1 ? 'the record' : `${n - due} records`} before it missing (a line dropped, or lines moved)`)
  if (n < due) throw refuse(`record ${n} of the export again where record ${due} was due (a line repeated, or lines moved)`)
  delete r['n']
}

/**
 * Formats 2 and 3: an export lists its entries in identity order, each once,
 * so an entry not strictly after the one before was moved or repeated.
 * Resolves the entry's identity (the next one's `before`); a record without
 * a string namespace and key is left to the entry check, which refuses it.
 */
function checkOrder(r: unknown, before: string | undefined, refuse: (what: string) => MemwalError): string | undefined {
  if (!isObject(r)) return before
  const { namespace, key } = r
  if (typeof namespace !== 'string' || typeof key !== 'string') return before
  const id = identityOf(namespace, key)
  if (before !== undefined) {
    const c = compareCodePoints(id, before)
    const was = splitIdentity(before)
    if (c === 0) throw refuse(`the entry ${JSON.stringify(key)} in namespace ${JSON.stringify(namespace)} again (a line repeated)`)
    if (c < 0) throw refuse(`the entry ${JSON.stringify(key)} in namespace ${JSON.stringify(namespace)} after ${JSON.stringify(was.key)} in ${JSON.stringify(was.namespace)}: an export lists entries in (namespace, key) order (lines moved)`)
  }
  return id
}

const ENTRY_FIELDS = new Set(['namespace', 'key', 'value', 'tags', 'expiresAt'])

/** One entry record as a put, checked as put checks it, and the bytes it takes in a batch record (PutRecordSizer.opBytes); or 'expired' (not to be written). */
function checkEntry(r: unknown, json: boolean, l: PutLimits, c: { readonly packr: Packr; readonly sizer: PutRecordSizer; readonly keysMayHoldNul: boolean }, refuse: (what: string, cause?: unknown) => MemwalError): { op: ImportPut; bytes: number } | 'expired' {
  if (!isObject(r)) throw refuse('an entry is not an object')
  for (const k of Object.keys(r)) if (!ENTRY_FIELDS.has(k)) throw refuse(`an entry has an unknown field ${JSON.stringify(k)}`)
  if (!Object.hasOwn(r, 'value')) throw refuse('an entry has no value')
  let value: unknown
  try {
    value = json ? decodeJsonValue(r['value']) : r['value']
  } catch (cause) {
    throw refuse(`the value is not in memwal's JSON form: ${(cause as Error).message}`, cause)
  }
  const expiresAt = r['expiresAt']
  let bytes: number
  let put: ReturnType<typeof checkPutOptions>
  let key: string
  try {
    key = checkKey(r['key'], l)
    refuseNulKey(key, 'key', c.keysMayHoldNul)
    if (r['namespace'] === undefined) throw new InvalidOptionsError('an entry has no namespace', 'namespace')
    put = checkPutOptions({ namespace: r['namespace'], tags: r['tags'] }, l)
    if (value === undefined) throw new MemwalError('ENGINE_INVALID_VALUE', 'value at $: undefined')
    bytes = packValue(c.packr, value).length
    // Checked like the rest first: an expired entry is skipped only when it is otherwise one put would take.
    if (typeof expiresAt === 'number' && Number.isSafeInteger(expiresAt) && expiresAt <= l.clock.nowMs() + EXPIRED_MARGIN_MS) return 'expired'
    if (expiresAt !== undefined) put = checkPutOptions({ namespace: put.namespace, tags: put.tags, expiresAt }, l)
  } catch (cause) {
    if (!isMemwalError(cause)) throw cause
    throw refuse(`${cause.message} [${cause.code}]`, cause)
  }
  const op: ImportPut = { type: 'put', key, value, ...put }
  return { op, bytes: c.sizer.opBytes(op, bytes) }
}

/** The source is not a well-formed stream at `place`. */
class SourceError extends Error {
  constructor(
    readonly place: Place,
    message: string,
  ) {
    super(message)
  }
}

/**
 * The source's records: ndjson when it starts with `{`, else msgpack frames.
 * Linear in the source's size however it is cut into chunks (SourceBytes):
 * each byte is searched for a newline once, a frame's header read once its
 * 8 bytes are in, and a record is a view of the bytes once it is whole.
 */
async function* readRecords(source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>, recordMax: number, sums: Checksums): AsyncGenerator<SourceRecord> {
  const bytes = new SourceBytes()
  let base = 0 // source offset of the first byte held
  let scanned = 0 // ndjson: the bytes held that were searched for a newline (none there)
  let line = 0
  let kind: 'ndjson' | 'msgpack' | undefined
  let packr: ReturnType<typeof createPackr> | undefined
  const parse = function* (final: boolean): Generator<SourceRecord> {
    for (;;) {
      if (kind === undefined) {
        if (bytes.length === 0) return
        kind = bytes.at(0) === 0x7b ? 'ndjson' : 'msgpack'
      }
      if (kind === 'ndjson') {
        const nl = bytes.indexOf(0x0a, scanned)
        // Refused whether the newline came in the same chunk or not: what is refused does not hang on how the source is cut.
        if ((nl < 0 ? bytes.length : nl) > recordMax) throw new SourceError({ line: line + 1, offset: base }, `a line longer than ${recordMax} bytes`)
        if (nl < 0) {
          scanned = bytes.length
          if (!final || bytes.length === 0) return
          // The last line without its newline: read it (it may be the end record cut short; then it fails to parse).
        }
        const end = nl < 0 ? bytes.length : nl
        const consumed = nl < 0 ? end : nl + 1
        const text = bytes.take(consumed).subarray(0, end)
        scanned = 0
        line++
        const place = { line, offset: base }
        base += consumed
        const sum = lineSum(text, sums, place)
        let record: unknown
        try {
          record = JSON.parse(text.toString('utf8'))
        } catch (cause) {
          throw new SourceError(place, `not JSON (${(cause as Error).message})`)
        }
        // The checksum field is the stream's, not the record's: checked here, then gone.
        if (sum !== undefined && typeof record === 'object' && record !== null && (record as Record<string, unknown>)['xxh32'] === sum) delete (record as Record<string, unknown>)['xxh32']
        yield { place, record, read: base, checked: sum !== undefined }
        continue
      }
      if (bytes.length < FRAME_HEADER_BYTES) {
        if (final && bytes.length > 0) throw new SourceError({ offset: base }, `a frame header cut short (${bytes.length} of ${FRAME_HEADER_BYTES} bytes): truncated`)
        return
      }
      const length = bytes.readUInt32BE(0)
      if (length > recordMax) throw new SourceError({ offset: base }, `a frame of ${length} bytes, more than ${recordMax} (not a memwal export, or damaged)`)
      if (bytes.length < FRAME_HEADER_BYTES + length) {
        if (final) throw new SourceError({ offset: base }, `a frame of ${length} bytes cut short at ${bytes.length - FRAME_HEADER_BYTES}: truncated`)
        return
      }
      const place = { offset: base }
      const frame = bytes.take(FRAME_HEADER_BYTES + length)
      base += frame.length
      // A view of SourceBytes' own copy: the values unpack gives as views of it stay as they are.
      const payload = frame.subarray(FRAME_HEADER_BYTES)
      if (sums.h32(payload, EXPORT_SEED) !== frame.readUInt32BE(4)) throw new SourceError(place, 'a frame whose checksum does not match (damaged)')
      packr ??= createPackr()
      let record: unknown
      try {
        record = packr.unpack(payload)
      } catch (cause) {
        throw new SourceError(place, `a frame that is not msgpack (${(cause as Error).message})`)
      }
      yield { place, record, read: base, checked: true }
    }
  }
  for await (const chunk of source) {
    bytes.append(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk)
    yield* parse(false)
  }
  yield* parse(true)
}

/**
 * The checksum an ndjson line ends with (its hex), verified against the
 * bytes before it; undefined when the line ends with none (format 1). A
 * mismatch is damage: refused here, before the line is parsed.
 */
function lineSum(bytes: Buffer, sums: Checksums, place: Place): string | undefined {
  const at = bytes.length - LINE_SUM_BYTES
  if (at < 0 || !bytes.subarray(at, at + LINE_SUM_HEAD.length).equals(LINE_SUM_HEAD) || bytes.at(-2) !== 0x22 || bytes.at(-1) !== 0x7d) return undefined
  const hex = bytes.subarray(at + LINE_SUM_HEAD.length, bytes.length - 2).toString('latin1')
  if (!HEX8.test(hex)) return undefined
  if (sums.h32(bytes.subarray(0, at), EXPORT_SEED) !== Number.parseInt(hex, 16)) throw new SourceError(place, 'a line whose checksum does not match (damaged)')
  return hex
}
