/**
 * The PostgreSQL tests' support: where the server is, whether it answers, a
 * schema of one's own; and a writer child for test/process/pg-multiwriter.test.ts.
 *
 *   node --import tsx test/support/pg-writer-child.ts <dir> <writerId> <incarnation> <seed> <url> <schema>
 *
 * The child runs MemWAL on its own data directory with a PgBackend (writer id
 * given) on the shared schema, and writes puts, deletes and batches on a key
 * space every writer shares, so that writers conflict. A value names its
 * writer, incarnation and write: { w, n, c, i }.
 *
 * Lines on stdout, each written synchronously, so a line the parent read is
 * an event that happened (before any kill):
 *   ready <pid> <lastLsn> <cp>     MemWAL is open; <cp> is the backend's checkpoint (read from PostgreSQL)
 *   ack <lsn> <json ops>           a write resolved: acknowledged under <lsn>
 *   flushed <lastLsn> <checkpoint> after `stop` on stdin: writing stopped and every sink caught up
 *   error <code> <message>         then exit 1
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { MemWAL, PgBackend, SeededRandom, isMemwalError, type BatchOp, type Op } from '../../engine/index.js'
import { childEnv } from './child-env.js'

export const PG_WRITER_CHILD_FILE = fileURLToPath(import.meta.url)
const REPO_DIR = path.resolve(path.dirname(PG_WRITER_CHILD_FILE), '..', '..')

// ---- shared by the PostgreSQL tests ----

/** The server the tests use: MEMWAL_PG_URL, or the local one (trust auth, database `test`). */
export const PG_URL = process.env['MEMWAL_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'

/** Under CI an unreachable server is a failure, never a skip. */
export function isCI(): boolean {
  const v = process.env['CI']
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false'
}

/** Why the server cannot be used, or undefined when it answers. */
export async function pgUnreachable(url = PG_URL): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 })
  c.on('error', () => undefined)
  try {
    await c.connect()
    await c.query('SELECT 1')
    return undefined
  } catch (err) {
    return (err as Error).message || String(err)
  } finally {
    await c.end().catch(() => undefined)
  }
}

interface PlanTest {
  comment(...m: unknown[]): void
  fail(m: string): void
  plan(n: number, why?: string): void
}

/**
 * True when the server answers. Otherwise: under CI the test fails; outside
 * CI it says why in a comment and plans nothing (the file shows as skipped).
 */
export async function requirePg(t: PlanTest): Promise<boolean> {
  const why = await pgUnreachable()
  if (why === undefined) return true
  const where = redact(PG_URL)
  if (isCI()) {
    t.fail(`PostgreSQL at ${where} is unreachable and CI is set, so this is a failure: ${why}`)
    return false
  }
  t.comment(`PostgreSQL at ${where} is unreachable (${why}): skipping. Start it or set MEMWAL_PG_URL; under CI=true this fails.`)
  t.plan(0, 'PostgreSQL unreachable')
  return false
}

/** A schema name no other run uses: memwal_test_<pid>_<random>. */
export function testSchemaName(tag = 'test'): string {
  return `memwal_${tag}_${process.pid}_${randomBytes(4).toString('hex')}`
}

export async function dropSchema(schema: string, url = PG_URL): Promise<void> {
  const c = new pg.Client({ connectionString: url })
  c.on('error', () => undefined)
  await c.connect()
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  } finally {
    await c.end().catch(() => undefined)
  }
}

/** Host and port of a postgres:// URL (for the proxy's target). */
export function pgTarget(url = PG_URL): { host: string; port: number } {
  const u = new URL(url)
  return { host: u.hostname || '127.0.0.1', port: u.port === '' ? 5432 : Number(u.port) }
}

/** The same URL, pointed at 127.0.0.1:<port> (through the proxy). */
export function viaPort(port: number, url = PG_URL): string {
  const u = new URL(url)
  u.hostname = '127.0.0.1'
  u.port = String(port)
  return u.toString()
}

function redact(url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return '(unparsable MEMWAL_PG_URL)'
  }
}

// ---- the writer child: what it writes ----

export const PG_CHILD_KEYS = 24
export const PG_CHILD_NAMESPACES = ['n0', 'n1'] as const
export const PG_CHILD_TAGS = ['red', 'green', 'blue'] as const
const BURST_MAX = 8
/** Pause between bursts: keeps the log to a size the test verifies in a few seconds. */
const BURST_GAP_MS = 3

/** What the writers apply and time out with: short, so that outages show within a test. */
export const pgChildBackendOptions = { statementTimeoutMs: 1500, connectTimeoutMs: 1000, poolSize: 2 } as const
export const pgChildEngineOptions = {
  resilience: { retryDelayMsMin: 5, retryDelayMsMax: 250, breakerThreshold: 3, breakerHalfOpenMs: 250, applyTimeoutMs: 2500 },
  closeGraceMs: 3000,
} as const

export function pgChildKey(i: number): string {
  return `k/${String(i).padStart(2, '0')}`
}

export interface PgChildValue {
  readonly w: string
  readonly n: number
  readonly c: number
  readonly i: number
}

