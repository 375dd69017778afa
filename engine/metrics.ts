import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Sink } from './sinks/sink.js'
import type { WalRecord } from './format/record-codec.js'
import type { EngineHealth } from './health.js'

/**
 * memwal's metrics, registered on the registry the user passes (a library
 * never touches prom-client's global registry). Gauges are read from health()
 * when scraped, so the hot path only counts.
 */
export class EngineMetrics {
  private readonly writes: Counter<'type'>
  private readonly writeErrors: Counter<'code'>
  private readonly ackSeconds: Histogram
  private readonly applies: Counter<'sink'>
  private readonly deadLetters: Counter<'sink'>
  private readonly gauges: Gauge[]

  constructor(private readonly registry: Registry, engine: { health(): EngineHealth }) {
    const registers = [registry]
    this.writes = new Counter({ name: 'memwal_writes_total', help: 'Acknowledged writes by record type', labelNames: ['type'], registers })
    this.writeErrors = new Counter({ name: 'memwal_write_errors_total', help: 'Refused or failed writes by error code', labelNames: ['code'], registers })
    this.ackSeconds = new Histogram({ name: 'memwal_ack_seconds', help: 'Time from write call to durable acknowledgement', buckets: [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1], registers })
    this.applies = new Counter({ name: 'memwal_apply_batches_total', help: 'Batches applied by sink', labelNames: ['sink'], registers })
    this.deadLetters = new Counter({ name: 'memwal_dead_letters_total', help: 'Records a sink rejected for good', labelNames: ['sink'], registers })
    const g = (name: string, help: string, labelNames: string[], read: (h: EngineHealth, set: (v: number, labels?: Record<string, string>) => void) => void): Gauge =>
      new Gauge({
        name, help, labelNames, registers,
        collect(this: Gauge) {
          read(engine.health(), (v, labels) => (labels ? this.set(labels, v) : this.set(v)))
        },
      })
    this.gauges = [
      g('memwal_backlog_bytes', 'Acknowledged but not yet applied everywhere', [], (h, set) => set(h.backlog.bytes)),
      g('memwal_backlog_records', 'Records acknowledged but not yet applied everywhere', [], (h, set) => set(h.backlog.records)),
      g('memwal_sink_lag_records', 'Records a sink is behind the log', ['sink'], (h, set) => Object.entries(h.sinks).forEach(([sink, s]) => set(s.lag.records, { sink }))),
      g('memwal_sink_breaker_open', '1 when the sink circuit breaker is not closed', ['sink'], (h, set) => Object.entries(h.sinks).forEach(([sink, s]) => set(s.breaker === 'closed' ? 0 : 1, { sink }))),
      g('memwal_sink_checkpoint', 'Highest LSN a sink has applied', ['sink'], (h, set) => Object.entries(h.sinks).forEach(([sink, s]) => set(s.checkpoint, { sink }))),
    ]
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

  deadLettered(sink: Sink): void {
    this.deadLetters.inc({ sink: sink.name })
  }

  unregister(): void {
    for (const name of ['memwal_writes_total', 'memwal_write_errors_total', 'memwal_ack_seconds', 'memwal_apply_batches_total', 'memwal_dead_letters_total', ...this.gauges.map((x) => (x as unknown as { name: string }).name)]) {
      this.registry.removeSingleMetric(name)
    }
  }
}
