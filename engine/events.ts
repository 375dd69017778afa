import type { WalFailedError } from './errors.js'
import type { DegradationLevel, EngineState } from './health.js'

/**
 * Every event a MemWAL emits, by name, with its payload (one object each).
 * `engine.on(name, listener)` is checked against this at compile time: an
 * unknown name or a listener of the wrong payload does not type-check.
 */
export interface MemwalEvents {
  /**
   * The state changed (open, degraded, read-only, failed, closed), or within a state the level served or the
   * reason did (`from` equals `to` then: degraded -> degraded when the backend stops answering reads too).
   */
  readonly state: StateChangeEvent
  /** A sink went down: its breaker opened, a call timed out, or a health probe failed. */
  readonly 'sink-down': SinkDownEvent
  /** A sink that was down took a batch or answered a probe again. */
  readonly 'sink-recovered': SinkRecoveredEvent
  /** The backlog crossed 80% of maxBacklogBytes upwards. */
  readonly 'backlog-high': BacklogHighEvent
  /** A sink rejected a record for good; it is in the dead-letter log. */
  readonly 'dead-letter': DeadLetterEvent
  /** The log failed (fsync error, lost lock): no more writes until reopened. */
  readonly 'wal-failed': WalFailedEvent
  /** Free space on the data directory's filesystem fell below diskLowBytes (each time it crosses downwards). */
  readonly 'disk-low': DiskLowEvent
}

export interface StateChangeEvent {
  readonly from: EngineState
  readonly to: EngineState
  /** The level now served (see DegradationLevel). */
  readonly level: DegradationLevel
  /** Why: the new state's cause, or what cleared the old one. */
  readonly reason: string
}

export interface SinkDownEvent {
  readonly sink: string
  readonly error?: unknown
}

export interface SinkRecoveredEvent {
  readonly sink: string
}

export interface BacklogHighEvent {
  readonly bytes: number
  readonly maxBytes: number
}

export interface DeadLetterEvent {
  readonly sink: string
  readonly lsn: number
  readonly error: unknown
}

export interface WalFailedEvent {
  readonly error: WalFailedError
}

export interface DiskLowEvent {
  readonly freeBytes: number
  readonly totalBytes: number
  readonly thresholdBytes: number
  /** At the recent write rate; absent while nothing is being written. */
  readonly secondsToFull?: number
}

/** node:events' typed form: each name maps to its listener's arguments. */
export type MemwalEventMap = { [K in keyof MemwalEvents]: [MemwalEvents[K]] }
