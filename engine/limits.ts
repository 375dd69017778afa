import { InvalidOptionsError } from './errors.js'

/**
 * Every limit with its unit. Defaults are written once, here; options may
 * lower or raise them within the hard bounds, and their relations are asserted
 * in `checkWalLimits`.
 */
export const limits = {
  /** Namespaces listNamespaces returns: by default, and at most (a limit beyond it is refused). */
  namespacesListedDefault: 1000,
  namespacesListedMax: 100_000,
  /** Open watches per engine (each is a pull loop woken on every acknowledgement). */
  watchersMax: 1024,
  /**
   * Exports open at once over a backend whose snapshot is a transaction on a
   * connection of its own (PgBackend): each holds a server connection and
   * an open snapshot (which holds back vacuum) while it is read.
   */
  pgExportsOpenMax: 8,
  /**
   * How far behind the last record an open watch holds back retention; a
   * watch further behind stops holding (its next read past what was purged is
   * HISTORY_PURGED): a consumer that stopped reading cannot fill the disk.
   */
  watchHoldRecordsMax: 1_000_000,
  /**
   * Payload bytes one read from the segments brings a watch at most (past
   * its first record): what a watch that fell behind holds in memory. A read
   * goes on from where the watch's last one left off (the segment's bytes
   * from that frame on), so each segment is read and verified about once.
   */
  watchLogChunkBytes: 8 * 1024 * 1024,
  /** Largest LSN a JavaScript number holds exactly. */
  lsnMax: Number.MAX_SAFE_INTEGER,
  /** Default and hard maximum size of one record's payload. */
  recordBytesDefault: 4 * 1024 * 1024,
  recordBytesHardMax: 64 * 1024 * 1024,
  /** Segment size: default, and the range accepted. */
  segmentBytesDefault: 64 * 1024 * 1024,
  segmentBytesMin: 64 * 1024,
  segmentBytesHardMax: 1024 * 1024 * 1024,
  /**
   * The first segment of a log and the spare prepared after a reopen: segments
   * start this small (or at segmentBytes, if that is smaller) and grow with the
   * write rate up to segmentBytes (log/segment-sizing.ts).
   */
  segmentBytesInitialDefault: 1024 * 1024,
  /** A segment that filled within this many ms doubles the size of the next spare. */
  segmentGrowWithinMsDefault: 10_000,
  /** One group commit: how many bytes go out in one write call at most. */
  groupBytesDefault: 4 * 1024 * 1024,
  /** Groups up to this size are written without a thread-pool round trip (see WriterConfig). */
  inlineWriteBytesDefault: 8 * 1024,
  /** Records queued for the writer, not yet written: beyond this, appends wait. */
  queueBytesDefault: 64 * 1024 * 1024,
  /** interval durability: how often unsynced bytes are fdatasync'd. */
  syncIntervalMsDefault: 100,
  syncIntervalMsMax: 60_000,
  /**
   * The bounds of the LevelDB store's group sync (sinks/store-sync.ts; the
   * defaults are options.ts engineDefaults'): apply batches are written
   * unsynced and the store is synced this long after the first unsynced
   * write, or once this many bytes were written unsynced. Retention waits for
   * the sync; a power loss takes about that much of the store's applies,
   * which the appliers replay from the log.
   */
  storeSyncIntervalMsMin: 1,
  storeSyncIntervalMsMax: 60_000,
  storeSyncBytesMin: 4096,
  storeSyncBytesMax: 1024 * 1024 * 1024,
  /** Declared gaps kept in `gaps.json`: beyond this the oldest acknowledged ones are forgotten (unacknowledged ones never). */
  gapRecordsMax: 1000,
  /** `memwal status` verifies the whole directory (a dry-run fsck) only when its segments hold at most this many bytes. */
  statusVerifyBytesMax: 256 * 1024 * 1024,
  /**
   * Expiry (put's ttlMs / expiresAt). The largest expiresAt is the largest
   * instant a Date holds (ms since the epoch); an expiry may lie at most
   * expiryHorizonMsMax (100 years of 365.25 days) past the engine's clock.
   */
  expiresAtMax: 8_640_000_000_000_000,
  expiryHorizonMsMax: 3_155_760_000_000,
  /** The expiry sweep: how often it runs (default and range), and how much one round removes. */
  sweepIntervalMsDefault: 1_000,
  sweepIntervalMsMin: 10,
  sweepIntervalMsMax: 3_600_000,
  /** Expired entries one sweep round removes at most; the rest wait for the next round. */
  sweepEntriesPerRoundDefault: 10_000,
  sweepEntriesPerRoundMax: 100_000,
  /** Deletes per logged batch record a sweep appends: small enough that one batch is one small group commit. */
  /**
   * Operations in one apply batch (besides applyBatchRecordsMax and
   * applyBatchBytesMax): what one sink apply holds the acknowledging thread
   * for. A record of more operations goes alone. Records of many small
   * operations (the expiry sweep's 256 deletes, batches of deletes) passed
   * the byte bound only at about 23,000 operations, whose index work held
   * the thread for tens of milliseconds while writers waited.
   */
  applyBatchOpsMax: 4096,
  sweepBatchOpsDefault: 256,
  sweepBatchOpsMax: 10_000,
  /** Results of one query, or one page: default and maximum. */
  queryResultsDefault: 1000,
  queryResultsMax: 100_000,
  /** Characters of a query cursor: a longer string is refused before it is decoded. */
  queryCursorCharsMax: 8192,
  /** Bytes of the per-store secret that signs query cursors. */
  queryCursorSecretBytes: 32,
  /** Dead-letter resolutions (retried, dropped) kept in `deadletter/resolved.json`, which is rewritten whole: beyond this, refused. */
  deadLetterResolutionsMax: 100_000,
} as const

