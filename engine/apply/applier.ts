import { assert } from '../assert.js'
import { BreakerOpenError, MemwalError, SinkTimeoutError } from '../errors.js'
import type { Clock } from '../io/clock.js'
import type { Backoff, SinkPolicy } from '../resilience/policy.js'
import type { AppliedRecord, ApplyBatch, Sink } from '../sinks/sink.js'

export interface BatchLimits {
  readonly batchRecordsMax: number
  readonly batchBytesMax: number
}

/** What an applier needs from the engine: where records come from, and whom to tell. */
export interface ApplierHost {
  readonly clock: Clock
  /** Highest acknowledged LSN. */
  ackedLsn(): number
  /**
   * The acknowledged record at `lsn`, which the pending log holds until every
   * sink applied it; `null` for an LSN no record has (a gap recovery declared).
   */
  pending(lsn: number): AppliedRecord | null | undefined
  /** The sink's checkpoint moved. */
  advanced(sink: Sink): void
  /** A record the sink rejected for good: to the dead-letter log, then an event. */
  deadLetter(sink: Sink, record: AppliedRecord, error: unknown): Promise<void>
  /** The sink went down (breaker opened or failures piled up) or came back. */
  sinkHealth(sink: Sink, down: boolean, error?: unknown): void
}

export interface ApplierStatus {
  readonly consecutiveFailures: number
  readonly lastError?: { readonly code: string; readonly message: string; readonly atMs: number }
  readonly down: boolean
  readonly applied: number
  readonly deadLetters: number
}

/**
 * One sink's cursor. It takes bounded batches from the pending log (the
 * acknowledged records not yet applied everywhere: bounded by the backlog
 * limit, and read back from the segments at open), and delivers each until the sink takes it: transient failures are retried
 * with capped, fully jittered backoff, for ever (the record is durable); a
 * permanent one is narrowed down to the one poison record, which goes to the
 * dead-letter log. One call at a time: after a timeout the next attempt waits
 * for the abandoned call to settle, so two applies never overlap.
 */
export class Applier {
  private stopping = false
  private paused: { done: Promise<void>; resume: () => void } | undefined
  private idle: (() => void) | undefined
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  private cancelSleep: (() => void) | undefined
  private inflight: Promise<unknown> = Promise.resolve()
  /** Set while a timed-out call is still running: the breaker is held open until it settles. */
  private isolation: { dispose(): void } | undefined
  private failures = 0
  private lastError: ApplierStatus['lastError']
  private down = false
  private appliedCount = 0
  private deadLetters = 0

  /**
   * `followers` are in-memory sinks fed each batch right after `sink` took it
   * (the cache follows the backend: it caches what the backend holds, and the
   * batch is decoded once for both). Their apply must not fail.
   */
  constructor(
    readonly sink: Sink,
    readonly policy: SinkPolicy,
    private readonly host: ApplierHost,
    private readonly limits: BatchLimits,
    readonly followers: readonly Sink[] = [],
  ) {}

  start(): void {
    assert(!this.loop, 'an applier starts once')
    this.loop = this.run()
  }

  /** New records were acknowledged. */
  notify(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /** Stops after the call in progress; waits at most `graceMs` for it. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true
    this.notify()
    this.cancelSleep?.()
    let timer: (() => void) | undefined
    await Promise.race([this.loop, new Promise<void>((r) => (timer = this.host.clock.setTimer(graceMs, r)))])
    timer?.()
  }

  status(): ApplierStatus {
    return {
      consecutiveFailures: this.failures,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      down: this.down,
      applied: this.appliedCount,
      deadLetters: this.deadLetters,
    }
  }

  /**
   * Stops taking new batches and resolves once the call in progress (if any)
   * is done: the reconciler repairs a sink while nothing else writes to it.
   */
  async pause(): Promise<void> {
    if (this.paused) return
    let resume!: () => void
    const done = new Promise<void>((r) => (resume = r))
    this.paused = { done, resume }
    await new Promise<void>((r) => {
      this.idle = r
      this.notify()
      this.cancelSleep?.()
    })
  }

  resume(): void {
    const p = this.paused
    this.paused = undefined
    p?.resume()
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      if (this.paused) {
        await this.inflight // a timed-out call may still be running: nothing may touch the sink until it settles
        this.idle?.()
        this.idle = undefined
        await this.paused.done
        continue
      }
      const from = this.sink.checkpoint + 1
      if (from > this.host.ackedLsn()) {
        await new Promise<void>((r) => (this.wake = r))
        continue
      }
      if (this.paused) continue
      const batch = this.nextBatch(from)
      if (this.stopping) return
      await this.deliver(batch)
    }
  }

