import { assert } from '../assert.js'
import { BreakerOpenError, MemwalError, SinkTimeoutError } from '../errors.js'
import type { Clock } from '../io/clock.js'
import type { Backoff, SinkPolicy } from '../resilience/policy.js'
import type { AppliedRecord, ApplyBatch, Sink } from '../sinks/sink.js'
import { RecordType } from '../format/format.js'

export interface BatchLimits {
  readonly batchRecordsMax: number
  readonly batchBytesMax: number
  /** Operations in a batch; a record of more goes alone (limits.applyBatchOpsMax). */
  readonly batchOpsMax: number
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
  /** An apply call failed (for the metrics): the sink's classification, or a timeout, or the breaker refused it. */
  applyFailed(sink: Sink, failure: 'transient' | 'permanent' | 'halt' | 'timeout' | 'breaker-open'): void
  /** The sink refused to take anything more (its `classify` said `halt`): this applier has stopped for good. */
  halted(sink: Sink, error: unknown): void
  /** A failed batch is being tried again after its backoff. */
  retried(sink: Sink): void
}

export interface ApplierStatus {
  readonly consecutiveFailures: number
  readonly lastError?: { readonly code: string; readonly message: string; readonly atMs: number }
  readonly down: boolean
  /** Reads of the sink fail (it may still take applies). */
  readonly unreadable: boolean
  readonly applied: number
  readonly deadLetters: number
}

/**
 * One sink's cursor. It takes bounded batches from the pending log (the
 * acknowledged records not yet applied everywhere: bounded by the backlog
 * limit, and read back from the segments at open), and delivers each until the sink takes it: transient failures are retried
 * with capped, fully jittered backoff, for ever (the record is durable); a
 * permanent one is narrowed down to the one poison record, which goes to the
 * dead-letter log; one the sink classifies `halt` stops the applier for good
 * (no retry, no dead letter: the records stay in the log). One call at a time: after a timeout the next attempt waits
 * for the abandoned call to settle, so two applies never overlap.
 */
