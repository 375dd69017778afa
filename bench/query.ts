/**
 * The query language's cost (issue 11 item 3), against better-sqlite3 with
 * equivalent indexes, in one run:
 *
 *   npm run bench:query -- [--records N] [--reps R] [--json]
 *
 * N agent records (default 1,000,000): 20 namespaces (`agents/0` ..
 * `agents/19`), three tags each (a topic of 10, a kind of 4, a priority of
 * 3, independent), written over 30 days of a manual clock (so each has its
 * own write time), ~100-byte values. Then the query, one namespace +
 * two tags + a write-time range (the last 7.5 of the 30 days), about
 * N / 3,200 matches:
 * - first-100: queryPage({ ..., limit: 100 }), ms until the page is back;
 * - count: count({ ... }), ms;
 * each the median of R runs after one warm-up. SQLite: the same rows in a
 * table keyed by (namespace, key) with an index on (namespace, updated_at),
 * and tag postings keyed by (tag, namespace, key); the query joins the two
 * postings and bounds the time, ORDER BY key LIMIT 100, and COUNT(*).
 * The goals (first 100 in <= 10 ms, count in <= 50 ms over
 * 1,000,000 entries) are printed beside the figures; nothing is asserted.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { MemWAL } from '../engine/index.js'
import { LoadClock, loadRecords, measure, QUERY, record, timed } from './agent-records.js'
import { loadBetterSqlite3 } from './peer-modules.js'
import { parseRunArgs, type RunOptions } from './run-args.js'
import { fmt, table } from './stats.js'

async function memwalRun(dir: string, o: RunOptions): Promise<Record<string, number>> {
  const clock = new LoadClock()
  let db = await MemWAL.open({ dir, clock, durability: 'none', maxBacklogBytes: 2 ** 30 })
  const [loadMs] = await timed(() => loadRecords(db, clock, o.records))
  // Reopened: the index answers from disk, nothing pending.
  await db.close()
  db = await MemWAL.open({ dir, clock })
  try {
    const first = await measure(o.reps, () => db.queryPage({ ...QUERY, limit: 100 }))
    const count = await measure(o.reps, () => db.count(QUERY))
    return { loadMs, firstMs: first.ms, firstResults: first.result.entries.length, countMs: count.ms, count: count.result }
  } finally {
    await db.close()
  }
}

async function sqliteRun(dir: string, o: RunOptions): Promise<Record<string, number>> {
  const { default: Database } = await loadBetterSqlite3()
  fs.mkdirSync(dir, { recursive: true })
  const db = new Database(path.join(dir, 'memories.sqlite'))
  try {
    db.pragma('journal_mode = WAL')
    db.exec(`
      CREATE TABLE memories (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (namespace, key)) WITHOUT ROWID;
      CREATE INDEX memories_time ON memories (namespace, updated_at);
      CREATE TABLE memory_tags (tag TEXT NOT NULL, namespace TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, namespace, key)) WITHOUT ROWID;`)
    const put = db.prepare('INSERT OR REPLACE INTO memories (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)')
    const tag = db.prepare('INSERT OR REPLACE INTO memory_tags (tag, namespace, key) VALUES (?, ?, ?)')
    const load = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const r = record(i, o.records)
        put.run(r.namespace, r.key, JSON.stringify(r.value), r.atMs)
        for (const t of r.tags) tag.run(t, r.namespace, r.key)
      }
    })
    const [loadMs] = await timed(() => {
      for (let from = 0; from < o.records; from += 10_000) load(from, Math.min(o.records, from + 10_000))
    })
    db.exec('ANALYZE')
    const where = `m.namespace = ? AND m.updated_at >= ? AND m.updated_at < ?
      AND EXISTS (SELECT 1 FROM memory_tags a WHERE a.tag = ? AND a.namespace = m.namespace AND a.key = m.key)
      AND EXISTS (SELECT 1 FROM memory_tags b WHERE b.tag = ? AND b.namespace = m.namespace AND b.key = m.key)`
    const args = [QUERY.namespace, QUERY.since, QUERY.until, ...QUERY.tags.all] as const
    const page = db.prepare(`SELECT m.namespace, m.key, m.value, m.updated_at FROM memories m WHERE ${where} ORDER BY m.key LIMIT 100`)
    const count = db.prepare(`SELECT COUNT(*) AS n FROM memories m WHERE ${where}`)
    const first = await measure(o.reps, () => page.all(...args).map((r) => JSON.parse((r as { value: string }).value) as unknown))
    const counted = await measure(o.reps, () => (count.get(...args) as { n: number }).n)
    return { loadMs, firstMs: first.ms, firstResults: first.result.length, countMs: counted.ms, count: counted.result }
  } finally {
    db.close()
  }
}

async function main(): Promise<void> {
  const o = parseRunArgs('query', process.argv.slice(2), { records: 1_000_000, reps: 15 })
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-bench-query-'))
  const progress = (s: string): void => void process.stderr.write(`${s}\n`)
  try {
    progress(`memwal: loading ${o.records.toLocaleString('en-US')} records...`)
    const m = await memwalRun(path.join(base, 'memwal'), o)
    progress(`sqlite: loading ${o.records.toLocaleString('en-US')} records...`)
    const s = await sqliteRun(path.join(base, 'sqlite'), o)
    if (m['count'] !== s['count'] || m['firstResults'] !== s['firstResults']) throw new Error(`the two disagree: memwal ${m['count']}/${m['firstResults']}, sqlite ${s['count']}/${s['firstResults']}`)
    const doc = {
      records: o.records, reps: o.reps, matches: m['count'] as number,
      memwalFirst100Ms: m['firstMs'] as number, memwalCountMs: m['countMs'] as number, memwalLoadMs: m['loadMs'] as number,
      sqliteFirst100Ms: s['firstMs'] as number, sqliteCountMs: s['countMs'] as number, sqliteLoadMs: s['loadMs'] as number,
    }
    if (o.json) {
      process.stdout.write(`${JSON.stringify(doc)}\n`)
      return
    }
    process.stdout.write(`query ${JSON.stringify(QUERY)} over ${o.records.toLocaleString('en-US')} records (${doc.matches} matches), median of ${o.reps}\n`)
    process.stdout.write(table([
      ['', 'first 100 (ms)', 'count (ms)', 'load (s)'],
      ['memwal', fmt(doc.memwalFirst100Ms, 2), fmt(doc.memwalCountMs, 2), fmt(doc.memwalLoadMs / 1000, 1)],
      ['better-sqlite3', fmt(doc.sqliteFirst100Ms, 2), fmt(doc.sqliteCountMs, 2), fmt(doc.sqliteLoadMs / 1000, 1)],
      ['goal (issue 11, at 1,000,000)', '<= 10', '<= 50', ''],
    ]))
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
}

await main()
