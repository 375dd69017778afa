/**
 * The layers, kept by parsing every import (static, dynamic, re-export) of
 * engine/, cli/, bench/ and adapters/. Inside engine/, imports point downward
 * only, in this order (a file may import its own layer and those below):
 *
 *   0  errors, assert, limits,          what everything stands on
 *      option-fields, io/
 *   1  format/                          pure bytes: frames, segment headers, records
 *   2  log/ (log/recovery/ inside it)   segment files, the writer, the Wal, recovery
 *   3  resilience/, sinks/              retry and breakers; the sinks
 *   4  apply/, reconcile/               never each other
 *   5  the rest of engine/'s top level  the engine: options, health, engine.ts ...
 *   6  index, testing                   the public entry points
 *
 * engine/ never imports cli/, bench/, adapters/ or test/. cli/, bench/ and
 * adapters/ import, besides their own folder, only the package's public
 * entry points (what package.json exports, and engine/testing.ts), never
 * test/; cli/ is a product and uses engine/index.ts, not engine/testing.ts.
 *
 * There is no list of tolerated violations: the last ones (the PostgreSQL
 * backend importing the engine's options and reconcile's dump) went with
 * issue 10. Any violation fails this test.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const CONSUMERS = ['cli', 'bench', 'adapters'] as const
/** The package's public entry points: what package.json exports (as sources), and the testing entry point. */
const ENTRY_POINTS = new Set(['engine/index.ts', 'engine/testing.ts', ...exportedSources()])
const BOTTOM = new Set(['engine/errors.ts', 'engine/assert.ts', 'engine/limits.ts', 'engine/option-fields.ts'])
/** Layers that sit at the same height yet must not import each other. */
const APART: readonly (readonly [string, string])[] = [['apply', 'reconcile']]

function exportedSources(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports?: Record<string, { import?: string } | string> }
  return Object.values(pkg.exports ?? {})
    .map((e) => (typeof e === 'string' ? e : e.import))
    .filter((f): f is string => f !== undefined && f.startsWith('./dist/') && f.endsWith('.js'))
    .map((f) => f.slice('./dist/'.length).replace(/\.js$/, '.ts'))
}

