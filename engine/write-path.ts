import { MemwalError, RecordTooLargeError, WalFailedError, isMemwalError } from './errors.js'
import type { PendingLog } from './apply/pending-log.js'
import type { Backpressure } from './backpressure.js'
import { RecordType } from './format/format.js'
import { HLC_SIZING, opsOf, type Op, type RecordCodec, type WalRecord } from './format/record-codec.js'
import type { HybridClock } from './hlc.js'
import type { Clock } from './io/clock.js'
import type { Wal } from './log/wal.js'
import type { EngineMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import { checkBatch, checkDeleteOptions, checkKey, checkPutOptions, checkValue, invalidValue, putCondition, refuseNulKey, type BatchOp, type DeleteOptions, type PutOptions, type WriteCondition } from './validate.js'
import { identityOf, opIdentity, splitIdentity } from './format/identity.js'
import { gateState, type VersionGate } from './version-gate.js'
import { WriteWatches, type WriteWatch } from './write-watch.js'

export interface WritePathParts {
  readonly config: ResolvedOptions
  readonly clock: Clock
  readonly wal: Wal
  readonly pending: PendingLog
  readonly codec: RecordCodec
  readonly hlc: HybridClock
  readonly backpressure: Backpressure
  /** Conditional writes: decided in log order, at append time. */
  readonly gate: VersionGate
  readonly metrics: EngineMetrics | undefined
  readonly assertWritable: () => void
  /** A record of `bytes` was acknowledged: the appliers have work (and the disk watch counts the bytes). */
  readonly written: (bytes: number) => void
}

/**
 * put, delete and batch: validate, stamp, encode, admit under the backlog
 * limit, append to the log (acknowledged once durable, G1), then hand the
 * record to the pending log for the appliers and the readers (G4).
 */
export class WritePath {
  /** Entries written while a watch is open: the expiry sweep's condition (write-watch.ts). */
  readonly watches = new WriteWatches()

  constructor(private readonly p: WritePathParts) {}

  async put(key: string, value: unknown, options?: PutOptions): Promise<{ lsn: number }> {
    const k = checkKey(key, this.p.config)
    const put = checkPutOptions(options, this.p.config)
    const condition = putCondition(options, put.namespace, k)
    const op: Op = { type: 'put', key: k, value: checkValue(value), ...put }
    return this.write({ type: RecordType.PUT, op }, undefined, condition ? [condition] : [])
  }

  async delete(key: string, options?: DeleteOptions): Promise<{ lsn: number }> {
    const k = checkKey(key, this.p.config)
    const { namespace, condition } = checkDeleteOptions(options, this.p.config, k)
    return this.write({ type: RecordType.DELETE, op: { type: 'del', key: k, namespace } }, undefined, condition ? [condition] : [])
  }

  async batch(ops: readonly BatchOp[]): Promise<{ lsn: number }> {
    const checked = checkBatch(ops, this.p.config)
    return this.write({ type: RecordType.BATCH, ops: checked.ops }, undefined, checked.conditions)
  }

  /**
   * Deletes, in one logged batch, those of `keys` that `watch` saw unchanged
   * (watched, not acknowledged since, and no write to it in flight: appended
   * and not yet acknowledged, which the caller's read could not see),
   * decided synchronously right before the append: a version written after
   * the caller read the entry is never deleted. Resolves with the LSN and
   * the keys deleted, or undefined when none was left (nothing is appended
   * then).
   */
  async deleteUnchanged(ids: readonly string[], watch: WriteWatch): Promise<{ lsn: number; deleted: readonly string[] } | undefined> {
    const ops: Op[] = ids.map((id) => {
      const { namespace, key } = splitIdentity(id)
      return { type: 'del', key: checkKey(key, this.p.config), namespace }
    })
    if (ops.length === 0) return undefined
    let deleted: readonly string[] = []
    const result = await this.write({ type: RecordType.BATCH, ops }, (r) => {
      const keep = ids.map((id) => watch.unchanged(id) && !this.p.gate.writing(id))
      const kept = opsOf(r).filter((_, i) => keep[i])
      deleted = ids.filter((_, i) => keep[i])
      return kept.length === 0 ? undefined : { type: RecordType.BATCH, ops: kept, ...(r.hlc !== undefined ? { hlc: r.hlc } : {}) }
    })
    return result && { lsn: result.lsn, deleted }
  }

  /**
   * A record read back from the log (a dead letter retried), written again as
   * a new record with a new LSN and a fresh stamp, if `conditions` hold
   * (else VERSION_MISMATCH, nothing written).
   */
  rewrite(record: WalRecord, conditions: readonly WriteCondition[]): Promise<{ lsn: number }> {
    return this.write(record, undefined, conditions)
  }

  /** A key with NUL, on a backend whose keys cannot hold it (PgBackend): refused before anything is logged, not dead-lettered after. */
  private refuseNulKeys(r: WalRecord): void {
    if (this.p.config.backend?.keysMayHoldNul !== false) return
    for (const [i, op] of opsOf(r).entries()) refuseNulKey(op.key, r.type === RecordType.BATCH ? `ops[${i}].key` : 'key', false)
  }

  private write(unstamped: WalRecord, decide: undefined, conditions: readonly WriteCondition[]): Promise<{ lsn: number }>
  private write(unstamped: WalRecord, decide: (r: WalRecord) => WalRecord | undefined): Promise<{ lsn: number } | undefined>
  /**
   * `decide`, when given, sees the stamped record after admission and returns
   * what to append (or nothing), synchronously before the append: a decision
   * taken there holds in log order.
   */
  private async write(unstamped: WalRecord, decide?: (r: WalRecord) => WalRecord | undefined, conditions: readonly WriteCondition[] = []): Promise<{ lsn: number } | undefined> {
    const { clock, pending, metrics } = this.p
    this.p.assertWritable()
    this.refuseNulKeys(unstamped)
    // Sized with a stand-in stamp no shorter than any real one: the real stamp is taken after every wait below, so
    // that a write that waited (backlog, gate) is not stamped older than one appended before it (a shared backend orders versions by hlc).
    let payload = this.encode({ ...unstamped, hlc: HLC_SIZING })
    try {
      // Before backpressure: a record too large for the log can never be written, however empty the backlog.
      if (payload.length > this.p.wal.recordBytesMax) throw new RecordTooLargeError(payload.length, this.p.wal.recordBytesMax)
      await this.p.backpressure.admit(payload.length)
    } catch (err) {
      metrics?.writeFailed(err) // a backpressure refusal is what memwal_write_errors_total must show
      throw err
    }
    if (conditions.length > 0) {
      const gated = conditions.map((c) => ({ ...c, id: identityOf(c.namespace, c.key) }))
      const state = gateState()
      try {
        for (let wait = this.p.gate.decide(gated, state); wait !== true; wait = this.p.gate.decide(gated, state)) {
          await wait
          this.p.assertWritable()
        }
      } catch (err) {
        metrics?.writeFailed(err)
        throw err
      } finally {
        this.p.gate.release(state)
      }
    }
    // Nothing may be awaited from the gate's decision (above) to the append call below: log order is the order of
    // append calls, and the stamps taken here increase in that order.
    const hlc = this.p.hlc.next()
    let record: WalRecord = { ...unstamped, hlc }
    if (!this.p.codec.restamp(payload, hlc)) payload = this.encode(record)
    if (decide) {
      const decided = decide(record)
      if (decided === undefined) return undefined
      if (decided !== record) payload = this.encode((record = decided))
    }
    const started = clock.nowMs()
    let lsn: number
    const ids = opsOf(record).map(opIdentity)
    // From the gate's decision to the append: no await (log order is the order of append calls). Until it settles,
    // the gate knows the write is in flight (what deleteUnchanged asks); the watches hear of it once acknowledged.
    const settled = this.p.gate.appending(ids)
    try {
      lsn = await this.p.wal.append(record.type, payload)
    } catch (err) {
      settled()
      metrics?.writeFailed(err)
      throw engineError(err)
    }
    pending.accept(lsn, record, payload, clock.nowMs())
    settled()
    if (this.watches.size > 0) for (const id of ids) this.watches.note(id)
    metrics?.written(record, clock.nowMs() - started)
    this.p.backpressure.checkHigh()
    this.p.written(payload.length)
    return { lsn }
  }

  /** The record's payload, a private copy (msgpackr reuses its buffer, and the pending log keeps this one). */
  private encode(record: WalRecord): Uint8Array {
    try {
      return this.p.pending.copy(this.p.codec.encode(record))
    } catch (cause) {
      throw invalidValue(`value cannot be serialised: ${(cause as Error).message}`, cause)
    }
  }
}

/** The log's refusals, in the engine's terms. */
function engineError(err: unknown): Error {
  if (err instanceof WalFailedError) return new MemwalError('ENGINE_FAILED', err.message, { cause: err })
  if (isMemwalError(err) && err.code === 'WAL_CLOSED') return new MemwalError('ENGINE_CLOSED', 'the engine is closed', { cause: err })
  return err as Error
}
