import type { Applier } from './apply/applier.js'
import { assertNever } from './assert.js'
import type { DiskStatus } from './disk-watch.js'
import type { LifecycleState } from './lifecycle.js'
import type { DeclaredGap } from './log/recovery/gap-record.js'
import type { BreakerState } from './resilience/policy.js'
import type { Sink } from './sinks/sink.js'

/**
 * - `open`: all well.
 * - `degraded`: writes are acknowledged, but a sink is down or failing (its breaker is not closed).
 * - `read-only`: writes are refused, reads served: the backlog is at maxBacklogBytes, the disk is nearly full, or an operator asked (`setReadOnly`).
 * - `failed`: the log failed (fsync error, lost lock); no more writes until reopened (G2).
 * - `closed`.
 */
export type EngineState = 'open' | 'degraded' | 'read-only' | 'failed' | 'closed'

/**
 * What the engine serves, from most to least (the table in the README,
 * "Degradation levels"): every level names what a caller may expect.
 * - `full`: writes acknowledged, every read answered.
 * - `degraded`: writes acknowledged, every read answered; a sink (the index, or a backend that still answers reads) is behind or down.
 * - `log-and-cache-reads`: writes acknowledged; the backend cannot answer, so a read is served from pending writes and the cache, and a key found in neither is refused (ENGINE_BACKEND_UNAVAILABLE, never a guessed "not found").
 * - `read-only`: writes refused (ENGINE_BACKLOG_FULL or ENGINE_READ_ONLY), reads served.
 * - `failed`: writes refused (ENGINE_FAILED), reads served from what answers; reopen.
 * - `closed`: nothing served.
 */
export type DegradationLevel = 'full' | 'degraded' | 'log-and-cache-reads' | 'read-only' | 'failed' | 'closed'

/** The engine's state, its level and why: what `health()` and the `state` event both say. */
export interface ServiceStatus {
  readonly state: EngineState
  readonly level: DegradationLevel
  /** Why the state is not `open`. */
  readonly reason?: string
}

export interface ServiceSources {
  readonly lifecycle: LifecycleState
  /** Why writes are refused while open (backlog full, disk low, by request), if they are. */
  readonly readOnlyReason: string | undefined
  /** Sinks that are down or failing (breaker not closed). */
  readonly down: readonly string[]
  /** The backend's breaker is not closed, or its reads fail: reads of keys neither pending nor cached are refused. */
  readonly backendUnreadable: boolean
}

/** The one place the state and the level are decided. */
export function serviceOf(s: ServiceSources): ServiceStatus {
  const l = s.lifecycle
  switch (l.kind) {
    case 'closing':
    case 'closed':
      return { state: 'closed', level: 'closed', reason: 'closed' }
    case 'failed':
      return { state: 'failed', level: 'failed', reason: l.failure.message }
    case 'open':
      if (s.readOnlyReason !== undefined) return { state: 'read-only', level: 'read-only', reason: s.readOnlyReason }
      if (s.down.length > 0) return { state: 'degraded', level: s.backendUnreadable ? 'log-and-cache-reads' : 'degraded', reason: `sink down: ${s.down.join(', ')}` }
      return { state: 'open', level: 'full' }
    default:
      return assertNever(l, 'lifecycle state')
  }
}

export interface SinkHealth {
  readonly durable: boolean
  readonly breaker: BreakerState
  readonly checkpoint: number
  /** The checkpoint known to survive power loss (LevelDB's applies are group-synced): what log retention trusts. */
  readonly durableCheckpoint: number
  /** How far behind the log the sink is: records, estimated bytes, and age of the oldest unapplied record. */
  readonly lag: { readonly records: number; readonly bytes: number; readonly ms: number }
  readonly consecutiveFailures: number
  readonly applied: number
  readonly deadLetters: number
  readonly lastError?: { readonly code: string; readonly message: string; readonly atMs: number }
}

export interface EngineHealth extends ServiceStatus {
  readonly wal: { readonly lastLsn: number; readonly durableLsn: number; readonly activeSegment: string }
  readonly backlog: { readonly records: number; readonly bytes: number; readonly maxBytes: number; readonly pendingKeys: number }
  readonly cache: { readonly entries: number; readonly bytes: number; readonly maxBytes: number }
  readonly sinks: Readonly<Record<string, SinkHealth>>
  /** LSNs memwal dropped (recovery, fsck --repair) that no operator has acknowledged yet (`acknowledgeGaps()`). */
  readonly gaps: readonly DeclaredGap[]
  /** The data directory's disk at the last health check (absent when the filesystem cannot say). */
  readonly disk?: DiskStatus
}

/** What health() reads: the engine's parts, read-only. */
export interface HealthSources {
  readonly lifecycle: LifecycleState
  /** Why writes are refused while open (backlog full, disk low, by request), if they are. */
  readonly readOnlyReason: string | undefined
  readonly wal: { readonly lastLsn: number; readonly durableLsn: number; readonly activeSegment: string }
  readonly pending: { readonly records: number; readonly bytes: number; readonly pendingKeys: number; ackedAtAfter(lsn: number): number | undefined }
  readonly maxBacklogBytes: number
  readonly cache: { readonly size: number; readonly bytes: number }
  readonly cacheBytes: number
  /** Each sink with the applier that feeds it (a follower shares its leader's). */
  readonly sinks: readonly { readonly sink: Sink; readonly applier: Applier }[]
  readonly nowMs: number
  readonly gaps: readonly DeclaredGap[]
  readonly disk: DiskStatus | undefined
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
      durableCheckpoint: sink.durableCheckpoint,
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
  return {
    ...serviceOf(serviceSources(h)),
    wal: { lastLsn: acked, durableLsn: h.wal.durableLsn, activeSegment: h.wal.activeSegment },
    backlog: { records: pending.records, bytes: pending.bytes, maxBytes: h.maxBacklogBytes, pendingKeys: pending.pendingKeys },
    cache: { entries: h.cache.size, bytes: h.cache.bytes, maxBytes: h.cacheBytes },
    sinks,
    gaps: h.gaps,
    ...(h.disk ? { disk: h.disk } : {}),
  }
}

/** What decides the state, read from the engine's parts. */
export function serviceSources(h: Pick<HealthSources, 'lifecycle' | 'readOnlyReason' | 'sinks'>): ServiceSources {
  const appliers = [...new Set(h.sinks.map((s) => s.applier))]
  const backend = h.sinks.find((s) => s.sink.name === 'backend')
  return {
    lifecycle: h.lifecycle,
    readOnlyReason: h.readOnlyReason,
    down: appliers.filter(isDown).map((a) => a.sink.name),
    backendUnreadable: backend !== undefined && (backend.applier.policy.breakerState() !== 'closed' || backend.applier.status().unreadable),
  }
}

/** Down, or failing: its breaker is not closed. */
function isDown(a: Applier): boolean {
  return a.status().down || a.policy.breakerState() !== 'closed'
}
