/**
 * The benchmark's document (what `--json` prints) and its self-contained HTML
 * report: inline CSS and inline SVG charts, no script, no external resource.
 * Pure: no I/O.
 *
 * Charts: acknowledged writes per second against writes in flight (log
 * scale; the raw fdatasync loops as horizontal lines), latency percentiles
 * (p50, p99, p99.9) per system at each concurrency, and the one-shot engine
 * workloads (replay, fsck, open, status).
 */

export interface ResultEntry {
  /** `system/workload`, stable. */
  readonly id: string
  readonly system: string
  readonly systemLabel: string
  readonly workload: string
  readonly workloadLabel: string
  /** `append`: a sustained write workload; `engine`: a one-shot one (replay, fsck, open, status). */
  /** `replication`: records/s into PostgreSQL (with --pg); `ackOpsPerSec` and `drainMs` in details. */
  /** `adapter`: memwal's LangGraph and claude-flow adapters against the frameworks' own stores (ops: checkpoints, stores or queries). */
  readonly group: 'append' | 'engine' | 'replication' | 'adapter'
  /** The record written: `plain` (a 350-byte payload) or `agent` (an agent-memory object with a namespace and three tags). */
  readonly shape: 'plain' | 'agent'
  /** For the charts: `awaited`, or the writes in flight (or records per batch), as text; null when it does not apply. */
  readonly concurrency: string | null
  /** Median over repetitions. Append: acknowledged records/s. One-shot: records in the log per second of the operation. */
  readonly opsPerSec: number
  readonly mbPerSec: number
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
  /** The highest over repetitions. */
  readonly peakRssMB: number
  /** One-shot workloads: median duration. */
  readonly ms?: number
  readonly details?: Readonly<Record<string, number>>
  readonly repetitions: readonly Readonly<Record<string, number>>[]
}

export interface GoalEntry {
  readonly id: string
  readonly shape: 'plain' | 'agent'
  readonly goal: string
  readonly target: number
  readonly measured: number | null
  readonly met: boolean | null
  readonly numerator: string
  readonly denominator: string
}

/** An absolute figure the engine aims for (from earlier issues), judged in this run. */
export interface TargetEntry {
  readonly id: string
  readonly target: string
  readonly measured: number | null
  readonly unit: string
  /** null when not measured, or not at the size the target is stated for. */
  readonly met: boolean | null
  readonly from: string
}

/** What a small store takes on disk. */
export interface FootprintEntry {
  readonly id: string
  readonly records: number
  readonly shape: 'plain' | 'agent'
  /** Blocks allocated, as du counts them. */
  readonly diskBytes: number
  readonly apparentBytes: number
  readonly files: number
}

/** Workloads not run because their peer's package cannot be loaded here. */
export interface SkippedEntry {
  readonly package: string
  readonly reason: string
  readonly workloads: readonly string[]
}

export interface SystemEntry {
  readonly id: string
  readonly label: string
  /** What an acknowledgement means for it, and how it is driven. */
  readonly durability: string
}

export interface ProfileSummary {
  /** The workload profiled (a result id). */
  readonly id: string
  /** Sampled time, idle excluded. */
  readonly busyMs: number
  readonly idleMs: number
  readonly functions: readonly { readonly name: string; readonly location: string; readonly selfMs: number; readonly pct: number }[]
  readonly areas: readonly { readonly area: string; readonly selfMs: number; readonly pct: number }[]
  /** Time by the innermost memwal (or benchmark) function on the stack: spent in it, or in the library calls it made. */
  readonly owners: readonly { readonly name: string; readonly location: string; readonly selfMs: number; readonly pct: number }[]
}

export interface BenchDocument {
  readonly benchmark: 'memwal'
  readonly startedAt: string
  readonly command: string
  readonly config: Readonly<Record<string, unknown>>
  readonly machine: Readonly<Record<string, unknown>>
  readonly load: { readonly start: number; readonly end: number; readonly mean: number; readonly max: number; readonly samples: number }
  readonly systems: readonly SystemEntry[]
  readonly results: readonly ResultEntry[]
  readonly goals: readonly GoalEntry[]
  readonly targets: readonly TargetEntry[]
  readonly footprint?: FootprintEntry
  readonly skipped: readonly SkippedEntry[]
  readonly profiles?: readonly ProfileSummary[]
  readonly notes: readonly string[]
  readonly elapsedMs: number
}

// ---- formatting ----

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c)

