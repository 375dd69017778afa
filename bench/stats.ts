/**
 * Numbers for the benchmark: a latency recorder that does not allocate per
 * operation, percentiles, medians, and a plain-text table. Pure: no I/O.
 */

/** Per-operation latencies in microseconds, kept in a growable Float64Array. */
export class LatencyRecorder {
  private values: Float64Array
  private used = 0

  constructor(initialCapacity = 1 << 16) {
    this.values = new Float64Array(Math.max(16, initialCapacity))
  }

  get count(): number {
    return this.used
  }

  record(us: number): void {
    if (this.used === this.values.length) {
      const grown = new Float64Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.used++] = us
  }

  /** The recorded latencies, sorted ascending (a copy). */
  sorted(): Float64Array {
    return this.values.slice(0, this.used).sort()
  }
}

/**
 * Nearest-rank percentile of an ascending array: the smallest value such that
 * at least `p` percent of the values are at or below it. NaN when empty.
 */
export function percentile(sortedAscending: ArrayLike<number>, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], not ${p}`)
  const n = sortedAscending.length
  if (n === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil((p / 100) * n))
  return sortedAscending[Math.min(n, rank) - 1] ?? Number.NaN
}

/** Median of a list (mean of the two middle values for an even count). NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  const hi = s[mid] ?? Number.NaN
  return s.length % 2 === 1 ? hi : ((s[mid - 1] ?? Number.NaN) + hi) / 2
}

/** What one measured repetition of one workload produced. */
export interface TrialResult {
  /** Operations acknowledged during the trial. */
  readonly ops: number
  readonly elapsedMs: number
  readonly opsPerSec: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly maxUs: number
}

export function trialResult(ops: number, elapsedMs: number, latencies: LatencyRecorder): TrialResult {
  const s = latencies.sorted()
  return {
    ops,
    elapsedMs,
    opsPerSec: elapsedMs > 0 ? (ops * 1000) / elapsedMs : Number.NaN,
    p50Us: percentile(s, 50),
    p99Us: percentile(s, 99),
    p999Us: percentile(s, 99.9),
    maxUs: s.length > 0 ? (s[s.length - 1] ?? Number.NaN) : Number.NaN,
  }
}

/** The median over repetitions of each figure, with the repetitions kept. */
export interface Summary {
  readonly opsPerSec: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly repetitions: readonly TrialResult[]
}

export function summarize(trials: readonly TrialResult[]): Summary {
  return {
    opsPerSec: median(trials.map((t) => t.opsPerSec)),
    p50Us: median(trials.map((t) => t.p50Us)),
    p99Us: median(trials.map((t) => t.p99Us)),
    p999Us: median(trials.map((t) => t.p999Us)),
    repetitions: trials,
  }
}

/** A number for a table: thousands separated, `digits` decimals. */
export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return String(n)
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Renders rows as a plain-text table; the first row is the header, numbers right-aligned. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  const numeric = (cell: string): boolean => /^[-+]?[\d,.]+[x%]?$/.test(cell)
  const line = (row: readonly string[]): string =>
    row.map((cell, i) => (numeric(cell) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd()
  const out = rows.map(line)
  if (out.length > 1) out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '))
  return out.join('\n')
}