  /** Up to the batch limits of consecutive records from `from`, from the pending log. */
  private nextBatch(from: number): ApplyBatch {
    const acked = this.host.ackedLsn()
    const records: AppliedRecord[] = []
    let bytes = 0
    let upTo = from - 1
    for (let lsn = from; lsn <= acked && records.length < this.limits.batchRecordsMax && bytes < this.limits.batchBytesMax; lsn++) {
      const r = this.host.pending(lsn)
      assert(r !== undefined, 'the pending log holds every record a sink has not applied')
      upTo = lsn
      if (r === null) continue
      records.push(r)
      bytes += r.bytes
    }
    return { records, upToLsn: upTo }
  }

  /** Delivers until the sink has taken the batch (or its poison went to the dead-letter log). */
  private async deliver(batch: ApplyBatch): Promise<void> {
    let backoff: Backoff | undefined
    // Paused: give the batch up; the loop rebuilds it from the checkpoint on resume.
    while (!this.stopping && !this.paused) {
      await this.inflight
      try {
        await this.policy.execute((signal) => {
          const call = this.sink.apply(batch, signal)
          this.inflight = call.catch(() => undefined)
          return call
        })
        for (const f of this.followers) await f.apply(batch)
        this.succeeded(batch)
        return
      } catch (caught) {
        let err = caught
        if (!(err instanceof BreakerOpenError) && this.sink.classify(err) === 'permanent' && batch.records.length > 0) {
          try {
            await this.isolate(batch, err)
            return
          } catch (deadLetterError) {
            // The dead-letter log could not take the poison record (disk full, I/O error): it stays
            // unapplied and is retried with backoff, never dropped (and never thrown out of the loop).
            err = deadLetterError
          }
        }
        if (err instanceof SinkTimeoutError) this.holdOpenWhileAbandoned()
        this.failed(err)
        backoff = backoff ? backoff.next() : this.policy.backoff()
        await this.sleep(backoff.durationMs)
      }
    }
  }

  /** Finds the poison record(s) of a batch the sink rejected for good, one record at a time. */
  private async isolate(batch: ApplyBatch, err: unknown): Promise<void> {
    if (batch.records.length === 1) {
      const poison = batch.records[0] as AppliedRecord
      await this.host.deadLetter(this.sink, poison, err)
      this.deadLetters++
      return this.deliver({ records: [], upToLsn: batch.upToLsn })
    }
    for (const r of batch.records) {
      if (this.stopping) return
      await this.deliver({ records: [r], upToLsn: r.lsn })
    }
    if (!this.stopping) await this.deliver({ records: [], upToLsn: batch.upToLsn })
  }

  /**
   * A call timed out but is still running (it cannot be cancelled), and the
   * next attempt waits for it: the sink is down until it settles, whatever
   * the failure count says. The breaker is held open meanwhile, so that reads
   * do not queue behind a stuck backend and health says so.
   */
  private holdOpenWhileAbandoned(): void {
    if (this.isolation) return
    const isolation = this.policy.holdOpen()
    this.isolation = isolation
    void this.inflight.then(() => {
      isolation.dispose()
      this.isolation = undefined
    })
  }

  private succeeded(batch: ApplyBatch): void {
    this.appliedCount += batch.records.length
    this.failures = 0
    if (this.down) {
      this.down = false
      this.host.sinkHealth(this.sink, false)
    }
    this.host.advanced(this.sink)
  }

  private failed(err: unknown): void {
    this.failures++
    const code = err instanceof MemwalError ? err.code : ((err as { code?: string }).code ?? 'SINK_APPLY_FAILED')
    this.lastError = { code, message: (err as Error)?.message ?? String(err), atMs: this.host.clock.nowMs() }
    // A timed-out call is abandoned but still running, and the next attempt waits for it: the sink is stuck, hence down, whatever the breaker says.
    if (!this.down && (this.policy.breakerState() !== 'closed' || err instanceof BreakerOpenError || err instanceof SinkTimeoutError)) {
      this.down = true
      this.host.sinkHealth(this.sink, true, err)
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const cancel = this.host.clock.setTimer(ms, () => {
        this.cancelSleep = undefined
        resolve()
      })
      this.cancelSleep = () => {
        cancel()
        resolve()
      }
    })
  }
}
