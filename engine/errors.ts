/**
 * Every refusal memwal makes is a MemwalError with a stable `code`.
 * The code is the API; the message may change. `transient` says whether the
 * same call may succeed later without anyone repairing anything.
 */
export type ErrorCode =
  | 'WAL_CORRUPT_FRAME'
  | 'WAL_CORRUPT_HEADER'
  | 'WAL_TORN_TAIL'
  | 'WAL_HOLE'
  | 'WAL_MISSING_SEGMENT'
  | 'WAL_LSN_SEQUENCE'
  | 'WAL_UNKNOWN_VERSION'
  | 'WAL_RECORD_TOO_LARGE'
  | 'WAL_WRITE_FAILED'
  | 'WAL_FAILED'
  | 'WAL_CLOSED'
  | 'WAL_INVALID_RECORD'
  | 'ENGINE_INVALID_KEY'
  | 'ENGINE_INVALID_VALUE'
  | 'ENGINE_BACKLOG_FULL'
  /** A conditional write's versions kept changing while the gate read them: transient, retry (not the backlog). */
  | 'ENGINE_GATE_BUSY'
  | 'ENGINE_BACKEND_UNAVAILABLE'
  | 'ENGINE_FAILED'
  | 'ENGINE_CLOSED'
  | 'ENGINE_FLUSH_TIMEOUT'
  | 'ENGINE_READ_ONLY'
  /**
   * A sink halted (its `classify` said `halt`: PgBackend found its checkpoint row lost): the engine is read-only until
   * reopened, and what would need that sink to take more is refused at once, not left waiting: `flush()` (one waiting
   * when it halts, and any call after) and `verify({ repair: true })` (a repair would write past the halt). Not
   * transient. details.sink, details.haltCode (the halt's own code); `cause` is the halt's error.
   */
  | 'SINK_HALTED'
  | 'SINK_APPLY_FAILED'
  | 'SINK_TIMEOUT'
  | 'SINK_BREAKER_OPEN'
  | 'STORE_UNKNOWN_LAYOUT'
  /** LevelDB's store lost what opening it needs (its CURRENT file, with tables still there): refused, nothing written (sinks/store-dir.ts). details.dir. */
  | 'STORE_DAMAGED'
  /**
   * A backend's schema lost what memwal created in it (PostgreSQL: a table dropped, the schema dropped, privileges
   * revoked): refused at open naming what is missing (details.missing), and the apply's error while open
   * (details.sqlState), transient (it applies again once the schema is restored). Also at the open of a directory that
   * applied records there when the schema or its checkpoint row is gone (details.missing ['schema'] or ['checkpoint row'],
   * details.writerId, dirId): nothing recreated (sinks/pg/pg-claim.ts). And, not transient, an apply while open that found
   * this writer's checkpoint row missing, behind the checkpoint it last wrote, or bound to another directory
   * (details.expected, found): nothing written, the applier halts (sinks/pg/pg-backend.ts). Other TRUNCATEs are not
   * seen: PgBackend.verifyLog.
   */
  | 'BACKEND_SCHEMA_DAMAGED'
  /**
   * The LevelDB store kept changing under the private copy status and a dry-run fsck read it from
   * (sinks/store-view.ts): each copy raced a live engine's compaction. Transient, not damage: run again when it is idle.
   * details.dir, details.attempts.
   */
  | 'STORE_CHANGING'
  | 'VERSION_MISMATCH'
  | 'DIR_NOT_FOUND'
  | 'DIR_NOT_MEMWAL'
  /**
   * A data directory opened with another backend than the one its BACKEND record names (log/backend-record.ts):
   * details.path, details.recorded (null: no record, but its store shows another backend), details.given. Nothing written.
   */
  | 'BACKEND_MISMATCH'
  /**
   * A PgBackend's writer id is bound to another data directory (its checkpoint row's dir_id): two directories writing
   * under one id lose records; or unbound (schema 5) with a checkpoint that a new directory, holding no records, cannot have
   * written (details.boundTo null). details.writerId, details.schema, details.dirId (this directory's), details.boundTo,
   * details.checkpoint. Nothing applied, and a BACKEND record this open wrote is removed (backend-claim.ts).
   */
  | 'WRITER_IN_USE'
  | 'PERMISSION_DENIED'
  | 'LOCK_HELD'
  | 'LOCK_COMPROMISED'
  | 'IO_ERROR'
  | 'INVALID_OPTIONS'
  | 'QUERY_INVALID_CURSOR'
  | 'ASSERTION_FAILED'
  | 'ADAPTER_PEER_MISSING'
  | 'ADAPTER_INVALID_ARGUMENT'
  | 'ADAPTER_SCAN_TOO_LARGE'
  | 'DEADLETTER_NOT_FOUND'
  | 'DEADLETTER_LIMIT'
  | 'HISTORY_PURGED'
  | 'BACKUP_UNSUPPORTED'
  /**
   * A directory a backup or a restore was building when it was interrupted (killed, power lost): it holds the
   * `INCOMPLETE` sentinel (log/data-dir.ts), and no tool restores, opens or checks it. details.path, details.sentinel.
   */
  | 'BACKUP_INCOMPLETE'
  | 'TARGET_NOT_EMPTY'
  /** An export stream memwal cannot import: details.line (ndjson) or details.offset (msgpack) names where, details.entriesWritten what went in before. */
  | 'IMPORT_INVALID'
  /** The store's backend gives export no snapshot (a BackendSink of one's own without exportSnapshot). */
  | 'EXPORT_UNSUPPORTED'
  /**
   * An export's PostgreSQL snapshot holds this writer's records through a checkpoint that does not fit its log (past the
   * export's version, or before records already applied: another process with the same writerId, or the tables
   * restored): details.version, details.checkpoint, details.appliedThrough.
   */
  | 'EXPORT_INCONSISTENT'
  /** limits.pgExportsOpenMax exports are open over PostgreSQL: transient, finish one. */
  | 'EXPORT_BUSY'
  /**
   * An export's snapshot could not be read whole: the store's LevelDB was reopened (after a failed write), or PostgreSQL
   * failed or ended the transaction. What it emitted is not whole (no end record); run it again. details.version,
   * details.entriesEmitted.
   */
  | 'EXPORT_INTERRUPTED'