/** Every .ts file under `dir` (relative to the root, forward slashes). */
function sources(dir: string): string[] {
  const abs = path.join(ROOT, dir)
  if (!fs.existsSync(abs)) return []
  return (fs.readdirSync(abs, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => `${dir}/${f.split(path.sep).join('/')}`)
}

/** The relative module specifiers of `source` (package imports are not layers). */
export function importsOf(source: string): string[] {
  const specs: string[] = []
  const patterns = [/\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g]
  for (const re of patterns) for (const m of source.matchAll(re)) if (m[1]?.startsWith('.')) specs.push(m[1])
  return specs
}

/** `spec` imported from `from`, as a root-relative .ts path. */
function resolve(from: string, spec: string): string {
  return path.posix.normalize(path.posix.join(path.posix.dirname(from), spec)).replace(/\.js$/, '.ts')
}

/** The layer of an engine file: [rank, name]. */
export function layerOf(file: string): [number, string] {
  const rel = file.slice('engine/'.length)
  if (BOTTOM.has(file) || rel.startsWith('io/')) return [0, 'base']
  if (ENTRY_POINTS.has(file)) return [6, 'entry']
  const folder = rel.includes('/') ? (rel.split('/')[0] as string) : ''
  switch (folder) {
    case 'format':
      return [1, 'format']
    case 'log':
      return [2, 'log']
    case 'resilience':
    case 'sinks':
      return [3, folder]
    case 'apply':
    case 'reconcile':
      return [4, folder]
    default:
      return [5, 'engine']
  }
}

/** Why `from` may not import `to`, or undefined when it may. */
export function breach(from: string, to: string): string | undefined {
  const top = from.split('/')[0]
  const target = to.split('/')[0]
  if (top === 'engine') {
    if (target !== 'engine') return `engine/ imports ${target}/`
    const [fr, fl] = layerOf(from)
    const [tr, tl] = layerOf(to)
    if (tr > fr) return `layer ${fl} (${fr}) imports the higher layer ${tl} (${tr})`
    if (APART.some(([a, b]) => (fl === a && tl === b) || (fl === b && tl === a))) return `${fl} and ${tl} must not import each other`
    return undefined
  }
  if ((CONSUMERS as readonly string[]).includes(top ?? '')) {
    if (target === 'test') return `${top}/ imports test code`
    // The CLI is a product: what its commands need is in the product API, not in the simulations' entry point.
    if (top === 'cli' && to === 'engine/testing.ts') return 'cli/ imports engine/testing.ts (the product API is engine/index.ts)'
    if (target === top || ENTRY_POINTS.has(to)) return undefined
    return `${top}/ imports ${to}, not a public entry point`
  }
  return undefined
}

t.test('the layering rules themselves', async (t) => {
  t.equal(breach('engine/log/wal.ts', 'engine/format/format.ts'), undefined, 'down is allowed')
  t.equal(breach('engine/log/wal.ts', 'engine/log/recovery/log-scan.ts'), undefined, 'log/recovery is inside log')
  t.match(breach('engine/format/format.ts', 'engine/log/wal.ts'), /higher layer/, 'up is refused')
  t.match(breach('engine/apply/applier.ts', 'engine/reconcile/reconciler.ts'), /must not import each other/)
  t.match(breach('engine/reconcile/reconciler.ts', 'engine/apply/applier.ts'), /must not import each other/)
  t.match(breach('engine/engine.ts', 'engine/index.ts'), /higher layer/, 'nothing inside imports the entry point')
  t.match(breach('engine/sinks/pg/pg-backend.ts', 'engine/options.ts'), /higher layer/, 'a sink does not import the engine\'s options')
  t.match(breach('engine/sinks/pg/pg-backend.ts', 'engine/reconcile/dump.ts'), /higher layer/, 'a sink does not import the reconciler')
  t.equal(breach('engine/sinks/pg/pg-options.ts', 'engine/option-fields.ts'), undefined, 'every layer checks its options with the one checker')
  t.equal(breach('engine/sinks/pg/pg-options.ts', 'engine/io/logger.ts'), undefined, 'every layer may log')
  t.match(breach('engine/engine.ts', 'test/support/tmp-dir.ts'), /engine\/ imports test/)
  t.equal(breach('cli/main.ts', 'engine/index.ts'), undefined)
  t.equal(breach('bench/harness.ts', 'engine/testing.ts'), undefined)
  t.match(breach('cli/commands/dump.ts', 'engine/testing.ts'), /product API/, 'the CLI does not use the testing entry point')
  t.match(breach('cli/main.ts', 'engine/log/wal.ts'), /not a public entry point/)
  t.equal(breach('cli/demo-langgraph-agent.ts', 'adapters/langgraph/index.ts'), undefined, 'an exported adapter is an entry point')
  t.match(breach('cli/main.ts', 'adapters/keyspace.ts'), /not a public entry point/)
  t.match(breach('bench/pg-bench.ts', 'test/support/tcp-proxy.ts'), /test code/)
  t.same(importsOf(`import a from './a.js'\nexport { b } from "../b.js"\nimport type { C } from './c.js'\nconst d = await import('./d.js')\nimport './e.js'\nimport pg from 'pg'`), ['./a.js', '../b.js', './c.js', './e.js', './d.js'])
})

t.test('no import points up a layer or past a public entry point', async (t) => {
  const files = [...sources('engine'), ...CONSUMERS.flatMap(sources)]
  t.ok(files.length > 40, `read ${files.length} files`)
  const found = new Map<string, string>()
  for (const file of files) {
    for (const spec of importsOf(fs.readFileSync(path.join(ROOT, file), 'utf8'))) {
      const to = resolve(file, spec)
      const why = breach(file, to)
      if (why !== undefined) found.set(`${file} -> ${to}`, why)
    }
  }
  t.same([...found].map(([edge, why]) => `${edge}: ${why}`), [], 'no violation')
})