export class Applier {
  private stopping = false
  /** The sink said it can take nothing more (classify: halt): no more applies or probes, down until the engine reopens. */
  private halted = false
  private paused: { done: Promise<void>; resume: () => void } | undefined
  /** Ceilings set by holdAt: no batch takes a record past the lowest (one per export whose snapshot is being taken). */
  private readonly holds = new Set<{ readonly lsn: number }>()
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
  /** When an apply or probe last started, or a read last answered: the health loop probes a sink unused for long. */
  private lastUsedMs: number
  /**
   * The probe call last started, until it settles: a timed-out probe is abandoned but still running (it cannot be
   * cancelled), and no other starts meanwhile, so a hung sink holds one probe, not one more each health check.
   */
  private probeCall: Promise<void> | undefined
  /** Reads fail: breakerThreshold in a row, one timed out, or a probe failed. */
  private unreadable = false
  private readFailures = 0

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
    /** Failed reads in a row that make the sink down (the breaker's threshold, for reads). */
    private readonly breakerThreshold = 1,
  ) {
    this.lastUsedMs = host.clock.nowMs()
  }

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
      down: this.isDown,
      unreadable: this.unreadable,
      applied: this.appliedCount,
      deadLetters: this.deadLetters,
    }
  }

  /**
   * A read of the sink with the apply timeout. The breaker guards applies: a
   * read is refused at once while it is open (the sink is known down), and
   * otherwise neither gated nor counted by it, so a read answers as soon as
   * the sink does. Reads count toward the sink's health on their own:
   * breakerThreshold failed reads in a row, or one that timed out, make the
   * sink down (unreadable); the next read or probe that works brings it back.
   */
  async read<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.policy.breakerState() === 'open') throw new BreakerOpenError('the sink is known down')
    return this.counted(() => this.policy.timed(fn))
  }

  /**
   * A read of the sink neither gated by the breaker nor timed, counted toward
   * its health as `read` counts: the index is read so (a query goes on over a
   * stale index while its applies fail, and a range scan is read step by step,
   * each `next` one such read).
   */
  async counted<T>(fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn()
      // Only a read that answered puts the idle probe off: one that failed says the sink may be down, which the probe is for
      // (the expiry sweep reads the index every second; its failures must not keep the index from being probed).
      this.lastUsedMs = this.host.clock.nowMs()
      this.readWorked()
      return result
    } catch (err) {
      this.readFailed(err, false)
      throw err
    }
  }

  /**
   * The health loop's check, for an applier with nothing to apply (one at
   * work is its own probe): when the breaker is open (the half-open probe,
   * once its delay has passed), when the sink is down, or when nothing used
   * it for `idleMs`, one cheap read (`sink.probe`), bounded by the apply
   * timeout. A failure marks the sink down at once; a success closes the
   * breaker and brings it back. One probe at a time: while the last one
   * started (timed out or not) has not settled, none starts. `stop` aborted
   * (the engine is closing): resolves at once, and the probe's outcome,
   * whenever it comes, is not counted.
   */
  async probeIfDue(idleMs: number, stop?: AbortSignal): Promise<void> {
    if (this.stopping || this.halted || this.paused || this.probeCall || stop?.aborted || this.sink.checkpoint < this.host.ackedLsn()) return
    const idle = this.host.clock.nowMs() - this.lastUsedMs >= idleMs
    const breakerClosed = this.policy.breakerState() === 'closed'
    if (!idle && !this.isDown && breakerClosed) return
    this.lastUsedMs = this.host.clock.nowMs()
    const probe = (): Promise<void> => {
      const call = this.sink.probe()
      const settled = call.then(() => undefined, () => undefined)
      this.probeCall = settled
      void settled.then(() => {
        if (this.probeCall === settled) this.probeCall = undefined
      })
      return call
    }
    // An open breaker gets its half-open probe (BreakerOpenError: not yet time); a closed one is left to the applies.
    const timed = breakerClosed ? this.policy.timed(probe) : this.policy.execute(probe)
    const outcome = await untilAborted(timed.then(() => 'worked' as const, (err: unknown) => ({ err })), stop)
    if (outcome === 'aborted') return
    if (outcome !== 'worked') {
      if (!(outcome.err instanceof BreakerOpenError)) this.readFailed(outcome.err, true)
      return
    }
    this.readWorked()
    this.recovered()
  }

  private get isDown(): boolean {
    return this.down || this.unreadable
  }

  /** A read or a probe answered: the failures in a row end (status().consecutiveFailures counts from here), and so does down by reads. */
  private readWorked(): void {
    this.failures = 0
    this.readFailures = 0
    if (!this.unreadable) return
    this.unreadable = false
    if (!this.down) this.host.sinkHealth(this.sink, false)
  }

  /** `now`: this one failure makes the sink unreadable (a failed probe). */
  private readFailed(err: unknown, now: boolean): void {
    this.noteError(err)
    this.readFailures++
    if (this.unreadable || !(now || err instanceof SinkTimeoutError || this.readFailures >= this.breakerThreshold)) return
    const wasDown = this.isDown
    this.unreadable = true
    if (!wasDown) this.host.sinkHealth(this.sink, true, err)
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
      // A halted applier's loop has ended, and its last call settled: nothing touches the sink.
      if (this.halted) return r()
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

  /**
   * Until the returned release is called, no batch takes a record past
   * `lsn`: a batch built before the call holds none (it was built from the
   * records acknowledged then, which a caller passing the acknowledged LSN
   * covers), and those after stop at `lsn`. Records up to it go on being
   * applied. An export over PostgreSQL holds this while its snapshot is taken
   * (export.ts says why). Releasing twice is harmless.
   */
  holdAt(lsn: number): () => void {
    const hold = { lsn }
    this.holds.add(hold)
    return () => {
      if (this.holds.delete(hold)) this.notify()
    }
  }

  /** The last record a batch may take now: the acknowledged LSN, or the lowest hold below it. */
  private applyLimit(): number {
    let limit = this.host.ackedLsn()
    for (const h of this.holds) limit = Math.min(limit, h.lsn)
    return limit
  }

  private async run(): Promise<void> {
    while (!this.stopping && !this.halted) {
      if (this.paused) {
        await this.inflight // a timed-out call may still be running: nothing may touch the sink until it settles
        this.idle?.()
        this.idle = undefined
        await this.paused.done
        continue
      }
      const from = this.sink.checkpoint + 1
      if (from > this.applyLimit()) {
        await new Promise<void>((r) => (this.wake = r))
        continue
      }
      if (this.paused) continue
      const batch = this.nextBatch(from)
      if (this.stopping) return
      await this.deliver(batch)
    }
    // Halted while a pause waited for the loop to go idle: it is, for good.
    this.idle?.()
    this.idle = undefined
  }

  /** Up to the batch limits of consecutive records from `from`, from the pending log (at least one record). */
  private nextBatch(from: number): ApplyBatch {
    const acked = this.applyLimit()
    const records: AppliedRecord[] = []
    let bytes = 0
    let ops = 0
    let upTo = from - 1
    for (let lsn = from; lsn <= acked && records.length < this.limits.batchRecordsMax && bytes < this.limits.batchBytesMax; lsn++) {
      const r = this.host.pending(lsn)
      assert(r !== undefined, 'the pending log holds every record a sink has not applied')
      if (r === null) {
        upTo = lsn
        continue
      }
      const n = r.record.type === RecordType.BATCH ? r.record.ops.length : 1
      if (records.length > 0 && ops + n > this.limits.batchOpsMax) break
      upTo = lsn
      records.push(r)
      bytes += r.bytes
      ops += n
    }
    return { records, upToLsn: upTo }
  }

  /** Delivers until the sink has taken the batch (or its poison went to the dead-letter log). */
  private async deliver(batch: ApplyBatch): Promise<void> {
    let backoff: Backoff | undefined
    // Paused: give the batch up; the loop rebuilds it from the checkpoint on resume. Halted (by this batch, or by a record
    // before it while narrowing): the sink takes nothing more.
    while (!this.stopping && !this.paused && !this.halted) {
      await this.inflight
      try {
        this.lastUsedMs = this.host.clock.nowMs()
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
        const failure = err instanceof BreakerOpenError ? 'breaker-open' : err instanceof SinkTimeoutError ? 'timeout' : this.sink.classify(err)
        this.host.applyFailed(this.sink, failure)
        if (failure === 'halt') return this.halt(err)
        if (failure === 'permanent' && batch.records.length > 0) {
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
        if (!this.stopping && !this.paused) this.host.retried(this.sink)
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
    // A record that halts the sink ends the narrowing: the rest are not tried, and none is dead-lettered after it.
    for (const r of batch.records) {
      if (this.stopping || this.halted) return
      await this.deliver({ records: [r], upToLsn: r.lsn })
    }
    if (!this.stopping && !this.halted) await this.deliver({ records: [], upToLsn: batch.upToLsn })
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
    // An apply that worked shows the sink answers: down by reads ends too (else only a later read or probe would say so).
    const wasDown = this.isDown
    this.readFailures = 0
    this.down = false
    this.unreadable = false
    if (wasDown) this.host.sinkHealth(this.sink, false)
    this.host.advanced(this.sink)
  }

  /** Stops for good: down (a probe or a read that answers does not bring it back), and the engine told why. */
  private halt(err: unknown): void {
    this.halted = true
    this.noteError(err)
    const wasDown = this.isDown
    this.down = true
    if (!wasDown) this.host.sinkHealth(this.sink, true, err)
    this.host.halted(this.sink, err)
  }

  private recovered(): void {
    if (!this.down || this.halted) return
    this.down = false
    if (!this.unreadable) this.host.sinkHealth(this.sink, false)
  }

  private noteError(err: unknown): void {
    this.failures++
    // The breaker's refusal says nothing new: lastError keeps the failure that opened it (a PostgreSQL SQLSTATE, say).
    if (err instanceof BreakerOpenError && this.lastError !== undefined) return
    const code = err instanceof MemwalError ? err.code : ((err as { code?: string }).code ?? 'SINK_APPLY_FAILED')
    this.lastError = { code, message: (err as Error)?.message ?? String(err), atMs: this.host.clock.nowMs() }
  }

  private failed(err: unknown): void {
    this.noteError(err)
    // A timed-out call is abandoned but still running, and the next attempt waits for it: the sink is stuck, hence down, whatever the breaker says.
    if (!this.down && (this.policy.breakerState() !== 'closed' || err instanceof BreakerOpenError || err instanceof SinkTimeoutError)) {
      const wasDown = this.isDown
      this.down = true
      if (!wasDown) this.host.sinkHealth(this.sink, true, err)
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

/** `p`'s value, or 'aborted' as soon as `signal` aborts (`p` is then left to settle on its own). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T | 'aborted'> {
  if (!signal) return p
  if (signal.aborted) return Promise.resolve('aborted')
  return new Promise<T | 'aborted'>((resolve, reject) => {
    const onAbort = (): void => resolve('aborted')
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
