import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Sink } from './sinks/sink.js'
import { microtask } from './io/host-timers.js'
import type { WalRecord } from './format/record-codec.js'
import type { EngineHealth } from './health.js'
import type { BreakerState } from './resilience/policy.js'

/** Where a read was answered: the pending overlay, the cache, or the backend. */
export type ReadTier = 'overlay' | 'cache' | 'backend'

/** How an apply call failed: the sink's classification, or the engine's own refusals. */
export type ApplyFailureClass = 'transient' | 'permanent' | 'halt' | 'timeout' | 'breaker-open'

/**
 * memwal's metrics, registered on the registry the user passes (a library
 * never touches prom-client's global registry). Gauges are read from health()
 * when scraped, so the hot path only counts: one health() a scrape, shared by
 * every gauge, and each gauge shows only what that health says (a value it
 * no longer has, such as the time to full once nothing is written, is
 * dropped, not left stale). The names are listed in the README ("Metrics").
 */
export class EngineMetrics {
  private readonly writes: Counter<'type'>
  private readonly writeErrors: Counter<'code'>
  private readonly ackSeconds: Histogram
  private readonly applies: Counter<'sink'>
  private readonly applyFailures: Counter<'sink' | 'class'>
  private readonly retries: Counter<'sink'>
  private readonly breakerTransitions: Counter<'sink' | 'to'>
  private readonly deadLetters: Counter<'sink'>
  private readonly readHits: Counter<'tier'>
  private readonly readFailures: Counter<'sink' | 'code'>
  private readonly recoverySeconds: Gauge
  private readonly recoveryRecords: Gauge
  private readonly names: string[] = []
  /** The health this scrape's gauges read: taken by the first gauge collected, dropped once the scrape's synchronous pass is over. */
  private scraped: EngineHealth | undefined

  constructor(private readonly registry: Registry, private readonly engine: { health(): EngineHealth }) {
    const registers = [registry]
    const counter = <L extends string>(name: string, help: string, labelNames: L[]): Counter<L> => {
      this.names.push(name)
      return new Counter({ name, help, labelNames, registers })
    }
    const gauge = (name: string, help: string): Gauge => {
      this.names.push(name)
      return new Gauge({ name, help, registers })
    }
    this.writes = counter('memwal_writes_total', 'Acknowledged writes by record type', ['type'])
    this.writeErrors = counter('memwal_write_errors_total', 'Refused or failed writes by error code', ['code'])
    this.names.push('memwal_ack_seconds')
    this.ackSeconds = new Histogram({ name: 'memwal_ack_seconds', help: 'Time from write call to durable acknowledgement', buckets: [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1], registers })
    this.applies = counter('memwal_apply_batches_total', 'Batches applied by sink', ['sink'])
    this.applyFailures = counter('memwal_apply_failures_total', 'Failed apply calls by sink and class (transient, permanent, halt, timeout, breaker-open)', ['sink', 'class'])
    this.retries = counter('memwal_apply_retries_total', 'Apply attempts made again after a failure, by sink', ['sink'])
    this.breakerTransitions = counter('memwal_breaker_transitions_total', 'Circuit breaker state changes by sink and new state', ['sink', 'to'])
    this.deadLetters = counter('memwal_dead_letters_total', 'Records a sink rejected for good', ['sink'])
    this.readHits = counter('memwal_read_hits_total', 'Reads answered, by the tier that answered (overlay, cache, backend)', ['tier'])
    this.readFailures = counter('memwal_read_failures_total', 'Reads that failed because a sink (the backend, the index) could not answer, by sink and error code', ['sink', 'code'])
    this.recoverySeconds = gauge('memwal_recovery_seconds', 'How long the last open took (lock, checkpoints, log recovery, backlog reload)')
    this.recoveryRecords = gauge('memwal_recovery_records_replayed', 'Records read back from the log at open for the sinks to apply')
    const health = (): EngineHealth => this.scrapeHealth()
    const g = (name: string, help: string, labelNames: string[], read: (h: EngineHealth, set: (v: number, labels?: Record<string, string>) => void) => void): Gauge => {
      this.names.push(name)
      return new Gauge({
        name, help, labelNames, registers,
        collect(this: Gauge) {
          // Only what health says now: a label set or a value it no longer has must not linger.
          this.reset()
          if (labelNames.length === 0) this.remove()
          read(health(), (v, labels) => (labels ? this.set(labels, v) : this.set(v)))
        },
      })
    }
    const perSink = (read: (s: EngineHealth['sinks'][string]) => number) => (h: EngineHealth, set: (v: number, labels?: Record<string, string>) => void): void => {
      for (const [sink, s] of Object.entries(h.sinks)) set(read(s), { sink })
    }
    g('memwal_backlog_bytes', 'Acknowledged but not yet applied everywhere', [], (h, set) => set(h.backlog.bytes))
    g('memwal_backlog_records', 'Records acknowledged but not yet applied everywhere', [], (h, set) => set(h.backlog.records))
    g('memwal_sink_lag_records', 'Records a sink is behind the log', ['sink'], perSink((s) => s.lag.records))
    g('memwal_sink_breaker_open', '1 when the sink circuit breaker is not closed', ['sink'], perSink((s) => (s.breaker === 'closed' ? 0 : 1)))
    g('memwal_sink_checkpoint', 'Highest LSN a sink has applied', ['sink'], perSink((s) => s.checkpoint))
    g('memwal_declared_gaps', 'Gaps memwal declared in the log (LSNs recovery or fsck --repair dropped) not yet acknowledged', [], (h, set) => set(h.gaps.length))
    g('memwal_disk_free_bytes', 'Free bytes on the data directory\'s filesystem (at the last health check)', [], (h, set) => h.disk && set(h.disk.freeBytes))
    g('memwal_disk_write_bytes_per_second', 'Log bytes written per second over the last health checks', [], (h, set) => h.disk && set(h.disk.writeBytesPerSecond))
    g('memwal_disk_seconds_to_full', 'At the recent write rate, seconds until the disk is full (absent while nothing is written)', [], (h, set) => h.disk?.secondsToFull !== undefined && set(h.disk.secondsToFull))
  }

