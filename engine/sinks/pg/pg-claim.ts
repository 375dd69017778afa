import { MemwalError } from '../../errors.js'
import type { DataDirBinding } from '../sink.js'
import type { PgConnections } from './pg-pool.js'
import { missingParts, toInt, type Tables } from './pg-schema.js'

/**
 * A writer id's checkpoint row, bound to one data directory, as PgBackend
 * opens it with the directory MemWAL.open gave (BackendSink.bindDataDir).
 *
 * Two directories applying under one writer id lose records silently (the
 * change feed keeps one's rows, the checkpoint jumps past the other's), so
 * the row names its directory (`dir_id`) and another is refused
 * (WRITER_IN_USE). A row from before the binding (schema 5, no `dir_id`) is
 * adopted by the first directory that opens it only where that directory
 * can have written what the row says was applied: it holds records, or the
 * row's checkpoint is 0. A new directory adopting a row at LSN n would skip
 * the first n LSNs of its own log (under durability sync: WAL_HOLE at once).
 *
 * A directory that applied records (its record named this writer before this
 * open and its store shows records applied) finds its schema, and, once bound
 * by an earlier open, its row: without them, PostgreSQL lost what it applied
 * (the schema dropped, the checkpoints emptied). Recreating them empty had
 * this writer go on from LSN 0 over a log that may no longer hold its first
 * records (WAL_MISSING_SEGMENT, blaming the log), and let writers still
 * running apply into the empty schema, their earlier rows gone without an
 * error: BACKEND_SCHEMA_DAMAGED, nothing created.
 */
export interface ClaimHost {
  readonly conn: PgConnections
  readonly t: Tables
  readonly schema: string
  readonly writerId: string
}

/** Before the schema is created or migrated: a directory that applied records to it must find it (see the header). */
export async function requireAppliedSchema(h: ClaimHost, dir: DataDirBinding): Promise<void> {
  if (!dir.holdsRecords || dir.recorded === 'none') return
  const missing = await missingParts(h.conn, h.t)
  if (missing.length > 0) throw appliedStateLost(h, dir, missing)
}

/** This writer's row, bound to `dir` (made, or adopted where right) in one statement; its checkpoint. */
export async function claimWriter(h: ClaimHost, dir: DataDirBinding): Promise<number> {
  if (dir.holdsRecords && dir.recorded === 'bound') {
    const had = await h.conn.query(`SELECT 1 FROM ${h.t.checkpoints} WHERE writer = $1`, [h.writerId])
    if (had.rows.length === 0) throw appliedStateLost(h, dir, ['checkpoint row'])
  }
  const r = await h.conn.query<{ lsn: string }>(h.t.claimSql, [h.writerId, dir.dirId, dir.holdsRecords])
  if (r.rows[0] !== undefined) return toInt(r.rows[0].lsn)
  // Not claimed (a new statement: it sees the row whichever transaction committed it).
  const b = await h.conn.query<{ dir_id: string | null; lsn: string }>(`SELECT dir_id, lsn FROM ${h.t.checkpoints} WHERE writer = $1`, [h.writerId])
  const row = b.rows[0]
  const boundTo = row?.dir_id ?? null
  const checkpoint = row === undefined ? 0 : toInt(row.lsn)
  const details = { writerId: h.writerId, schema: h.schema, dirId: dir.dirId, boundTo, checkpoint }
  const id = `writerId ${JSON.stringify(h.writerId)} in PostgreSQL schema ${h.schema}`
  if (boundTo === null) {
    throw new MemwalError('WRITER_IN_USE', `${id} has applied records through LSN ${checkpoint} from a data directory of a memwal before directory ids, and this data directory (id ${dir.dirId}) holds no records, so it did not write them: adopting the id would have it skip LSNs 1-${checkpoint} of its own log. Open the data directory that wrote them first (it adopts the id), and open this one with another writerId. Nothing was applied`, { details })
  }
  throw new MemwalError('WRITER_IN_USE', `${id} is bound to another data directory (id ${boundTo}; this one's is ${dir.dirId}): each data directory needs a writer id of its own, or the two lose each other's records. Open this one with another writerId (the rows the other applied stay, read by every writer); if the other directory moved, open it where it is now. Nothing was applied`, { details })
}

/** BACKEND_SCHEMA_DAMAGED: what this directory applied is gone from PostgreSQL (`missing`: the schema, tables, or this writer's row). */
function appliedStateLost(h: ClaimHost, dir: DataDirBinding, missing: readonly string[]): MemwalError {
  const what = missing[0] === 'schema' ? `schema ${h.schema} is gone` : missing[0] === 'checkpoint row' ? `schema ${h.schema} has no checkpoint row for writerId ${JSON.stringify(h.writerId)}` : `schema ${h.schema} lacks ${missing.join(', ')}`
  return new MemwalError('BACKEND_SCHEMA_DAMAGED', `PostgreSQL ${what}, yet this data directory (id ${dir.dirId}) applied records there as that writer (its local store shows records applied): nothing was created (recreated empty, what this and other writers applied would be gone without an error). Restore the schema from a backup taken after this directory's first records, then open again (the log re-applies the records after the backup's checkpoint that it still holds); or, to give up what PostgreSQL held, move this data directory aside (memwal dump reads its log) and open a new one`, {
    details: { schema: h.schema, writerId: h.writerId, dirId: dir.dirId, missing },
  })
}
