import type { AbstractBatchOperation } from 'abstract-level'
import { DEFAULT_NAMESPACE, ID_SEP, identityOf, prefixRange } from '../format/identity.js'
import { hlcMs, opsOf, type WalRecord } from '../format/record-codec.js'
import { toWireValue } from '../format/value-codec.js'
import { osError } from '../errors.js'
import { decodeForward, encodeForward } from './index-sink.js'
import { encodePostingValue } from './index-scan.js'
import { decodeRow, encodeRow } from './backend-row.js'
import { encodeLsn, LAYOUT, LAYOUT_KEY, type LevelStore } from './level-store.js'

type Batch = AbstractBatchOperation<LevelStore['db'], string, Uint8Array>[]

/** Operations per LevelDB batch while migrating: bounds the memory of one step. */
const MIGRATE_BATCH_OPS = 4096

/** The log as the migration reads it: records from an LSN on, in LSN order, decoded. */
export interface MigrationLog {
  readonly lastLsn: number
  read(fromLsn: number): AsyncIterable<{ readonly lsn: number; readonly record: WalRecord }>
}

export interface MigrationOptions {
  /** Whether the backend is this store's (LevelDB); an external backend (PostgreSQL) migrates its own rows. */
  readonly ownBackend: boolean
  /** ms now: the createdAt/updatedAt of a row whose record the log no longer holds. */
  readonly nowMs: number
  /** Called after each step (tests inject a crash here). */
  readonly afterStep?: (step: MigrationStep) => Promise<void>
}

export type MigrationStep = 'legacy-caught-up' | 'rows-written' | 'layout-set' | 'legacy-cleared' | 'postings-reindexed'

/**
 * Brings a store to layout 4, at open, before the sinks start: layout 1 to 2
 * (below), then 2 or 3 to 4 (reindexPostings). An empty store is made
 * layout 4 at once. Returns whether a layout-1 store was migrated.
 *
 * A read or write that fails (ENOSPC, EIO) fails the migration as IO_ERROR,
 * the store's error as its cause: each step leaves the store at its older
 * layout, or rewritten in part in a way that layout reads, so a later open
 * carries the migration on (a MemwalError, such as the store's own after a
 * failed reopen, is passed on as it is; so is a test's crash after a step, as
 * the cause).
 */
export async function migrateLayout(store: LevelStore, log: MigrationLog, o: MigrationOptions): Promise<boolean> {
  let layout: number | undefined
  try {
    layout = await store.layout()
    return await migrateFrom(layout, store, log, o)
  } catch (cause) {
    const from = layout !== undefined ? ` from layout ${layout}` : ''
    throw osError(cause, `migrate the LevelDB store at ${store.location}${from} to layout ${LAYOUT} (it keeps what it held; the next open carries the migration on)`)
  }
}

async function migrateFrom(layout: number, store: LevelStore, log: MigrationLog, o: MigrationOptions): Promise<boolean> {
  if (layout === 0) {
    await store.writeBatch([{ type: 'put', sublevel: store.meta, key: LAYOUT_KEY, value: encodeLsn(LAYOUT) }])
    return false
  }
  if (layout === LAYOUT) {
    await clearLegacy(store)
    return false
  }
  const migrated = layout === 1 && (await migrateLayout1(store, log, o))
  if (layout === 2 || layout === 3) await clearLegacy(store)
  await reindexPostings(store, o)
  return migrated
}

/**
 * Brings a layout-2 or layout-3 store to layout 4: every forward entry with
 * its write time (layout 3 has it; a layout-2 entry takes the row's
 * updatedAt, from this store's own backend; an external backend's rows are
 * not here: unknown, and a time-bounded query reads those entries' times
 * from the backend), every tag posting the value that carries the time, the
 * expiry and the entry's tags (index-scan.ts). Written in place: each step
 * rewrites a whole entry and its postings, which the older layout's code
 * reads as before (it ignores what was added), so a crash midway leaves the
 * older layout, done again at the next open. If the index is ahead of the
 * backend, a row's time may be older than the forward entry it is taken for:
 * where rows were read, the index's checkpoint goes back to the backend's, in
 * the batch that sets layout 4, and the index applies those records again
 * (it is idempotent).
 */
