import type { Packr } from 'msgpackr'
import { identityOf, opIdentity, splitIdentity } from '../../format/identity.js'
import { LegacyDeleteResolver, opsOf } from '../../format/record-codec.js'
import { packValue } from '../../format/value-codec.js'
import type { DumpEntry } from '../../log/dump-entry.js'
import type { PgConnections } from './pg-pool.js'
import { columnArgs, ROW, toInt, type EntryRow, type Tables } from './pg-schema.js'
import { columnsOf, compareVersions, valuePacker, type Version } from './pg-versions.js'

export type PgLogFindingKind = 'log-damage' | 'checkpoint-ahead' | 'missing' | 'stale' | 'mismatch' | 'unknown-version'

export interface PgLogFinding {
  readonly kind: PgLogFindingKind
  readonly key?: string
  readonly namespace?: string
  readonly lsn?: number
  readonly detail: string
  repaired: boolean
}

/** What `verifyLog` found: one writer's log against the shared tables. */
export interface PgLogReport {
  readonly writer: string
  readonly clean: boolean
  /** This writer's checkpoint in PostgreSQL, and the log's last LSN. */
  readonly checkpoint: number
  readonly lastLsn: number
  /** Keys whose latest version in the log the checkpoint covers, compared one by one. */
  readonly keysChecked: number
  /** Of those, keys where another writer's greater version (or a later one of this writer) stands: correct. */
  readonly superseded: number
  /** Records past the checkpoint: not applied yet, not compared. */
  readonly pendingRecords: number
  readonly counts: Readonly<Record<string, number>>
  readonly findings: readonly PgLogFinding[]
}

/** What the check of one writer's log reads and writes through. */
export interface PgVerifyContext {
  readonly conn: PgConnections
  readonly t: Tables
  readonly writerId: string
  readonly packr: Packr
}

/** Keys per lookup when the reconciler reads rows back. */
const VERIFY_CHUNK_KEYS = 1000

/**
 * The reconciler for a shared backend (PgBackend.verifyLog): checks this
 * writer's log (as `dumpLog({ dir })` reads it) against PostgreSQL. For every
 * key, the latest version in the log that the checkpoint covers must be the
 * stored row, or be beaten by a greater one (another writer's later HLC).
 * Finds: `missing` (no row), `stale` (the row is a smaller version: this one
 * was lost), `mismatch` (this version, different contents), `unknown-version`
 * (a row of this writer at an LSN its log does not hold last for the key),
 * `checkpoint-ahead`, `log-damage`. With `repair`, wrong keys are upserted
 * again from the log by the apply rule (a `mismatch` overwrites its own
 * version), which never beats a greater version.
 */
