import { identityOf } from '../../format/identity.js'
import type { BackendSnapshot, SnapshotRow } from '../sink.js'
import type { PgConnections, DedicatedClient } from './pg-pool.js'
import { toInt, type Tables } from './pg-schema.js'

/**
 * The rows an export reads from PostgreSQL (PgBackend.exportSnapshot;
 * export.ts merges this process's pending writes in and says why the
 * result is of one version):
 *
 * - One `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY` transaction on a
 *   connection of its own (pg-pool.ts `dedicated`: a reader that is slow
 *   holds no pooled connection). Every statement in it sees the snapshot
 *   taken at its first statement, whatever commits meanwhile.
 * - That first statement reads this writer's checkpoint row, which each
 *   apply commits with its rows (pg-backend.ts): so its answer (`taken`)
 *   is the last record of this writer the snapshot holds, and its arrival
 *   says the snapshot's moment is fixed.
 * - Then a server-side cursor over the live rows in (namespace, key) order
 *   (both columns COLLATE "C": code-point order, the engine's identity
 *   order), read `pageRows` rows per FETCH: memory is bounded by one step
 *   (two with export's read-ahead), not by the table.
 *
 * The transaction stays open while the export is read: a reader that leaves
 * it unread longer than idle_in_transaction_session_timeout (2 x
 * statementTimeoutMs) finds the server ended it, and the next step fails.
 * close() ends it (the export's stream does, at its end or on return()).
 */

/** The cursor's name (one per connection, and the connection is the export's own). */
const CURSOR = 'memwal_export'

export interface PgExportHost {
  readonly conn: PgConnections
  readonly t: Tables
  readonly writerId: string
  /** Rows per FETCH (PgBackendOptions.pageRows). */
  readonly pageRows: number
}

interface ExportRow {
  namespace: string
  key: string
  value: Buffer
  tags: string[] | null
  expires_at: string | number | null
}

/** Starts taking the snapshot now (the connection, then the first statement); `closed` is told once it is closed. */
export function openPgExport(h: PgExportHost, namespace: string | undefined, closed: (s: BackendSnapshot) => void): BackendSnapshot {
  let client: DedicatedClient | undefined
  let ended = false
  const setup = async (): Promise<number> => {
    const c = await h.conn.dedicated()
    client = c
    if (ended) {
      await c.end()
      throw new Error('the export was closed before its snapshot was taken')
    }
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
    // The snapshot is taken by this statement: the checkpoint it answers is the one the snapshot holds.
    const r = await c.query<{ lsn: string }>(`SELECT lsn FROM ${h.t.checkpoints} WHERE writer = $1`, [h.writerId])
    const checkpoint = r.rows[0] === undefined ? 0 : toInt(r.rows[0].lsn)
    const where = namespace === undefined ? 'NOT deleted' : 'NOT deleted AND namespace = $1'
    await c.query(`DECLARE ${CURSOR} NO SCROLL CURSOR FOR SELECT namespace, key, value, tags, expires_at FROM ${h.t.entries} WHERE ${where} ORDER BY namespace, key`, namespace === undefined ? [] : [namespace])
    return checkpoint
  }
  const taken = setup()
  const snapshot: BackendSnapshot = {
    taken,
    async next() {
      await taken
      // Never [] for a closed snapshot: that is the end of the rows, and the export would look whole.
      if (ended || client === undefined) throw new Error('the export\'s snapshot was closed (the backend closed)')
      const r = await client.query<ExportRow>(`FETCH ${h.pageRows} FROM ${CURSOR}`)
      return r.rows.map((row): readonly [string, SnapshotRow] => [
        identityOf(row.namespace, row.key),
        { valueBytes: row.value, tags: row.tags, expiresAt: row.expires_at === null ? null : toInt(row.expires_at) },
      ])
    },
    async close() {
      if (ended) return
      ended = true
      closed(snapshot)
      // Read-only: ending the connection rolls the transaction back; nothing to commit.
      await client?.end()
    },
  }
  return snapshot
}
