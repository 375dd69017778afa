import type { Applier } from './apply/applier.js'
import { assertNever } from './assert.js'
import type { LifecycleState } from './lifecycle.js'
import type { BreakerState } from './resilience/policy.js'
import type { Sink } from './sinks/sink.js'

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

/** What health() reads: the engine's parts, read-only. */
export interface HealthSources {
  readonly lifecycle: LifecycleState
  /** The backlog is full (writes refused or waiting). */
  readonly readOnly: boolean
  readonly wal: { readonly lastLsn: number; readonly durableLsn: number; readonly activeSegment: string }
  readonly pending: { readonly records: number; readonly bytes: number; readonly pendingKeys: number; ackedAtAfter(lsn: number): number | undefined }
  readonly maxBacklogBytes: number
  readonly cache: { readonly size: number; readonly bytes: number }
  readonly cacheBytes: number
  /** Each sink with the applier that feeds it (a follower shares its leader's). */
  readonly sinks: readonly { readonly sink: Sink; readonly applier: Applier }[]
  readonly nowMs: number
}

/** The engine's health, computed from its parts at the moment of the call. */
export function engineHealth(h: HealthSources): EngineHealth {
  const acked = h.wal.lastLsn
  const { pending } = h
  const sinks: Record<string, SinkHealth> = {}
  for (const { sink, applier } of h.sinks) {
    const s = applier.status()
    const lagRecords = Math.max(0, acked - sink.checkpoint)
    const oldest = pending.ackedAtAfter(sink.checkpoint)
    sinks[sink.name] = {
      durable: sink.durable,
      breaker: applier.policy.breakerState(),
      checkpoint: sink.checkpoint,
      lag: {
        records: lagRecords,
        bytes: pending.records === 0 ? 0 : Math.round((pending.bytes * Math.min(lagRecords, pending.records)) / pending.records),
        ms: lagRecords === 0 || oldest === undefined ? 0 : Math.max(0, h.nowMs - oldest),
      },
      consecutiveFailures: s.consecutiveFailures,
      applied: s.applied,
      deadLetters: s.deadLetters,
      ...(s.lastError ? { lastError: s.lastError } : {}),
    }
  }
  const down = [...new Set(h.sinks.map((s) => s.applier))].filter(isDown)
  const state = stateOf(h.lifecycle, h.readOnly, down.length > 0)
  return {
    state,
    ...(state === 'read-only' ? { reason: `backlog ${pending.bytes} bytes at maxBacklogBytes ${h.maxBacklogBytes}` } : {}),
    ...(state === 'degraded' ? { reason: `sink down: ${down.map((a) => a.sink.name).join(', ')}` } : {}),
    ...(h.lifecycle.kind === 'failed' ? { reason: h.lifecycle.failure.message } : {}),
    wal: { lastLsn: acked, durableLsn: h.wal.durableLsn, activeSegment: h.wal.activeSegment },
    backlog: { records: pending.records, bytes: pending.bytes, maxBytes: h.maxBacklogBytes, pendingKeys: pending.pendingKeys },
    cache: { entries: h.cache.size, bytes: h.cache.bytes, maxBytes: h.cacheBytes },
    sinks,
  }
}

/** Down, or failing: its breaker is not closed. */
function isDown(a: Applier): boolean {
  return a.status().down || a.policy.breakerState() !== 'closed'
}

function stateOf(l: LifecycleState, readOnly: boolean, sinkDown: boolean): EngineState {
  switch (l.kind) {
    case 'closing':
    case 'closed':
      return 'closed'
    case 'failed':
      return 'failed'
    case 'open':
      return readOnly ? 'read-only' : sinkDown ? 'degraded' : 'open'
    default:
      return assertNever(l, 'lifecycle state')
  }
}
