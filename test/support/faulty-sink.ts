/**
 * Fault injection for the engine's sinks, through the `wrapSink` option:
 *
 *   const faults = new SinkFaults({ targets: ['backend'] })
 *   const engine = await MemWAL.open({ dir, wrapSink: (s) => faults.wrap(s) })
 *
 * The wrapper patches the sink instance's protected `_apply` hook (the public
 * `apply` keeps the idempotency filter and the checkpoint bookkeeping), and a
 * sink's reads (a backend's `get` and `entries`, the index's scans). For the target sinks it can
 * - fail a seeded fraction of apply calls with a transient error (`transientRate`),
 * - fail every apply and backend read during an outage (`down()` / `up()`), or only reads, the index's too, or only some reads (`readsDown(...only)` / `readsUp()`),
 * - hang applies until released (`hang()` / `release()`; a hung call then
 *   completes its work, as a slow backend would, whatever the abort signal),
 * - reject records touching given keys for good with PermanentSinkError (`rejectKeys`).
 * For every wrapped sink it counts the calls and, per LSN, how many times the
 * sink's storage took the record (to catch a double apply).
 */
import { DEFAULT_NAMESPACE, PermanentSinkError, type AppliedRecord, type BackendSink, type Sink } from '../../engine/index.js'
import { SeededRandom } from '../../engine/testing.js'

/** A transient failure: what a backend that cannot be reached throws. */
export class InjectedFault extends Error {
  readonly code = 'EINJECTED'
}

type ApplyHook = (records: readonly AppliedRecord[], checkpoint: number, signal?: AbortSignal) => Promise<void>

interface SinkStats {
  /** Calls that reached the hook (fresh records after the idempotency filter). */
  calls: number
  /** Calls the injector failed (outage, transient, permanent). */
  failed: number
  /** Per LSN: how many times the sink's storage took it. */
  readonly applied: Map<number, number>
  /** LSNs of every call's records, in call order (to see how records were batched). */
  readonly batches: number[][]
}

export interface SinkFaultsOptions {
  /** Names of the sinks to inject faults into (default: backend). Every wrapped sink is counted. */
  readonly targets?: readonly string[]
  /** Fraction of apply calls that fail transiently, drawn from `seed`. */
  readonly transientRate?: number
  readonly seed?: number
}

export class SinkFaults {
  private readonly targets: Set<string>
  private readonly random: SeededRandom
  private transientRate: number
  private isDown = false
  private readsFail = false
  /** Reads that fail even while `readsFail` is off (readsDown with names). */
  private readonly failingReads = new Set<string>()
  private hangGate: { promise: Promise<void>; open: () => void } | undefined
  private hungCalls = 0
  private readonly poison = new Set<string>()
  private readonly stats = new Map<string, SinkStats>()
  private readonly sinks = new Map<string, Sink>()

  constructor(o: SinkFaultsOptions = {}) {
    this.targets = new Set(o.targets ?? ['backend'])
    this.random = new SeededRandom(o.seed ?? 1)
    this.transientRate = o.transientRate ?? 0
  }

  /** Use as `wrapSink: (s) => faults.wrap(s)`. */
  wrap<S extends Sink>(sink: S): S {
    const name = sink.name
    const stats: SinkStats = { calls: 0, failed: 0, applied: new Map(), batches: [] }
    this.stats.set(name, stats)
    this.sinks.set(name, sink)
    const target = this.targets.has(name)
    const hooks = sink as unknown as { _apply: ApplyHook }
    const original = hooks._apply.bind(sink)
    hooks._apply = async (records, checkpoint, signal) => {
      stats.calls++
      stats.batches.push(records.map((r) => r.lsn))
      if (target) {
        try {
          await this.beforeApply(name, records)
        } catch (err) {
          stats.failed++
          throw err
        }
      }
      await original(records, checkpoint, signal)
      for (const r of records) stats.applied.set(r.lsn, (stats.applied.get(r.lsn) ?? 0) + 1)
    }
    if (target) this.failReads(sink)
    return sink
  }

  /**
   * Makes the sink's reads fail: a backend's `get` and `entries` during an
   * outage or `readsDown()`; the index's `keys`, `forward` and `expired`
   * (its probe reads through `keys`) only with `readsDown()`, since
   * an outage of the index's applies leaves a stale index that queries still
   * read (what the tests of a down index rely on). Scans fail at their first step.
   */
  private failReads(sink: Sink): void {
    const name = sink.name
    const reads = sink as unknown as Record<string, unknown>
    const check = (what: string): void => {
      if (this.readsFail || this.failingReads.has(what) || (this.isDown && (what === 'get' || what === 'entries'))) throw new InjectedFault(`${name} is down (${what})`)
    }
    const original = (m: string): ((...a: unknown[]) => unknown) | undefined => {
      const f = reads[m]
      return typeof f === 'function' ? (f as (...a: unknown[]) => unknown).bind(sink) : undefined
    }
    // A query's estimate of a posting's size (index-sink.ts postingBytes) is a read like any other.
    const postingBytes = original('postingBytes')
    if (postingBytes) {
      reads.postingBytes = async (...args: unknown[]) => {
        check('postingBytes')
        return postingBytes(...args)
      }
    }
    const get = original('get')
    if (get) {
      reads.get = async (...args: unknown[]) => {
        check('get')
        return get(...args)
      }
    }
    // Scans are decided at the call (forward makes its snapshot there) and fail at their first step, as a real scan would:
    // an iterator's first next(), or a query's seekable scan's (index-scan.ts) first seek.
    const failedIterator = (err: unknown): unknown =>
      (async function* () {
        throw err
      })()
    const failedSeekable = (err: unknown): unknown => ({ seek: () => Promise.reject(err), meta: () => ({ tagsKnown: false }), close: () => Promise.resolve() })
    const scans: readonly (readonly [string, (err: unknown) => unknown])[] = [
      ...['entries', 'keys', 'expired', 'forward'].map((m) => [m, failedIterator] as const),
      ...['forwardScan', 'tagScan'].map((m) => [m, failedSeekable] as const),
    ]
    for (const [m, failed] of scans) {
      const scan = original(m)
      if (!scan) continue
      reads[m] = (...args: unknown[]) => {
        try {
          check(m)
        } catch (err) {
          return failed(err)
        }
        return scan(...args)
      }
    }
  }