export function num(n: number | undefined | null, digits = 0): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '–'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** 3 significant figures, with k/M suffixes for axis labels. */
function short(n: number): string {
  const a = Math.abs(n)
  if (a >= 1e6) return `${+(n / 1e6).toPrecision(3)}M`
  if (a >= 1e3) return `${+(n / 1e3).toPrecision(3)}k`
  return `${+n.toPrecision(3)}`
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22']

function colourOf(systems: readonly string[]): (system: string) => string {
  return (s) => PALETTE[Math.max(0, systems.indexOf(s)) % PALETTE.length] ?? '#333'
}

/** Log-scale mapping of [lo, hi] (expanded to whole decades) onto [bottom, top] pixels, with its decade ticks. */
function logScale(values: readonly number[], bottom: number, top: number): { y: (v: number) => number; ticks: number[] } {
  const finite = values.filter((v) => Number.isFinite(v) && v > 0)
  const lo = 10 ** Math.floor(Math.log10(Math.min(...(finite.length ? finite : [1]))))
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...(finite.length ? finite : [10]))))
  const span = Math.max(1e-9, Math.log10(hi) - Math.log10(lo))
  const ticks: number[] = []
  for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t)
  return { y: (v) => bottom - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span) * (bottom - top), ticks }
}

// ---- charts ----

const CONCURRENCY = ['awaited', '1', '16', '256', '4096']

/** Records/s of one record shape against writes in flight, one line per system; the raw loops as dashed horizontal lines. */
function throughputChart(doc: BenchDocument, shape: ResultEntry['shape']): string {
  const append = doc.results.filter((r) => r.group === 'append' && (r.shape === shape || r.system === 'raw-append' || r.system === 'raw-prealloc'))
  if (!append.some((r) => r.shape === shape && r.concurrency !== null)) return ''
  const series = [...new Set(append.filter((r) => r.concurrency !== null && r.system !== 'raw-append' && r.system !== 'raw-prealloc').map((r) => r.system))]
  const raws = append.filter((r) => r.system === 'raw-append' || r.system === 'raw-prealloc')
  const label = (system: string): string => doc.systems.find((s) => s.id === system)?.label ?? system
  const colour = colourOf(doc.systems.map((s) => s.id))
  const W = 760
  const H = 420
  const L = 70
  const R = 250
  const T = 20
  const B = 50
  const plotW = W - L - R
  const x = (c: string): number => L + ((CONCURRENCY.indexOf(c) + 0.5) / CONCURRENCY.length) * plotW
  const { y, ticks } = logScale(append.map((r) => r.opsPerSec), H - B, T)
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="acknowledged records per second against writes in flight, ${shape} records">`, `<text x="${L}" y="12" font-weight="bold">${shape === 'agent' ? 'agent-memory records (object, namespace, three tags)' : 'plain 350-byte records'}</text>`]
  for (const t of ticks) out.push(`<line x1="${L}" x2="${L + plotW}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" class="grid"/><text x="${L - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${short(t)}</text>`)
  for (const c of CONCURRENCY) out.push(`<text x="${x(c).toFixed(1)}" y="${H - B + 18}" text-anchor="middle">${c}</text>`)
  out.push(`<text x="${L + plotW / 2}" y="${H - 10}" text-anchor="middle">writes in flight (batches: records per batch)</text>`)
  out.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">acknowledged records/s (log)</text>`)
  let legendY = T + 10
  const legend = (colourHex: string, text: string, dashed: boolean): void => {
    out.push(`<line x1="${W - R + 12}" x2="${W - R + 36}" y1="${legendY}" y2="${legendY}" stroke="${colourHex}" stroke-width="2.5"${dashed ? ' stroke-dasharray="6 4"' : ''}/><text x="${W - R + 42}" y="${legendY + 4}">${esc(text)}</text>`)
    legendY += 20
  }
  for (const r of raws) {
    const yy = y(r.opsPerSec).toFixed(1)
    out.push(`<line x1="${L}" x2="${L + plotW}" y1="${yy}" y2="${yy}" stroke="${colour(r.system)}" stroke-width="2" stroke-dasharray="6 4"><title>${esc(`${label(r.system)}: ${num(r.opsPerSec)} records/s`)}</title></line>`)
    legend(colour(r.system), label(r.system), true)
  }
  for (const s of series) {
    const pts = CONCURRENCY.flatMap((c) => {
      const r = append.find((e) => e.system === s && e.concurrency === c)
      return r ? [{ c, r }] : []
    })
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${colour(s)}" stroke-width="2.5" points="${pts.map((p) => `${x(p.c).toFixed(1)},${y(p.r.opsPerSec).toFixed(1)}`).join(' ')}"/>`)
    for (const p of pts) out.push(`<circle cx="${x(p.c).toFixed(1)}" cy="${y(p.r.opsPerSec).toFixed(1)}" r="4" fill="${colour(s)}"><title>${esc(`${label(s)}, ${p.r.workloadLabel}: ${num(p.r.opsPerSec)} records/s`)}</title></circle>`)
    legend(colour(s), label(s), false)
  }
  out.push('</svg>')
  return out.join('\n')
}