/** Write `counter` of incarnation `n` of writer `w`: one put, one delete, or a batch of 2-6 operations (keys may repeat). */
export function pgChildWrite(w: string, n: number, seed: number, counter: number): Op[] {
  const rng = new SeededRandom((Math.imul(seed, 0x9e3779b1) ^ Math.imul(counter + 1, 0x85ebca6b) ^ Math.imul(n + 7, 0xc2b2ae35)) >>> 0)
  const put = (i: number): Op => {
    const value: PgChildValue = { w, n, c: counter, i }
    const namespace = rng.chance(0.7) ? PG_CHILD_NAMESPACES[rng.below(PG_CHILD_NAMESPACES.length)] : undefined
    const tags = rng.chance(0.5) ? PG_CHILD_TAGS.filter(() => rng.chance(0.5)) : undefined
    return { type: 'put', key: pgChildKey(rng.below(PG_CHILD_KEYS)), value, ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }
  const del = (): Op => ({ type: 'del', key: pgChildKey(rng.below(PG_CHILD_KEYS)) })
  const roll = rng.below(100)
  if (roll < 60) return [put(0)]
  if (roll < 75) return [del()]
  const ops: Op[] = []
  for (let i = 0, k = 2 + rng.below(5); i < k; i++) ops.push(rng.chance(0.75) ? put(i) : del())
  return ops
}

// ---- parent side ----

export interface PgWriterChild {
  readonly proc: ChildProcess
  readonly ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Asks the child to stop writing, flush and exit. */
  stop(): void
  stderr(): string
}

export interface PgWriterArgs {
  readonly dir: string
  readonly writerId: string
  readonly incarnation: number
  readonly seed: number
  readonly url: string
  readonly schema: string
}

export function spawnPgWriter(a: PgWriterArgs, onLine: (line: string) => void): PgWriterChild {
  const env = childEnv()
  const args = ['--import', 'tsx', PG_WRITER_CHILD_FILE, a.dir, a.writerId, String(a.incarnation), String(a.seed), a.url, a.schema]
  const proc = spawn(process.execPath, args, { cwd: REPO_DIR, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let partial = ''
  let err = ''
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) onLine(line)
  })
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (err.length < 64 * 1024) err += chunk
  })
  proc.stdin?.on('error', () => undefined)
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })))
  return { proc, ended, stop: () => proc.stdin?.write('stop\n'), stderr: () => err }
}

// ---- child side ----

function writeLine(line: string): void {
  const buf = Buffer.from(line + '\n')
  let done = 0
  while (done < buf.length) {
    try {
      done += fs.writeSync(1, buf, done, buf.length - done)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
    }
  }
}

function fail(err: unknown): never {
  const code = isMemwalError(err) ? err.code : (err as NodeJS.ErrnoException).code
  writeLine(`error ${String(code)} ${String((err as Error)?.message).replace(/\n/g, ' ')}`)
  process.exit(1)
}

async function run(a: PgWriterArgs): Promise<void> {
  const backend = new PgBackend({ connectionString: a.url, writerId: a.writerId, schema: a.schema, ...pgChildBackendOptions })
  const engine = await MemWAL.open({ dir: a.dir, backend, random: new SeededRandom(a.seed ^ 0x5eed), ...pgChildEngineOptions })
  writeLine(`ready ${process.pid} ${engine.health().wal.lastLsn} ${backend.checkpoint}`)
  let stopping = false
  process.stdin.setEncoding('utf8').on('data', (s: string) => {
    if (s.includes('stop')) stopping = true
  })
  const rng = new SeededRandom(a.seed)
  let counter = 0
  while (!stopping) {
    const burst: Promise<void>[] = []
    for (let k = 0, n = 1 + rng.below(BURST_MAX); k < n; k++) {
      const ops = pgChildWrite(a.writerId, a.incarnation, a.seed, counter++)
      burst.push(issue(engine, ops).then(({ lsn }) => writeLine(`ack ${lsn} ${JSON.stringify(ops)}`)))
    }
    await Promise.all(burst)
    await new Promise((r) => setTimeout(r, BURST_GAP_MS))
  }
  await engine.flush({ timeoutMs: 60_000 })
  const h = engine.health()
  writeLine(`flushed ${h.wal.lastLsn} ${h.sinks['backend']?.checkpoint ?? -1}`)
  await engine.close()
  process.exit(0)
}

function issue(engine: MemWAL, ops: Op[]): Promise<{ lsn: number }> {
  const [op] = ops
  if (ops.length > 1 || !op) return engine.batch(ops as BatchOp[])
  if (op.type === 'del') return engine.delete(op.key)
  return engine.put(op.key, op.value, { ...(op.namespace !== undefined ? { namespace: op.namespace } : {}), ...(op.tags ? { tags: op.tags } : {}) })
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === fs.realpathSync(PG_WRITER_CHILD_FILE)) {
  const [dir, writerId, incarnation, seed, url, schema] = process.argv.slice(2)
  if (!dir || !writerId || !incarnation || !seed || !url || !schema || !/^\d+$/.test(seed) || !/^\d+$/.test(incarnation)) {
    writeLine('error USAGE pg-writer-child.ts <dir> <writerId> <incarnation> <seed> <url> <schema>')
    process.exit(16)
  }
  run({ dir, writerId, incarnation: Number(incarnation), seed: Number(seed), url, schema }).catch(fail)
}