async function reindexPostings(store: LevelStore, o: MigrationOptions): Promise<void> {
  const { index, data } = store
  const head = `f${ID_SEP}`
  let batch: Batch = []
  let page: [string, Uint8Array][] = []
  let rowsRead = false
  const flush = async (): Promise<void> => {
    const entries = page.map(([id, v]) => decodeForward(store, id, v))
    // Only an entry without its write time (layout 2) needs its row.
    const timeless = o.ownBackend ? page.filter((_, i) => entries[i] !== undefined && entries[i]?.updatedAt === undefined).map(([id]) => id) : []
    const rows = new Map<string, Uint8Array | undefined>()
    if (timeless.length > 0) {
      rowsRead = true
      const read = await data.getMany(timeless)
      timeless.forEach((id, i) => rows.set(id, read[i]))
    }
    page.forEach(([id], i) => {
      const e = entries[i]
      if (!e) return
      const row = rows.get(id)
      const updatedAt = e.updatedAt ?? (row !== undefined ? decodeRow(store.packr, id, row).updatedAt : undefined)
      const now = { ...e, ...(updatedAt !== undefined ? { updatedAt } : {}) }
      batch.push({ type: 'put', sublevel: index, key: head + id, value: encodeForward(store, now) })
      const tags = now.tags ?? []
      for (const t of tags) batch.push({ type: 'put', sublevel: index, key: `t${ID_SEP}${t}${ID_SEP}${id}`, value: encodePostingValue(now.updatedAt, now.expiresAt, tags) })
    })
    page = []
    if (batch.length > 0) await store.writeBatch(batch)
    batch = []
  }
  for await (const [k, v] of index.iterator(prefixRange(head))) {
    page.push([k.slice(head.length), v])
    if (page.length >= MIGRATE_BATCH_OPS / 4) await flush()
  }
  await flush()
  await o.afterStep?.('postings-reindexed')
  const done: Batch = [{ type: 'put', sublevel: store.meta, key: LAYOUT_KEY, value: encodeLsn(LAYOUT) }]
  const backendAt = await store.readCheckpoint('backend')
  if (rowsRead && backendAt < (await store.readCheckpoint('index'))) done.push({ type: 'put', sublevel: store.meta, key: 'checkpoint:index', value: encodeLsn(backendAt) })
  await store.writeBatch(done)
}

/**
 * Brings a store to layout 2 (identity (namespace, key)):
 *
 * Layout 1 (no `layout` key in `meta`): rows keyed by key alone in the
 * `data` sublevel (`[value, namespace | null, tags | null, lsn]`) and the
 * index in `idx` (forward entries `f\0key -> [namespace | null, tags | null]`).
 * A key had one namespace at a time, and a delete removed it wherever it was.
 *
 * 1. Catch layout 1 up to the log's end with its own semantics (a minimal
 *    legacy applier: a put replaces the key's row and namespace, a delete
 *    removes the key), each batch with its checkpoint: what was only in the
 *    log now is in the rows, so no version-1 delete is ever replayed into an
 *    identity-keyed sink.
 * 2. Write layout 2 into the new sublevels (`rows`, `ix`), cleared first:
 *    each row under identityOf(namespace or `default`, key), with updatedAt
 *    and createdAt from the hlc of the record that wrote it when the log
 *    still holds it (else `nowMs`: layout 1 kept no times), the index
 *    rebuilt from the forward entries.
 * 3. One batch: `layout` = 2 and both checkpoints at the log's end.
 * 4. Empty the layout-1 sublevels.
 *
 * A crash anywhere before 3 leaves layout 1 (step 1 resumes at its
 * checkpoint; step 2 starts again from cleared sublevels); after 3 the store
 * is layout 2 and 4 is finished at the next open.
 */
async function migrateLayout1(store: LevelStore, log: MigrationLog, o: MigrationOptions): Promise<boolean> {
  await catchUpLegacy(store, log, o.ownBackend)
  await o.afterStep?.('legacy-caught-up')
  await writeLayout2(store, log, o)
  await o.afterStep?.('rows-written')
  const done: Batch = [
    { type: 'put', sublevel: store.meta, key: LAYOUT_KEY, value: encodeLsn(2) },
    { type: 'put', sublevel: store.meta, key: 'checkpoint:index', value: encodeLsn(log.lastLsn) },
  ]
  if (o.ownBackend) done.push({ type: 'put', sublevel: store.meta, key: 'checkpoint:backend', value: encodeLsn(log.lastLsn) })
  await store.writeBatch(done)
  await o.afterStep?.('layout-set')
  await clearLegacy(store)
  await o.afterStep?.('legacy-cleared')
  return true
}