/** p50, p99 and p99.9 of every system measured at concurrency `c`, as grouped bars on a log scale. */
function latencyChart(doc: BenchDocument, c: string): string {
  const rows = doc.results.filter((r) => r.group === 'append' && (r.concurrency === c || (c === 'awaited' && (r.system === 'raw-append' || r.system === 'raw-prealloc'))))
  if (rows.length === 0) return ''
  const W = 760
  const rowH = 3 * 9 + 10
  const L = 300
  const R = 70
  const T = 24
  const B = 36
  const H = T + B + rows.length * rowH
  const all = rows.flatMap((r) => [r.p50Us, r.p99Us, r.p999Us])
  // Horizontal bars: logScale from 0 to the plot's width (small values at the left).
  const s = logScale(all, 0, W - L - R)
  const xOf = (v: number): number => L + s.y(v)
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="latency percentiles, ${esc(c)}">`]
  const batches = rows.some((r) => r.system === 'level-batch')
  const title = c === 'awaited' ? 'one awaited writer (raw loops: one synchronous writer)' : `${c} ${c === '1' ? 'write' : 'writes'} in flight${batches ? ` (classic-level batch: ${c} records per batch, one at a time)` : ''}`
  out.push(`<text x="10" y="14" font-weight="bold">${esc(title)}</text>`)
  for (const t of s.ticks) {
    const xx = xOf(t).toFixed(1)
    out.push(`<line x1="${xx}" x2="${xx}" y1="${T}" y2="${H - B}" class="grid"/><text x="${xx}" y="${H - B + 16}" text-anchor="middle">${short(t)}</text>`)
  }
  out.push(`<text x="${L + (W - L - R) / 2}" y="${H - 4}" text-anchor="middle">latency per acknowledgement, µs (log)</text>`)
  const shades = [{ k: 'p50Us', name: 'p50', o: 1 }, { k: 'p99Us', name: 'p99', o: 0.6 }, { k: 'p999Us', name: 'p99.9', o: 0.3 }] as const
  const colour = colourOf(doc.systems.map((x) => x.id))
  rows.forEach((r, i) => {
    const top = T + i * rowH + 4
    const label = doc.systems.find((x) => x.id === r.system)?.label ?? r.system
    out.push(`<text x="${L - 8}" y="${top + 17}" text-anchor="end">${esc(r.shape === 'agent' ? `${label} (agent record)` : label)}</text>`)
    shades.forEach((sh, j) => {
      const v = r[sh.k]
      const w = Math.max(1, xOf(v) - L)
      out.push(`<rect x="${L}" y="${top + j * 9}" width="${w.toFixed(1)}" height="8" fill="${colour(r.system)}" fill-opacity="${sh.o}"><title>${esc(`${label}, ${r.workloadLabel}: ${sh.name} ${num(v, 1)} µs`)}</title></rect>`)
      out.push(`<text x="${(L + w + 4).toFixed(1)}" y="${top + j * 9 + 8}" class="small">${sh.name} ${short(v)}</text>`)
    })
  })
  out.push('</svg>')
  return out.join('\n')
}

/** Median duration of each one-shot workload, horizontal bars on a log scale. */
function engineChart(doc: BenchDocument): string {
  const rows = doc.results.filter((r) => r.group === 'engine' && r.ms !== undefined)
  if (rows.length === 0) return ''
  const W = 900
  const rowH = 22
  const L = 420
  const R = 90
  const T = 10
  const B = 36
  const H = T + B + rows.length * rowH
  const s = logScale(rows.map((r) => r.ms ?? 0), 0, W - L - R)
  const xOf = (v: number): number => L + s.y(v)
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="one-shot engine workloads, duration">`]
  for (const t of s.ticks) {
    const xx = xOf(t).toFixed(1)
    out.push(`<line x1="${xx}" x2="${xx}" y1="${T}" y2="${H - B}" class="grid"/><text x="${xx}" y="${H - B + 16}" text-anchor="middle">${short(t)}</text>`)
  }
  out.push(`<text x="${L + (W - L - R) / 2}" y="${H - 4}" text-anchor="middle">milliseconds (log), median over repetitions</text>`)
  rows.forEach((r, i) => {
    const top = T + i * rowH + 3
    const w = Math.max(1, xOf(r.ms ?? 0) - L)
    out.push(`<text x="${L - 8}" y="${top + 13}" text-anchor="end">${esc(`${r.system === 'memwal-wal' ? 'Wal' : 'MemWAL'}: ${r.workloadLabel}`)}</text>`)
    out.push(`<rect x="${L}" y="${top}" width="${w.toFixed(1)}" height="16" fill="#1f77b4"><title>${esc(`${num(r.ms, 1)} ms, ${num(r.mbPerSec, 1)} MB/s`)}</title></rect>`)
    out.push(`<text x="${(L + w + 4).toFixed(1)}" y="${top + 13}">${num(r.ms, r.ms !== undefined && r.ms < 10 ? 1 : 0)} ms</text>`)
  })
  out.push('</svg>')
  return out.join('\n')
}

