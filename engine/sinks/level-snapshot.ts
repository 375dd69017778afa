import type { LevelStore } from './level-store.js'

/**
 * The LevelDB backend's rows as of one moment, read in steps of many rows,
 * undecoded (backend-row.ts decodes them): what an export reads
 * (export.ts). LevelBackend.snapshot gives the same rows decoded one at a time, through classic-level's own cache of
 * at most 16 KiB (~35 agent-memory rows, one trip to the thread pool each):
 * an export spent a third of its time waiting on those trips.
 */

/** Rows asked for per step (nextv's size). */
export const SNAPSHOT_STEP_ROWS = 1000
/**
 * classic-level ends a step once the rows it read pass this (its
 * `highWaterMarkBytes`), so a step holds at most this plus one row. Large
 * enough that a step of agent-memory rows (~400 bytes) is ended by
 * SNAPSHOT_STEP_ROWS, not by bytes.
 */
export const SNAPSHOT_STEP_BYTES_MAX = 1 << 20

/** One step's rows: [identity, row bytes as stored], in identity order. */
export type RawRows = readonly (readonly [string, Uint8Array])[]

export interface RowSnapshot {
  /** The next rows (empty once at the end). One step at a time: a second call before the first settles is refused by the iterator. */
  next(): Promise<RawRows>
  close(): Promise<void>
  /** True once the store was reopened (level-store.ts, after a failed write) since the snapshot was made: that closed it. */
  reopened(): boolean
}

/**
 * The backend's rows in [gte, lt) from a snapshot made by this call,
 * synchronously: a caller reads other state in the same tick and knows both
 * are of one moment.
 */
export function rowSnapshot(store: LevelStore, range: { readonly gte?: string; readonly lt?: string }): RowSnapshot {
  const reopens = store.reopens
  // highWaterMarkBytes is classic-level's (abstract-level's types lack it); another implementation ignores it.
  const options = { ...range, highWaterMarkBytes: SNAPSHOT_STEP_BYTES_MAX }
  const it = store.data.iterator(options)
  return {
    next: () => it.nextv(SNAPSHOT_STEP_ROWS) as Promise<RawRows>,
    close: () => it.close(),
    reopened: () => store.reopens !== reopens,
  }
}
