/**
 * better-sqlite3 as a peer: what agent-memory libraries use today. A fresh
 * database with `journal_mode = WAL` and `synchronous = FULL` (each commit
 * syncs the SQLite WAL: durable when the call returns), the schema such a
 * library keeps: a memories table (key, namespace, value as JSON text) with an
 * index on the namespace, and a table of (tag, key) postings. better-sqlite3
 * is synchronous: one writer, a transaction of `perTransaction` puts at a
 * time (1: one transaction per put, like one awaited put).
 */
import { posix as path } from 'node:path'
import { timedTrial, type Timing } from '../drive.js'
import { loadBetterSqlite3 } from '../peer-modules.js'
import type { RecordShape } from '../records.js'
import type { TrialResult } from '../stats.js'

const SCHEMA = `
CREATE TABLE memories (key TEXT PRIMARY KEY, namespace TEXT, value TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX memories_namespace ON memories (namespace, key);
CREATE TABLE memory_tags (tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, key)) WITHOUT ROWID;`

export async function sqliteTrial(dir: string, shape: RecordShape, o: { readonly perTransaction: number }, timing: Timing): Promise<TrialResult> {
  const { default: Database } = await loadBetterSqlite3()
  const db = new Database(path.join(dir, 'memories.sqlite'))
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.exec(SCHEMA)
    const putMemory = db.prepare('INSERT OR REPLACE INTO memories (key, namespace, value) VALUES (?, ?, ?)')
    const putTag = db.prepare('INSERT OR REPLACE INTO memory_tags (tag, key) VALUES (?, ?)')
    let n = 0
    const put = (): void => {
      const i = n++
      const key = shape.key(i)
      const labels = shape.labels(i)
      putMemory.run(key, labels?.namespace ?? null, shape.text(i))
      for (const tag of labels?.tags ?? []) putTag.run(tag, key)
    }
    const transaction = db.transaction((count: number) => {
      for (let i = 0; i < count; i++) put()
    })
    return await timedTrial(() => transaction(o.perTransaction), { kind: 'awaited', perOp: o.perTransaction }, timing)
  } finally {
    db.close()
  }
}