// ---- tables ----

function resultsTable(doc: BenchDocument, group: ResultEntry['group']): string {
  const rows = doc.results.filter((r) => r.group === group)
  if (rows.length === 0) return ''
  const head = group !== 'engine'
    ? ['system', 'workload', 'records/s', 'MB/s', 'p50 µs', 'p99 µs', 'p99.9 µs', 'peak RSS MB', 'reps']
    : ['system', 'workload', 'ms (median)', 'records/s', 'MB/s', 'peak RSS MB', 'reps', 'details']
  const body = rows.map((r) => {
    const cells = group !== 'engine'
      ? [r.systemLabel, r.workloadLabel, num(r.opsPerSec), num(r.mbPerSec, 2), num(r.p50Us, 1), num(r.p99Us, 1), num(r.p999Us, 1), num(r.peakRssMB), num(r.repetitions.length)]
      : [r.systemLabel, r.workloadLabel, num(r.ms, 1), num(r.opsPerSec), num(r.mbPerSec, 1), num(r.peakRssMB), num(r.repetitions.length),
          Object.entries(r.details ?? {}).map(([k, v]) => `${k} ${num(v, Math.abs(v) < 10 ? 2 : 0)}`).join(', ')]
    return `<tr>${cells.map((c, i) => `<td${i >= 2 && !(group === 'engine' && i === 7) ? ' class="n"' : ''}>${esc(c)}</td>`).join('')}</tr>`
  })
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body.join('')}</tbody></table>`
}

function goalsTable(doc: BenchDocument): string {
  const body = doc.goals.map((g) => {
    const verdict = g.met === null ? '<td>not measured</td>' : g.met ? '<td class="pass">PASS</td>' : '<td class="short">SHORT</td>'
    return `<tr><td>${esc(g.goal)}</td><td class="n">${g.measured === null ? '–' : `${num(g.measured, 2)}x`}</td><td class="n">${num(g.target, 1)}x</td>${verdict}<td class="small">${esc(g.numerator)} / ${esc(g.denominator)}</td></tr>`
  })
  return `<table><thead><tr><th>goal</th><th>measured</th><th>target</th><th></th><th>ratio of</th></tr></thead><tbody>${body.join('')}</tbody></table>`
}

function targetsTable(doc: BenchDocument): string {
  if (doc.targets.length === 0) return ''
  const body = doc.targets.map((g) => {
    const verdict = g.met === null ? '<td>–</td>' : g.met ? '<td class="pass">PASS</td>' : '<td class="short">SHORT</td>'
    return `<tr><td>${esc(g.target)}</td><td class="n">${g.measured === null ? '–' : `${num(g.measured, g.measured < 10 ? 2 : 0)} ${esc(g.unit)}`}</td>${verdict}<td class="small">${esc(g.from)}</td></tr>`
  })
  return `<h3>Engine targets</h3><table><thead><tr><th>target</th><th>measured</th><th></th><th>from</th></tr></thead><tbody>${body.join('')}</tbody></table>`
}

function profilesSection(doc: BenchDocument): string {
  if (!doc.profiles || doc.profiles.length === 0) return ''
  const parts = doc.profiles.map((p) => {
    const rows = (list: ProfileSummary['functions']): string => list.map((f) => `<tr><td class="n">${num(f.pct, 1)}%</td><td class="n">${num(f.selfMs)}</td><td><code>${esc(f.name)}</code></td><td class="small">${esc(f.location)}</td></tr>`).join('')
    const areas = p.areas.map((a) => `${esc(a.area)} ${num(a.pct, 1)}%`).join(' · ')
    return `<h3>${esc(p.id)}</h3><p class="small">busy ${num(p.busyMs)} ms sampled (idle ${num(p.idleMs)} ms); self time by area: ${areas}</p>