export async function verifyWriterLog(x: PgVerifyContext, log: AsyncIterable<DumpEntry>, options: { readonly repair?: boolean }): Promise<PgLogReport> {
  const cp = await x.conn.query<{ lsn: string }>(`SELECT lsn FROM ${x.t.checkpoints} WHERE writer = $1`, [x.writerId])
  const checkpoint = cp.rows[0] === undefined ? 0 : toInt(cp.rows[0].lsn)
  const { latest, findings, lastLsn, pendingRecords } = await latestCovered(log, checkpoint)
  if (checkpoint > lastLsn) findings.push({ kind: 'checkpoint-ahead', lsn: checkpoint, detail: `checkpoint ${checkpoint} is past the log's last LSN ${lastLsn}`, repaired: false })
  let superseded = 0
  const wrong = new Map<string, Version>()
  const ids = [...latest.keys()]
  for (let i = 0; i < ids.length; i += VERIFY_CHUNK_KEYS) {
    const chunk = ids.slice(i, i + VERIFY_CHUNK_KEYS)
    const parts = chunk.map(splitIdentity)
    const r = await x.conn.query<EntryRow>(`SELECT ${ROW} FROM ${x.t.entries} WHERE (namespace, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, [parts.map((p) => p.namespace), parts.map((p) => p.key)])
    const rows = new Map(r.rows.map((row) => [identityOf(row.namespace, row.key), row]))
    for (const key of chunk) {
      const v = latest.get(key) as Version
      const found = compare(x, key, v, rows.get(key))
      if (found === 'superseded') superseded++
      else if (found !== 'ok') {
        findings.push(found)
        // A row of this writer the log does not explain is evidence: reported, left alone.
        if (found.kind !== 'unknown-version') wrong.set(key, v)
      }
    }
  }
  if (options.repair === true && wrong.size > 0) {
    await x.conn.withClient(undefined, (c) => c.query(x.t.repairLogSql, [...columnArgs(columnsOf(wrong, valuePacker(x.packr))), x.writerId]))
    for (const f of findings) if (f.key !== undefined && f.namespace !== undefined && wrong.has(identityOf(f.namespace, f.key))) f.repaired = true
  }
  const counts: Record<string, number> = {}
  for (const f of findings) counts[f.kind] = (counts[f.kind] ?? 0) + 1
  return { writer: x.writerId, clean: findings.length === 0, checkpoint, lastLsn, keysChecked: latest.size, superseded, pendingRecords, counts, findings }
}

/** The log's latest version of each identity that the checkpoint covers, and its damage. */
async function latestCovered(log: AsyncIterable<DumpEntry>, checkpoint: number): Promise<{ latest: Map<string, Version>; findings: PgLogFinding[]; lastLsn: number; pendingRecords: number }> {
  const findings: PgLogFinding[] = []
  const latest = new Map<string, Version>()
  const legacy = new LegacyDeleteResolver()
  let lastLsn = 0
  let pendingRecords = 0
  for await (const d of log) {
    if (d.kind === 'damage') {
      findings.push({ kind: 'log-damage', detail: `segment ${d.segment} bytes ${d.offset}..${d.end}: ${d.detail}`, repaired: false })
      continue
    }
    if (d.kind === 'missing') {
      // A declared gap is a loss already on record (recovery or fsck --repair), not damage.
      if (!d.declared) findings.push({ kind: 'log-damage', detail: `LSNs ${d.lsnFirst}-${d.lsnLast} before segment ${d.segment}: ${d.detail}`, repaired: false })
      continue
    }
    lastLsn = Math.max(lastLsn, d.lsn)
    if (d.lsn > checkpoint) {
      pendingRecords++
      continue
    }
    for (const op of opsOf(d.record)) for (const r of legacy.resolve(op)) latest.set(opIdentity(r), { op: r, lsn: d.lsn, hlc: d.record.hlc ?? 0, fresh: false, createdHlc: d.record.hlc ?? 0 })
  }
  return { latest, findings, lastLsn, pendingRecords }
}

function compare(x: PgVerifyContext, id: string, v: Version, row: EntryRow | undefined): PgLogFinding | 'ok' | 'superseded' {
  const { namespace, key } = splitIdentity(id)
  const mine = { hlc: v.hlc, writer: x.writerId, lsn: v.lsn }
  if (row === undefined) return { kind: 'missing', key, namespace, lsn: v.lsn, detail: `written at LSN ${v.lsn} (covered by the checkpoint) but PostgreSQL has no row`, repaired: false }
  const stored = { hlc: toInt(row.hlc), writer: row.writer, lsn: toInt(row.lsn) }
  const order = compareVersions(stored, mine)
  if (row.writer === x.writerId && stored.lsn !== v.lsn && order !== -1) {
    return { kind: 'unknown-version', key, namespace, lsn: stored.lsn, detail: `the row is this writer's LSN ${stored.lsn}, the log's latest for the key is LSN ${v.lsn}`, repaired: false }
  }
  if (order > 0) return 'superseded'
  if (order < 0) return { kind: 'stale', key, namespace, lsn: v.lsn, detail: `the row is version (hlc ${stored.hlc}, ${stored.writer}, LSN ${stored.lsn}), older than this writer's LSN ${v.lsn} (hlc ${v.hlc})`, repaired: false }
  const same = v.op.type === 'del'
    ? row.deleted
    : !row.deleted && row.value !== null && Buffer.from(packValue(x.packr, v.op.value)).equals(row.value) && sameTags(row.tags, v.op.tags) && (row.expires_at === null ? undefined : toInt(row.expires_at)) === v.op.expiresAt
  return same ? 'ok' : { kind: 'mismatch', key, namespace, lsn: v.lsn, detail: `the row claims LSN ${v.lsn} of this writer but its contents differ from the log's`, repaired: false }
}

function sameTags(stored: readonly string[] | null, op: readonly string[] | undefined): boolean {
  if (stored === null || op === undefined) return stored === null && op === undefined
  return stored.length === op.length && stored.every((t, i) => t === op[i])
}
