/**
 * What the harness measures: the systems, the catalogue of append workloads
 * (one id per system, record shape and load), and how one append trial runs.
 * The one-shot engine workloads are catalogued by the harness.
 */
import { limits } from '../engine/testing.js'
import type { Load, Timing } from './drive.js'
import { memwalTrial } from './memwal-workloads.js'
import type { PeerPackage } from './peer-modules.js'
import { levelTrial } from './peers/level.js'
import { lmdbTrial } from './peers/lmdb.js'
import { rawTrial } from './peers/raw.js'
import { sqliteTrial } from './peers/sqlite.js'
import { FRAME_HEADER_BYTES, type RecordShape, type ShapeId } from './records.js'
import type { SystemEntry } from './report-html.js'
import type { TrialResult } from './stats.js'

export type SystemId = 'memwal' | 'memwal-batch' | 'memwal-wal' | 'raw-append' | 'raw-prealloc' | 'level-put' | 'level-batch' | 'lmdb' | 'sqlite' | 'sqlite-batch'

export const SYSTEMS: readonly (SystemEntry & { readonly id: SystemId; readonly peer?: PeerPackage })[] = [
  { id: 'memwal', label: 'memwal MemWAL.put (sync)', durability: 'the engine with its defaults: a put resolves once its frame is durable in the WAL (group commit, one O_DSYNC write per group on a preallocated segment); the LevelDB backend and the index apply in the background (end to end: counted when the backend has applied it)' },
  { id: 'memwal-batch', label: 'memwal MemWAL.batch (sync)', durability: 'MemWAL.batch of N puts (one atomic record), one batch at a time: every record of it is acknowledged when the batch resolves' },
  { id: 'memwal-wal', label: 'memwal Wal (sync)', durability: 'the log alone: Wal.appendRecord resolves once its frame is durable (same write path as MemWAL, no sinks)' },
  { id: 'raw-append', label: 'raw writeSync+fdatasyncSync', durability: 'one frame-sized write and one fdatasync per record, appended to a file that grows (each fdatasync also commits the new size): the loop issue 5 names' },
  { id: 'raw-prealloc', label: 'raw loop, preallocated file', durability: 'the same loop over a file zero-filled and synced beforehand (as memwal lays out segments): each fdatasync flushes data only, the disk\'s floor for one record per flush' },
  { id: 'level-put', label: 'classic-level put {sync}', peer: 'classic-level', durability: 'LevelDB put(key, value, { sync: true }) on a fresh database (agent records: a synced batch of the record and its index entries): resolved after LevelDB\'s log write + fsync (LevelDB groups concurrent writers into one log write)' },
  { id: 'level-batch', label: 'classic-level batch {sync}', peer: 'classic-level', durability: 'LevelDB batch of N records with { sync: true }, one batch at a time: every record of a batch is acknowledged when the batch resolves' },
  { id: 'lmdb', label: 'lmdb-js put (durable)', peer: 'lmdb', durability: 'lmdb-js defaults (one transaction per event turn, overlappingSync): a put counts once its transaction is committed and flushed (the per-commit flushed promise; separateFlushed only exposes it)' },
  { id: 'sqlite', label: 'better-sqlite3, a transaction per put', peer: 'better-sqlite3', durability: 'SQLite (journal_mode=WAL, synchronous=FULL): one transaction per put, durable when the synchronous call returns; a memories table plus tag postings, as agent-memory libraries keep' },
  { id: 'sqlite-batch', label: 'better-sqlite3, N puts per transaction', peer: 'better-sqlite3', durability: 'the same database, N puts per transaction, one transaction at a time: every record of it is durable when the commit returns' },
]

export const systemLabel = (id: string): string => SYSTEMS.find((s) => s.id === id)?.label ?? id
export const peerOf = (id: SystemId): PeerPackage | undefined => SYSTEMS.find((s) => s.id === id)?.peer

export type AppendMode = 'awaited' | 'inflight' | 'batch' | 'loop' | 'e2e'

export interface AppendWorkload {
  readonly id: string
  readonly system: SystemId
  readonly shape: ShapeId
  readonly workload: string
  readonly label: string
  readonly mode: AppendMode
  /** Writes in flight, or records per batch or transaction. */
  readonly depth: number
  /** For the charts: `awaited`, or the writes in flight (records per batch), as text; null when it does not apply. */
  readonly concurrency: string | null
}

export const DEPTHS = [1, 16, 256, 4096] as const
export const LEVEL_BATCHES = [16, 256, 4096] as const
/** Writes in flight of the headline comparisons, records per batch of the batch ones (issue 15). */
export const HEADLINE = 256