<table><thead><tr><th>share</th><th>ms</th><th>innermost memwal function on the stack</th><th>where</th></tr></thead><tbody>${rows(p.owners)}</tbody></table>
<table><thead><tr><th>self</th><th>ms</th><th>function</th><th>where</th></tr></thead><tbody>${rows(p.functions)}</tbody></table>`
  })
  return `<h2>Where the time goes (CPU profiles)</h2><p class="small">Self time per function, from <code>--cpu-prof</code> of each profiled child process (its whole life: start, warm-up, measured run). A profiled run is slower than an unprofiled one: take its figures from a run without <code>--profile</code>.</p>${parts.join('\n')}`
}

function definitionList(o: Readonly<Record<string, unknown>>): string {
  return `<dl>${Object.entries(o).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(typeof v === 'string' ? v : JSON.stringify(v))}</dd>`).join('')}</dl>`
}

/** The whole report: one HTML file, no external resources. */
export function renderHtmlReport(doc: BenchDocument): string {
  const latency = CONCURRENCY.map((c) => latencyChart(doc, c)).filter((s) => s !== '').join('\n')
  const systems = doc.systems.map((s) => `<li><b>${esc(s.label)}</b>: ${esc(s.durability)}</li>`).join('')
  const notes = doc.notes.map((n) => `<li>${esc(n)}</li>`).join('')
  const json = JSON.stringify(doc).replace(/</g, '\\u003c')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>memwal benchmark, ${esc(doc.startedAt)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#176f2c;font-weight:bold}.short{color:#b3261e;font-weight:bold}
.small{font-size:12px;color:#555}svg{display:block;margin:.5em 0 1.5em;font:12px system-ui,sans-serif}svg .grid{stroke:#e3e3e3}svg .small{font-size:10px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}dt{font-weight:bold}dd{margin:0}
</style></head><body>
<h1>memwal benchmark</h1>
<p>${esc(doc.startedAt)} · <code>${esc(doc.command)}</code> · ${num(doc.elapsedMs / 1000, 1)} s · load average (1 min) ${num(doc.load.start, 2)} at start, ${num(doc.load.end, 2)} at end, mean ${num(doc.load.mean, 2)}, max ${num(doc.load.max, 2)}</p>
<h2>Goals (ratios measured in this run)</h2>
${goalsTable(doc)}
${targetsTable(doc)}
${doc.footprint ? `<p>A fresh store with ${num(doc.footprint.records)} ${esc(doc.footprint.shape)} records takes ${num(doc.footprint.diskBytes / 1048576, 1)} MiB on disk (${num(doc.footprint.apparentBytes / 1048576, 1)} MiB in ${num(doc.footprint.files)} files).</p>` : ''}
${doc.skipped.map((s) => `<p class="short">Skipped ${esc(s.workloads.join(', '))}: ${esc(s.package)} ${esc(s.reason)}.</p>`).join('\n')}
<h2>Throughput against writes in flight</h2>
<p class="small">Median over repetitions; an acknowledgement means the record is durable (fdatasync'd or O_DSYNC-written). Systems are interleaved round by round, so machine noise falls on all of them alike.</p>
${throughputChart(doc, 'agent')}
${throughputChart(doc, 'plain')}
<h2>Latency percentiles</h2>
${latency}
<h2>Engine workloads (one-shot)</h2>
${engineChart(doc)}
${resultsTable(doc, 'engine')}
<h2>All append results</h2>
${resultsTable(doc, 'append')}
${resultsTable(doc, 'replication') === '' ? '' : `<h2>Replication into PostgreSQL</h2><p class="small">records/s counted when in PostgreSQL; latency of the acknowledgements.</p>${resultsTable(doc, 'replication')}`}
${resultsTable(doc, 'adapter') === '' ? '' : `<h2>The adapters against the frameworks' own stores</h2><p class="small">ops/s: checkpoints, stores or queries per second; latency per operation.</p>${resultsTable(doc, 'adapter')}`}
${profilesSection(doc)}
<h2>Systems</h2><ul>${systems}</ul>
<h2>Notes</h2><ul>${notes}</ul>
<h2>Machine and configuration</h2>
${definitionList(doc.machine)}
${definitionList(doc.config)}
<script type="application/json" id="memwal-bench-data">${json}</script>
</body></html>
`
}
