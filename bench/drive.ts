/**
 * The load drivers every system (memwal and its peers alike) is measured
 * with, and the warm-up-then-measure step of a trial. Each op's latency runs
 * from just before it is issued to just after it settles (the end of one op
 * is the start of the next, to save a clock read).
 */
import { LatencyRecorder, trialResult, type TrialResult } from './stats.js'

/** How long a trial warms up, then measures. */
export interface Timing {
  readonly warmupMs: number
  readonly measureMs: number
}

/**
 * How a trial loads its system: one awaited writer (or a synchronous loop,
 * for systems whose calls block), or `depth` writes kept in flight. `perOp` counts records per operation (a batch of 256 puts
 * acknowledges 256 records).
 */
export type Load =
  | { readonly kind: 'awaited'; readonly perOp?: number }
  | { readonly kind: 'inflight'; readonly depth: number; readonly perOp?: number }

/**
 * One writer: issue, await, repeat, for `durationMs`. A synchronous
 * operation (one that returns no promise: the raw loops, better-sqlite3) is
 * not awaited, so that its loop never yields.
 */
export async function driveAwaited(op: () => unknown, durationMs: number): Promise<TrialResult> {
  const latencies = new LatencyRecorder()
  const start = performance.now()
  const deadline = start + durationMs
  let now = start
  let ops = 0
  while (now < deadline) {
    const issuedAt = now
    const pending = op()
    if (pending instanceof Promise) await pending
    now = performance.now()
    latencies.record((now - issuedAt) * 1000)
    ops++
  }
  return trialResult(ops, now - start, latencies)
}

/**
 * `depth` operations kept in flight: each time one settles, a new one is
 * issued, until `durationMs` has passed; then the outstanding ones drain and
 * count. Throughput is acknowledged ops over the time to the last ack.
 * The first failure rejects (after every outstanding op settled).
 */
export function driveInFlight(op: () => Promise<unknown>, durationMs: number, depth: number): Promise<TrialResult> {
  return new Promise((resolve, reject) => {
    const latencies = new LatencyRecorder(1 << 18)
    const start = performance.now()
    const deadline = start + durationMs
    let outstanding = 0
    let ops = 0
    let failure: { error: unknown } | undefined
    const settle = (now: number): void => {
      if (outstanding > 0) return
      if (failure) reject(failure.error)
      else resolve(trialResult(ops, now - start, latencies))
    }
    const issue = (issuedAt: number): void => {
      outstanding++
      op().then(
        () => {
          const now = performance.now()
          latencies.record((now - issuedAt) * 1000)
          ops++
          outstanding--
          if (now < deadline && !failure) issue(now)
          else settle(now)
        },
        (error: unknown) => {
          failure ??= { error }
          outstanding--
          settle(performance.now())
        },
      )
    }
    for (let i = 0; i < depth; i++) issue(performance.now())
  })
}

/** Counts a trial of batches in records: `perOp` records per acknowledged operation. */
function inRecords(r: TrialResult, perOp: number): TrialResult {
  return perOp === 1 ? r : { ...r, ops: r.ops * perOp, opsPerSec: r.opsPerSec * perOp }
}

/** Warm-up, then the measured run, of an operation under `load` (a synchronous one: awaited, one writer). */
export async function timedTrial(op: () => unknown, load: Load, timing: Timing, between?: () => Promise<void>): Promise<TrialResult> {
  const drive = (ms: number): Promise<TrialResult> => (load.kind === 'awaited' ? driveAwaited(op, ms) : driveInFlight(() => op() as Promise<unknown>, ms, load.depth))
  await drive(timing.warmupMs)
  if (between) await between()
  return inRecords(await drive(timing.measureMs), load.perOp ?? 1)
}

/** Issues `count` operations with at most `inFlight` outstanding; resolves when all have (the first failure rejects). */
export async function issueBounded(count: number, inFlight: number, op: (i: number) => Promise<unknown>): Promise<void> {
  const pending = new Set<Promise<unknown>>()
  for (let i = 0; i < count; i++) {
    const p: Promise<unknown> = op(i).then(() => pending.delete(p))
    pending.add(p)
    if (pending.size >= inFlight) await Promise.race(pending)
  }
  await Promise.all(pending)
}