export interface WalLimits {
  readonly recordBytesMax: number
  readonly segmentBytes: number
  readonly groupBytesMax: number
  readonly queueBytesMax: number
}

function need(ok: boolean, what: string): void {
  if (!ok) throw new InvalidOptionsError(what)
}

const inRange = (v: number, min: number, max: number): boolean => Number.isInteger(v) && v >= min && v <= max

/**
 * Checks the limits against each other; a user's option outside them is a
 * typed error that names the option and the range it must be in. The
 * segment size first: the other ranges are derived from it.
 */
export function checkWalLimits(l: WalLimits, frameOverheadBytes: number, segmentHeaderBytes: number): void {
  need(inRange(l.segmentBytes, limits.segmentBytesMin, limits.segmentBytesHardMax), `segmentBytes must be an integer in [${limits.segmentBytesMin}, ${limits.segmentBytesHardMax}] bytes, not ${String(l.segmentBytes)}`)
  // A record of the largest size must fit in an empty segment, or it could never be written.
  const recordMax = Math.min(limits.recordBytesHardMax, l.segmentBytes - segmentHeaderBytes - frameOverheadBytes)
  need(inRange(l.recordBytesMax, 1, recordMax), `recordBytesMax must be an integer in [1, ${recordMax}] bytes (at most ${limits.recordBytesHardMax}, and one record must fit in a segment of segmentBytes ${l.segmentBytes}), not ${String(l.recordBytesMax)}`)
  need(Number.isInteger(l.groupBytesMax) && l.groupBytesMax >= frameOverheadBytes + l.recordBytesMax, `groupBytesMax must be an integer of at least ${frameOverheadBytes + l.recordBytesMax} bytes (one maximal record), not ${String(l.groupBytesMax)}`)
  need(Number.isInteger(l.queueBytesMax) && l.queueBytesMax >= l.groupBytesMax, `queueBytesMax must be an integer of at least groupBytesMax ${l.groupBytesMax} bytes, not ${String(l.queueBytesMax)}`)
}
