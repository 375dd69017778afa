import { InvalidOptionsError } from './errors.js'

/**
 * Every limit with its unit. Defaults are written once, here; options may
 * lower or raise them within the hard bounds, and their relations are asserted
 * in `checkWalLimits`.
 */
export const limits = {
  /** Largest LSN a JavaScript number holds exactly. */
  lsnMax: Number.MAX_SAFE_INTEGER,
  /** Default and hard maximum size of one record's payload. */
  recordBytesDefault: 4 * 1024 * 1024,
  recordBytesHardMax: 64 * 1024 * 1024,
  /** Segment size: default, and the range accepted. */
  segmentBytesDefault: 64 * 1024 * 1024,
  segmentBytesMin: 64 * 1024,
  segmentBytesHardMax: 1024 * 1024 * 1024,
  /** One group commit: how many bytes go out in one write call at most. */
  groupBytesDefault: 4 * 1024 * 1024,
  /** Groups up to this size are written without a thread-pool round trip (see WriterConfig). */
  inlineWriteBytesDefault: 8 * 1024,
  /** Records queued for the writer, not yet written: beyond this, appends wait. */
  queueBytesDefault: 64 * 1024 * 1024,
  /** interval durability: how often unsynced bytes are fdatasync'd. */
  syncIntervalMsDefault: 100,
  syncIntervalMsMax: 60_000,
} as const

export interface WalLimits {
  readonly recordBytesMax: number
  readonly segmentBytes: number
  readonly groupBytesMax: number
  readonly queueBytesMax: number
}

function need(ok: boolean, what: string): void {
  if (!ok) throw new InvalidOptionsError(`invalid limits: ${what}`)
}

/** Checks the limits against each other; a user's option outside them is a typed error. */
export function checkWalLimits(l: WalLimits, frameOverheadBytes: number, segmentHeaderBytes: number): void {
  need(Number.isInteger(l.recordBytesMax) && l.recordBytesMax > 0, 'recordBytesMax is a positive integer')
  need(l.recordBytesMax <= limits.recordBytesHardMax, 'recordBytesMax within the hard maximum')
  need(l.segmentBytes >= limits.segmentBytesMin && l.segmentBytes <= limits.segmentBytesHardMax, 'segmentBytes within range')
  // A record of the largest size must fit in an empty segment, or it could never be written.
  need(segmentHeaderBytes + frameOverheadBytes + l.recordBytesMax <= l.segmentBytes, 'one maximal record fits in a segment')
  need(l.groupBytesMax >= frameOverheadBytes + l.recordBytesMax, 'one maximal record fits in a group')
  need(l.queueBytesMax >= l.groupBytesMax, 'the queue holds at least one group')
}