/** Step 1: the layout-1 rows and forward index entries, up to the log's end, with layout-1 semantics. */
async function catchUpLegacy(store: LevelStore, log: MigrationLog, ownBackend: boolean): Promise<void> {
  const dataLsn = ownBackend ? await store.readCheckpoint('backend') : Number.MAX_SAFE_INTEGER
  const indexLsn = await store.readCheckpoint('index')
  const from = Math.min(dataLsn, indexLsn) + 1
  if (from > log.lastLsn) return
  const { legacyData, legacyIndex, meta, packr } = store
  let batch: Batch = []
  let last = 0
  const flush = async (): Promise<void> => {
    if (ownBackend && last > dataLsn) batch.push({ type: 'put', sublevel: meta, key: 'checkpoint:backend', value: encodeLsn(last) })
    if (last > indexLsn) batch.push({ type: 'put', sublevel: meta, key: 'checkpoint:index', value: encodeLsn(last) })
    await store.writeBatch(batch)
    batch = []
  }
  for await (const { lsn, record } of log.read(from)) {
    last = lsn
    for (const op of opsOf(record)) {
      const namespace = op.namespace ?? DEFAULT_NAMESPACE
      if (lsn > dataLsn) {
        batch.push(op.type === 'put' ? { type: 'put', sublevel: legacyData, key: op.key, value: packr.encode([toWireValue(op.value), namespace, op.tags ?? null, lsn]) } : { type: 'del', sublevel: legacyData, key: op.key })
      }
      if (lsn > indexLsn) {
        batch.push(op.type === 'put' ? { type: 'put', sublevel: legacyIndex, key: `f${ID_SEP}${op.key}`, value: packr.encode([namespace, op.tags ?? null]) } : { type: 'del', sublevel: legacyIndex, key: `f${ID_SEP}${op.key}` })
      }
    }
    if (batch.length >= MIGRATE_BATCH_OPS) await flush()
  }
  if (last > 0) await flush()
}

/** Step 2: layout 2's rows and index, from layout 1's, in sublevels cleared first. */
async function writeLayout2(store: LevelStore, log: MigrationLog, o: MigrationOptions): Promise<void> {
  const { data, index, legacyData, legacyIndex, packr } = store
  await data.clear()
  await index.clear()
  let batch: Batch = []
  const put = async (op: Batch[number]): Promise<void> => {
    batch.push(op)
    if (batch.length >= MIGRATE_BATCH_OPS) {
      await store.writeBatch(batch)
      batch = []
    }
  }
  if (o.ownBackend) {
    const times = await writeTimes(store, log)
    for await (const [key, v] of legacyData.iterator()) {
      const [value, ns, tags, lsn] = packr.decode(v) as [unknown, string | null, string[] | null, number]
      const at = times.get(lsn) ?? o.nowMs
      await put({ type: 'put', sublevel: data, key: identityOf(ns ?? DEFAULT_NAMESPACE, key), value: encodeRow(packr, { value, ...(tags !== null ? { tags } : {}), lsn, createdAt: at, updatedAt: at }) })
    }
  }
  const head = `f${ID_SEP}`
  for await (const [k, v] of legacyIndex.iterator(prefixRange(head))) {
    const [ns, tags] = packr.decode(v) as [string | null, string[] | null]
    const id = identityOf(ns ?? DEFAULT_NAMESPACE, k.slice(head.length))
    await put({ type: 'put', sublevel: index, key: `f${ID_SEP}${id}`, value: packr.encode([tags]) })
    for (const t of tags ?? []) await put({ type: 'put', sublevel: index, key: `t${ID_SEP}${t}${ID_SEP}${id}`, value: new Uint8Array(0) })
  }
  if (batch.length > 0) await store.writeBatch(batch)
}

/** The ms of the record that wrote each live layout-1 row, where the log still holds it (best effort: damage ends the look). */
async function writeTimes(store: LevelStore, log: MigrationLog): Promise<Map<number, number>> {
  const wanted = new Set<number>()
  for await (const v of store.legacyData.values()) wanted.add((store.packr.decode(v) as [unknown, unknown, unknown, number])[3])
  const out = new Map<number, number>()
  if (wanted.size === 0) return out
  try {
    let first = Number.MAX_SAFE_INTEGER
    for (const l of wanted) first = Math.min(first, l)
    for await (const { lsn, record } of log.read(first)) {
      if (wanted.has(lsn) && record.hlc !== undefined) out.set(lsn, hlcMs(record.hlc))
    }
  } catch {
    // A damaged frame before the end: the rows written by records after it take the migration's time.
  }
  return out
}

async function clearLegacy(store: LevelStore): Promise<void> {
  for (const s of [store.legacyData, store.legacyIndex]) {
    for await (const _ of s.keys({ limit: 1 })) {
      await s.clear()
      break
    }
  }
}