export interface ErrorOptions {
  readonly cause?: unknown
  readonly transient?: boolean
  readonly details?: Readonly<Record<string, unknown>>
}

export class MemwalError extends Error {
  readonly code: ErrorCode
  readonly transient: boolean
  readonly details: Readonly<Record<string, unknown>>

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.transient = options.transient ?? false
    this.details = options.details ?? {}
  }
}

/** Where in the log something was found: the place every corruption report names. */
export interface LogPlace {
  readonly segment: string
  readonly offset: number
  /** First and last LSN affected, when known. */
  readonly lsnFirst?: number
  readonly lsnLast?: number
}

/** Bytes on disk that do not form a valid frame, header or sequence (G5). */
export class CorruptionError extends MemwalError {
  readonly place: LogPlace
  constructor(code: ErrorCode, message: string, place: LogPlace, options: ErrorOptions = {}) {
    super(code, `${message} (segment ${place.segment}, offset ${place.offset}${lsnText(place)})`, {
      ...options,
      details: { ...options.details, ...place },
    })
    this.place = place
  }
}

/** A write or sync the operating system refused. */
export class IoError extends MemwalError {}

/** The WAL stopped accepting writes after an fsync failure or an unrecoverable write failure (G2). */
export class WalFailedError extends MemwalError {
  constructor(message: string, cause?: unknown) {
    super('WAL_FAILED', message, { cause })
  }
}