  /**
   * health() once a scrape: prom-client collects every metric of a scrape in
   * one synchronous pass (registry.metrics() starts each get() before it
   * awaits any), so the snapshot is kept until the microtasks after it.
   */
  private scrapeHealth(): EngineHealth {
    if (this.scraped) return this.scraped
    const h = this.engine.health()
    this.scraped = h
    microtask(() => (this.scraped = undefined))
    return h
  }

  written(r: WalRecord, ms: number): void {
    this.writes.inc({ type: r.type === 1 ? 'put' : r.type === 2 ? 'delete' : 'batch' })
    this.ackSeconds.observe(ms / 1000)
  }

  writeFailed(err: unknown): void {
    this.writeErrors.inc({ code: (err as { code?: string })?.code ?? 'UNKNOWN' })
  }

  applied(sink: Sink): void {
    this.applies.inc({ sink: sink.name })
  }

  applyFailed(sink: Sink, failure: ApplyFailureClass): void {
    this.applyFailures.inc({ sink: sink.name, class: failure })
  }

  retried(sink: Sink): void {
    this.retries.inc({ sink: sink.name })
  }

  breakerChanged(sink: string, to: BreakerState): void {
    this.breakerTransitions.inc({ sink, to })
  }

  deadLettered(sink: Sink): void {
    this.deadLetters.inc({ sink: sink.name })
  }

  readHit(tier: ReadTier): void {
    this.readHits.inc({ tier })
  }

  readFailed(sink: string, code: string): void {
    this.readFailures.inc({ sink, code })
  }

  /** Set once, after open: how long it took, how many records it read back for the sinks. */
  opened(seconds: number, recordsReplayed: number): void {
    this.recoverySeconds.set(seconds)
    this.recoveryRecords.set(recordsReplayed)
  }

  /** The Prometheus exposition of the registry (everything on it, memwal's and the caller's). */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  unregister(): void {
    for (const name of this.names) this.registry.removeSingleMetric(name)
  }
}
