/**
 * What the PostgreSQL tests share: where the server is, whether it answers
 * (a failure under CI, a visible skip elsewhere), a schema of one's own, and
 * URLs through the test's TCP proxy.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'

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

/**
 * A schema of the test's own (dropped at its end) and a client connected to
 * the server, ended at its end, to look at the tables; undefined (the test
 * skipped or failed by requirePg) when the server does not answer.
 */
export async function schemaWithClient(t: PlanTest & { teardown(fn: () => Promise<void>): void }, tag: string): Promise<{ schema: string; client: pg.Client } | undefined> {
  if (!(await requirePg(t))) return undefined
  const schema = testSchemaName(tag)
  const client = new pg.Client({ connectionString: PG_URL })
  client.on('error', () => undefined)
  await client.connect()
  t.teardown(async () => {
    await client.end().catch(() => undefined)
    await dropSchema(schema)
  })
  return { schema, client }
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