function catalogue(): AppendWorkload[] {
  const w: AppendWorkload[] = []
  const add = (shape: ShapeId, system: SystemId, mode: AppendMode, depth: number): void => {
    const base = mode === 'awaited' ? 'awaited' : mode === 'loop' ? 'loop' : `${mode}-${depth}`
    const workload = shape === 'agent' ? `agent-${base}` : base
    const what = mode === 'awaited' || (mode === 'batch' && depth === 1) ? '1 awaited writer'
      : mode === 'loop' ? '1 writer (sync loop)'
      : mode === 'batch' ? `batches of ${depth}, one at a time`
      : mode === 'e2e' ? `end to end, ${depth} in flight (ack -> applied)`
      : `${depth} in flight`
    const concurrency = mode === 'awaited' || (mode === 'batch' && depth === 1) ? 'awaited' : mode === 'loop' || mode === 'e2e' ? null : String(depth)
    w.push({ id: `${system}/${workload}`, system, shape, workload, label: shape === 'agent' ? `agent record, ${what}` : what, mode, depth, concurrency })
  }
  // Round 0's order; the systems alternate so that neighbours differ.
  add('plain', 'memwal', 'awaited', 1)
  add('plain', 'raw-append', 'loop', 1)
  add('plain', 'level-put', 'awaited', 1)
  add('plain', 'lmdb', 'awaited', 1)
  add('plain', 'sqlite', 'batch', 1)
  add('plain', 'memwal-wal', 'awaited', 1)
  add('plain', 'raw-prealloc', 'loop', 1)
  for (const d of DEPTHS) {
    add('plain', 'memwal', 'inflight', d)
    add('plain', 'level-put', 'inflight', d)
    add('plain', 'memwal-wal', 'inflight', d)
    add('plain', 'lmdb', 'inflight', d)
  }
  for (const b of LEVEL_BATCHES) add('plain', 'level-batch', 'batch', b)
  add('plain', 'memwal-batch', 'batch', HEADLINE)
  add('plain', 'sqlite-batch', 'batch', HEADLINE)
  add('plain', 'memwal', 'e2e', HEADLINE)
  // The agent-memory record: the headline comparisons only.
  add('agent', 'memwal', 'awaited', 1)
  add('agent', 'sqlite', 'batch', 1)
  add('agent', 'memwal-wal', 'awaited', 1)
  add('agent', 'level-put', 'awaited', 1)
  add('agent', 'lmdb', 'awaited', 1)
  add('agent', 'memwal', 'inflight', HEADLINE)
  add('agent', 'lmdb', 'inflight', HEADLINE)
  add('agent', 'memwal-wal', 'inflight', HEADLINE)
  add('agent', 'level-put', 'inflight', HEADLINE)
  add('agent', 'memwal-batch', 'batch', HEADLINE)
  add('agent', 'sqlite-batch', 'batch', HEADLINE)
  add('agent', 'level-batch', 'batch', HEADLINE)
  add('agent', 'memwal', 'e2e', HEADLINE)
  return w
}

export const APPEND: readonly AppendWorkload[] = catalogue()

export interface AppendTrial {
  readonly result: TrialResult
  /** memwal: segments opened while the clock ran. */
  readonly rotations?: number
}

/** Runs one trial of `w` in this process, on the fresh directory `dir`. */
export async function appendTrial(w: AppendWorkload, dir: string, shape: RecordShape, timing: Timing, o: { readonly segmentBytes: number; readonly settle: boolean }): Promise<AppendTrial> {
  const load: Load = w.mode === 'inflight' || w.mode === 'e2e' ? { kind: 'inflight', depth: w.depth } : { kind: 'awaited' }
  const appendBytes = shape.payloadBytes + FRAME_HEADER_BYTES
  switch (w.system) {
    case 'memwal':
    case 'memwal-batch':
    case 'memwal-wal': {
      const kind = w.system === 'memwal-wal' ? 'wal' : w.system === 'memwal-batch' ? 'batch' : w.mode === 'e2e' ? 'e2e' : 'engine'
      return memwalTrial(dir, shape, { kind, perBatch: w.depth, segmentBytes: o.segmentBytes, settle: o.settle }, load, timing)
    }
    case 'raw-append':
      return { result: await rawTrial(dir, { appendBytes }, timing) }
    case 'raw-prealloc':
      return { result: await rawTrial(dir, { appendBytes, fileBytes: limits.segmentBytesDefault }, timing) }
    case 'level-put':
      return { result: await levelTrial(dir, shape, { perBatch: 1 }, load, timing) }
    case 'level-batch':
      return { result: await levelTrial(dir, shape, { perBatch: w.depth }, load, timing) }
    case 'lmdb':
      return { result: await lmdbTrial(dir, shape, load, timing) }
    case 'sqlite':
    case 'sqlite-batch':
      return { result: await sqliteTrial(dir, shape, { perTransaction: w.depth }, timing) }
    default: {
      const never: never = w.system
      throw new Error(`unknown system ${String(never)}`)
    }
  }
}
