import type { EngineHealth } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { table, type Output } from '../output.js'

export interface TopOptions {
  /** ms between looks (default 1,000). */
  readonly intervalMs: number
  /** Stop after this many looks (default: until interrupted). */
  readonly count?: number
}

/** What one look shows: the health document, and rates from the look before. */
export interface TopView {
  readonly atMs: number
  readonly state: string
  readonly level: string
  readonly reason?: string
  readonly lastLsn: number
  /** Records acknowledged per second since the previous look (absent on the first). */
  readonly writesPerSec?: number
  readonly backlog: EngineHealth['backlog']
  readonly disk?: EngineHealth['disk']
  readonly sinks: readonly { readonly name: string; readonly breaker: string; readonly checkpoint: number; readonly lagRecords: number; readonly lagMs: number; readonly appliedPerSec?: number; readonly lastError?: string }[]
}

/**
 * `memwal top <url>`: a live view of a running engine, from the health
 * endpoint it serves (`MemWAL.open({ metricsPort })`): only the process that
 * holds a store knows its live state (breakers, lag, backlog), and the files
 * say little while it runs. Each look GETs `<url>/health`; rates come from
 * the difference with the look before. On a terminal the view is redrawn in
 * place; otherwise (and with --json) one JSON line per look.
 */
export async function top(url: string, o: TopOptions, out: Output, signals: NodeJS.EventEmitter = process): Promise<number> {
  const base = new URL(url)
  const healthUrl = new URL('/health', base)
  let stopped = false
  let wake: (() => void) | undefined
  const stop = (): void => {
    stopped = true
    wake?.()
  }
  signals.once('SIGINT', stop)
  signals.once('SIGTERM', stop)
  const tty = !out.json && process.stdout.isTTY
  try {
    let before: { atMs: number; h: EngineHealth } | undefined
    for (let n = 0; !stopped && (o.count === undefined || n < o.count); n++) {
      // A timer that keeps the process alive between looks (an unref'd one would let it exit after the first).
      if (n > 0) await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, o.intervalMs)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      if (stopped) break
      const h = await fetchHealth(healthUrl)
      const atMs = Date.now()
      const view = viewOf(h, atMs, before)
      before = { atMs, h }
      if (out.json || !tty) out.jsonLine(view)
      else process.stdout.write(`\u001b[2J\u001b[H${render(url, view)}\n`)
    }
    return ExitCode.CLEAN
  } finally {
    signals.off('SIGINT', stop)
    signals.off('SIGTERM', stop)
  }
}

async function fetchHealth(url: URL): Promise<EngineHealth> {
  let res: Response
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5000) })
  } catch (cause) {
    throw new Error(`no answer from ${url.href} (${(cause as Error).message}): is the process running with metricsPort set?`, { cause })
  }
  // 503 is the document of a failed or closed engine: still worth showing.
  if (res.status !== 200 && res.status !== 503) throw new Error(`${url.href} answered ${res.status}: not a memwal health endpoint`)
  return (await res.json()) as EngineHealth
}

export function viewOf(h: EngineHealth, atMs: number, before: { readonly atMs: number; readonly h: EngineHealth } | undefined): TopView {
  const seconds = before ? (atMs - before.atMs) / 1000 : 0
  const rate = (now: number, then: number | undefined): number | undefined => (before && then !== undefined && seconds > 0 ? (now - then) / seconds : undefined)
  const writesPerSec = rate(h.wal.lastLsn, before?.h.wal.lastLsn)
  return {
    atMs,
    state: h.state,
    level: h.level,
    ...(h.reason !== undefined ? { reason: h.reason } : {}),
    lastLsn: h.wal.lastLsn,
    ...(writesPerSec !== undefined ? { writesPerSec } : {}),
    backlog: h.backlog,
    ...(h.disk !== undefined ? { disk: h.disk } : {}),
    sinks: Object.entries(h.sinks).map(([name, s]) => {
      const appliedPerSec = rate(s.checkpoint, before?.h.sinks[name]?.checkpoint)
      return {
        name, breaker: s.breaker, checkpoint: s.checkpoint, lagRecords: s.lag.records, lagMs: s.lag.ms,
        ...(appliedPerSec !== undefined ? { appliedPerSec } : {}),
        ...(s.lastError !== undefined ? { lastError: `${s.lastError.code}: ${s.lastError.message}` } : {}),
      }
    }),
  }
}

function render(url: string, v: TopView): string {
  const n = (x: number | undefined, digits = 0): string => (x === undefined ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: digits }))
  const lines = [
    `memwal top ${url}   ${new Date(v.atMs).toISOString()}`,
    `state ${v.state} (${v.level})${v.reason !== undefined ? `: ${v.reason}` : ''}`,
    `log: last LSN ${n(v.lastLsn)}, ${n(v.writesPerSec, 1)} writes/s   backlog: ${n(v.backlog.records)} records, ${n(v.backlog.bytes)} of ${n(v.backlog.maxBytes)} bytes`,
    ...(v.disk !== undefined ? [`disk: ${JSON.stringify(v.disk)}`] : []),
    '',
    table([
      ['sink', 'breaker', 'checkpoint', 'lag', 'lag ms', 'applied/s', 'last error'],
      ...v.sinks.map((s) => [s.name, s.breaker, n(s.checkpoint), n(s.lagRecords), n(s.lagMs), n(s.appliedPerSec, 1), s.lastError ?? '']),
    ]),
  ]
  return lines.join('\n')
}
