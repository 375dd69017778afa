/**
 * MemWAL.query and count over PostgreSQL (issue 11 item 8), against the bare
 * SQL, in one run:
 *
 *   npm run bench:pg-query -- [--records N] [--reps R] [--json]
 *
 * PostgreSQL: MEMWAL_PG_URL, or postgres://postgres@127.0.0.1:5432/test; a
 * schema of the run's own, dropped at its end. One writer (`loader`) writes
 * N agent records (agent-records.ts; default 200,000) through its engine
 * into PostgreSQL; a second writer (`reader`), on a fresh data directory
 * whose local index holds none of them, then asks the query (one
 * namespace + two tags + a write-time range) and one namespace alone:
 * - first-100: queryPage({ ..., limit: 100 }), ms until the page is back;
 * - count: count({ ... }), ms;
 * each the median of R runs after one warm-up. The peer is the same SELECT
 * sent with pg, rows returned as pg parses them (values not decoded): what
 * the engine adds over PostgreSQL itself. Both answers are checked equal;
 * nothing is asserted about speed.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { MemWAL, PgBackend, type QueryOptions } from '../engine/index.js'
import { LoadClock, loadRecords, measure, QUERY, timed } from './agent-records.js'
import { parseRunArgs } from './run-args.js'
import { fmt, table } from './stats.js'

const PG_URL = process.env['MEMWAL_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'
const NAMESPACE_ONLY = { namespace: 'agents/7' } satisfies QueryOptions

/** The bare SQL of a query of one namespace, maybe two tags and a time range: first 100 keys, and the count. */
function bareSql(schema: string, q: QueryOptions): { where: string; args: unknown[] } {
  const args: unknown[] = [q.namespace]
  const where = ['NOT deleted', 'namespace = $1', '(expires_at IS NULL OR expires_at > $2)']
  args.push(Date.now())
  if (q.tags?.all !== undefined) where.push(`tags @> $${args.push(q.tags.all)}::text[]`)
  if (q.since !== undefined) where.push(`updated_at >= $${args.push(q.since)}`)
  if (q.until !== undefined) where.push(`updated_at < $${args.push(q.until)}`)
  return { where: `FROM "${schema}".entries WHERE ${where.join(' AND ')}`, args }
}

async function main(): Promise<void> {
  const o = parseRunArgs('pg-query', process.argv.slice(2), { records: 200_000, reps: 15 })
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-bench-pgq-'))
  const schema = `memwal_bench_pgq_${process.pid}_${randomBytes(4).toString('hex')}`
  const client = new pg.Client({ connectionString: PG_URL })
  await client.connect()
  const progress = (s: string): void => void process.stderr.write(`${s}\n`)
  try {
    progress(`loading ${o.records.toLocaleString('en-US')} records into PostgreSQL (schema ${schema})...`)
    const clock = new LoadClock()
    const loader = await MemWAL.open({ dir: path.join(base, 'loader'), clock, durability: 'none', maxBacklogBytes: 2 ** 30, backend: new PgBackend({ connectionString: PG_URL, writerId: 'loader', schema }) })
    const [loadMs] = await timed(() => loadRecords(loader, clock, o.records))
    await loader.close()
    await client.query(`ANALYZE "${schema}".entries`)
    const reader = await MemWAL.open({ dir: path.join(base, 'reader'), clock, backend: new PgBackend({ connectionString: PG_URL, writerId: 'reader', schema }) })
    const doc: Record<string, number> = { records: o.records, reps: o.reps, loadMs }
    try {
      for (const [name, q] of [['query', QUERY], ['namespace', NAMESPACE_ONLY]] as const) {
        const first = await measure(o.reps, () => reader.queryPage({ ...q, limit: 100 }))
        const count = await measure(o.reps, () => reader.count(q))
        const { where, args } = bareSql(schema, q)
        const bareFirst = await measure(o.reps, async () => (await client.query<{ key: string }>(`SELECT namespace, key, value, tags, hlc, writer, lsn, created_at, updated_at, expires_at ${where} ORDER BY namespace, key LIMIT 101`, args)).rows)
        const bareCount = await measure(o.reps, async () => Number((await client.query<{ n: string }>(`SELECT count(*) AS n ${where}`, args)).rows[0]?.n))
        const keys = first.result.entries.map((e) => e.key)
        if (count.result !== bareCount.result || keys.join() !== bareFirst.result.slice(0, 100).map((r) => r.key).join()) {
          throw new Error(`${name}: memwal and the bare SQL disagree (count ${count.result} against ${bareCount.result}, first page ${keys.length} against ${bareFirst.result.length} rows)`)
        }
        Object.assign(doc, { [`${name}Matches`]: count.result, [`${name}First100Ms`]: first.ms, [`${name}CountMs`]: count.ms, [`${name}BareFirst100Ms`]: bareFirst.ms, [`${name}BareCountMs`]: bareCount.ms })
      }
    } finally {
      await reader.close()
    }
    if (o.json) {
      process.stdout.write(`${JSON.stringify(doc)}\n`)
      return
    }
    process.stdout.write(`${o.records.toLocaleString('en-US')} records in PostgreSQL (loaded in ${fmt(loadMs / 1000, 1)} s), read by another writer, median of ${o.reps}\nissue's query: ${JSON.stringify(QUERY)}\n`)
    const row = (label: string, name: string): string[] => [label, String(doc[`${name}Matches`]), fmt(doc[`${name}First100Ms`] as number, 2), fmt(doc[`${name}BareFirst100Ms`] as number, 2), fmt(doc[`${name}CountMs`] as number, 2), fmt(doc[`${name}BareCountMs`] as number, 2)]
    process.stdout.write(table([
      ['', 'matches', 'first 100 (ms)', 'bare SQL', 'count (ms)', 'bare SQL'],
      row('issue\'s query (namespace, 2 tags, time)', 'query'),
      row('one namespace', 'namespace'),
    ]))
  } finally {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined)
    await client.end()
    fs.rmSync(base, { recursive: true, force: true })
  }
}

await main()