  /** Every apply and read of the target sinks fails until `up()`. */
  down(): void {
    this.isDown = true
  }

  up(): void {
    this.isDown = false
  }

  /**
   * Every read (get, entries; the index's keys, forward, expired, forwardScan,
   * tagScan, postingBytes) of the target sinks fails until `readsUp()`, or only
   * the reads named in `only`; applies go on.
   */
  readsDown(...only: string[]): void {
    if (only.length === 0) this.readsFail = true
    for (const m of only) this.failingReads.add(m)
  }

  readsUp(): void {
    this.readsFail = false
    this.failingReads.clear()
  }

  get downNow(): boolean {
    return this.isDown
  }

  setTransientRate(rate: number): void {
    this.transientRate = rate
  }

  /** Apply calls of the target sinks from now on wait until `release()`. */
  hang(): void {
    if (this.hangGate) return
    let open!: () => void
    const promise = new Promise<void>((r) => (open = r))
    this.hangGate = { promise, open }
  }

  /** Lets every hung call go on (and do its work); new calls no longer hang. */
  release(): void {
    const g = this.hangGate
    this.hangGate = undefined
    g?.open()
  }

  /** Calls waiting in `hang()` right now. */
  get hanging(): number {
    return this.hungCalls
  }

  /** Records holding any of these keys are refused for good by the target sinks. */
  rejectKeys(...keys: string[]): void {
    for (const k of keys) this.poison.add(k)
  }

  /** The wrapped sink instance named `name` (e.g. to read the backend's entries directly). */
  sink(name: string): Sink {
    const s = this.sinks.get(name)
    if (!s) throw new Error(`sink ${name} was never wrapped`)
    return s
  }

  /** Every entry the backend stores, read from the backend itself (not through the engine's overlay or cache). */
  /** The backend's values by key (in the default namespace) or `namespace NUL key` (in any other), in identity order. */
  async backendContent(): Promise<Map<string, unknown>> {
    const b = this.sink('backend') as BackendSink
    const out = new Map<string, unknown>()
    for await (const [id, e] of b.entries()) out.set(e.namespace === DEFAULT_NAMESPACE ? e.key : id, e.value)
    return out
  }

  calls(sink: string): number {
    return this.statsOf(sink).calls
  }

  failed(sink: string): number {
    return this.statsOf(sink).failed
  }

  /** Per LSN, how many times `sink` stored the record. */
  applied(sink: string): ReadonlyMap<number, number> {
    return this.statsOf(sink).applied
  }

  batches(sink: string): readonly (readonly number[])[] {
    return this.statsOf(sink).batches
  }

  /** LSNs that `sink` stored more than once. */
  doubleApplied(sink: string): number[] {
    return [...this.statsOf(sink).applied].filter(([, n]) => n > 1).map(([lsn]) => lsn)
  }

  private statsOf(sink: string): SinkStats {
    const s = this.stats.get(sink)
    if (!s) throw new Error(`sink ${sink} was never wrapped`)
    return s
  }

  private async beforeApply(name: string, records: readonly AppliedRecord[]): Promise<void> {
    const gate = this.hangGate
    if (gate) {
      this.hungCalls++
      try {
        await gate.promise
      } finally {
        this.hungCalls--
      }
    }
    if (this.isDown) throw new InjectedFault(`${name} is down`)
    if (this.transientRate > 0 && this.random.nextU32() / 2 ** 32 < this.transientRate) throw new InjectedFault(`${name}: injected transient failure`)
    for (const r of records) {
      const rec = r.record
      const keys = rec.type === 3 ? rec.ops.map((o) => o.key) : [rec.op.key]
      const bad = keys.find((k) => this.poison.has(k))
      if (bad !== undefined) throw new PermanentSinkError(`${name} refuses key ${bad} (LSN ${r.lsn}) for good`)
    }
  }
}

/** Re-exported for the engine tests that import it from here; written once in wait-for.ts. */
export { waitFor } from './wait-for.js'

/** Small resilience settings so that tests see breakers open and close quickly. */
export const fastResilience = Object.freeze({
  retryDelayMsMin: 5,
  retryDelayMsMax: 50,
  breakerThreshold: 3,
  breakerHalfOpenMs: 50,
  applyTimeoutMs: 200,
})
