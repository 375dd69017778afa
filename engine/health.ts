import type { BreakerState } from './resilience/policy.js'

/**
 * - `open`: all well.
 * - `degraded`: writes are acknowledged, but a sink is down or failing (its breaker is not closed).
 * - `read-only`: the backlog is at maxBacklogBytes; writes are refused (or wait) until sinks catch up.
 * - `failed`: the log failed (fsync error, lost lock); no more writes until reopened (G2).
 * - `closed`.
 */
export type EngineState = 'open' | 'degraded' | 'read-only' | 'failed' | 'closed'

export interface SinkHealth {
  readonly durable: boolean
  readonly breaker: BreakerState
  readonly checkpoint: number
  /** How far behind the log the sink is: records, estimated bytes, and age of the oldest unapplied record. */
  readonly lag: { readonly records: number; readonly bytes: number; readonly ms: number }
  readonly consecutiveFailures: number
  readonly applied: number
  readonly deadLetters: number
  readonly lastError?: { readonly code: string; readonly message: string; readonly atMs: number }
}

export interface EngineHealth {
  readonly state: EngineState
  /** Why the state is not `open`. */
  readonly reason?: string
  readonly wal: { readonly lastLsn: number; readonly durableLsn: number; readonly activeSegment: string }
  readonly backlog: { readonly records: number; readonly bytes: number; readonly maxBytes: number; readonly pendingKeys: number }
  readonly cache: { readonly entries: number; readonly bytes: number; readonly maxBytes: number }
  readonly sinks: Readonly<Record<string, SinkHealth>>
}