export class WalClosedError extends MemwalError {
  constructor() {
    super('WAL_CLOSED', 'the write-ahead log is closed')
  }
}

export class RecordTooLargeError extends MemwalError {
  constructor(bytes: number, max: number) {
    super('WAL_RECORD_TOO_LARGE', `record of ${bytes} bytes exceeds recordBytesMax ${max}`, {
      details: { bytes, max },
    })
  }
}

export class LockHeldError extends MemwalError {
  constructor(dir: string, holder: string, cause?: unknown) {
    super('LOCK_HELD', `data directory ${dir} is locked by ${holder}`, { cause, details: { dir, holder } })
  }
}

/** A sink call that did not settle within applyTimeoutMs: abandoned (it cannot be cancelled), and counted against the breaker. */
export class SinkTimeoutError extends MemwalError {
  constructor(timeoutMs: number) {
    super('SINK_TIMEOUT', `no answer in ${timeoutMs} ms`, { transient: true, details: { timeoutMs } })
  }
}

/** A sink call refused without trying: the sink's circuit breaker is open (or held open while an abandoned call runs). */
export class BreakerOpenError extends MemwalError {
  constructor(why: string) {
    super('SINK_BREAKER_OPEN', `the circuit breaker is open: ${why}`, { transient: true })
  }
}

export class InvalidOptionsError extends MemwalError {
  /** `field` names the option refused (details.field): `namespace`, `ops[3].ifVersion`. */
  constructor(message: string, field?: string) {
    super('INVALID_OPTIONS', message, field !== undefined ? { details: { field } } : {})
  }
}

export class AssertionFailedError extends MemwalError {
  constructor(message: string) {
    super('ASSERTION_FAILED', `invariant violated: ${message}`)
  }
}

function lsnText(place: LogPlace): string {
  if (place.lsnFirst === undefined) return ''
  if (place.lsnLast === undefined || place.lsnLast === place.lsnFirst) return `, LSN ${place.lsnFirst}`
  return `, LSNs ${place.lsnFirst}-${place.lsnLast}`
}

export function isMemwalError(err: unknown): err is MemwalError {
  return err instanceof MemwalError
}

/** What the operating system says when memwal may not do something, and what fixes it. */
const PERMISSION_FIXES: Readonly<Record<string, string>> = {
  EACCES: 'run memwal as the user that owns the data directory, or give this user read, write and search (x) access to it and its parents',
  EPERM: 'run memwal as the user that owns the data directory, or give this user read, write and search (x) access to it and its parents',
  EROFS: 'the filesystem is mounted read-only: remount it read-write, or use a data directory on a writable filesystem',
}

/**
 * The one place where an error from the operating system becomes a
 * MemwalError: a permission refusal (EACCES, EPERM, EROFS) is always
 * PERMISSION_DENIED, naming the path refused and the fix; anything else is
 * IO_ERROR saying what memwal was doing. A MemwalError passes through as it is.
 */
export function osError(cause: unknown, doing: string, path?: string): MemwalError {
  if (isMemwalError(cause)) return cause
  const e = (typeof cause === 'object' && cause !== null ? cause : {}) as { code?: unknown; path?: unknown; message?: unknown }
  const code = typeof e.code === 'string' ? e.code : undefined
  const where = typeof e.path === 'string' ? e.path : path
  const fix = code !== undefined ? PERMISSION_FIXES[code] : undefined
  if (fix !== undefined) {
    return new MemwalError('PERMISSION_DENIED', `permission denied: ${where ?? '(unknown path)'} (${code ?? ''}, while trying to ${doing}): ${fix}`, { cause, details: { path: where, errno: code } })
  }
  const message = typeof e.message === 'string' ? e.message : String(cause)
  return new MemwalError('IO_ERROR', `cannot ${doing}: ${message}`, { cause, details: { ...(where !== undefined ? { path: where } : {}), ...(code !== undefined ? { errno: code } : {}) } })
}
