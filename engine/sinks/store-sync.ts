import { assert } from '../assert.js'
import type { Clock } from '../io/clock.js'

/** How often the store is synced: after `intervalMs` of unsynced writes, or once `bytes` of them were written, whichever comes first. */
export interface StoreSyncConfig {
  readonly intervalMs: number
  readonly bytes: number
}

/** What the store does for its syncer. */
export interface StoreSyncPorts {
  readonly clock: Clock
  /**
   * One synced write: once it resolves, every write LevelDB took before it is
   * on disk, if it resolves `true`. `false`: the sync was written, but an
   * earlier write may not be durable yet (level-store.ts: a LevelDB log
   * rotated out unsynced): the checkpoints stay where they were and the next
   * round tries again.
   */
  syncedWrite(): Promise<boolean>
  /** A sync failed (it is tried again at the next round). */
  failed(err: unknown): void
  /** Durable checkpoints moved. */
  synced(): void
}

/**
 * Group sync of the LevelDB store (issue 15 item 2), as the log's group
 * commit does for segments: apply batches are written without sync, and the
 * store is synced on a cadence; a sink's checkpoint becomes *durable* (what
 * WAL retention may trust) when a sync that began after the batch holding it
 * was written has completed. Until then the checkpoint may be lost with the
 * batch on power loss: LevelDB then recovers an earlier prefix of its log, in
 * which each sink's checkpoint still sits in the batch with its data, so the
 * records after it are replayed from the log, which retention kept.
 *
 * Bounds: at most one sync in flight; a write that brings the unsynced bytes
 * to `bytes` starts one at once, otherwise a timer does `intervalMs` after the
 * first unsynced write. A failed or inconclusive sync leaves the timer armed
 * for the next round, so a store that stays unable to sync is retried at the
 * interval, never in a loop.
 */
export class StoreSync {
  private unsyncedBytes = 0
  /** Whether a write happened since the last sync began (bytes may be 0 for a batch that only moved a checkpoint). */
  private dirty = false
  private cancelTimer: (() => void) | undefined
  /** The last round started or queued (rounds never reject), and the one queued behind the one in flight, if any. */
  private tail: Promise<void> = Promise.resolve()
  private queued: Promise<void> | undefined
  /** Checkpoints in batches LevelDB took (not necessarily synced), by sink name. */
  private readonly written = new Map<string, number>()
  /** Checkpoints covered by a completed sync. */
  private readonly durable = new Map<string, number>()
  private stopped = false

  constructor(
    private readonly config: StoreSyncConfig,
    private readonly ports: StoreSyncPorts,
  ) {
    assert(config.intervalMs > 0 && config.bytes > 0, 'store sync cadence bounds are positive')
  }

  /** The checkpoint `name` opened at: read from a store that was just synced (or recovered by LevelDB, which syncs what it recovers). */
  opened(name: string, lsn: number): void {
    this.written.set(name, lsn)
    this.durable.set(name, lsn)
  }

  /** An unsynced batch of `bytes` holding `name`'s checkpoint `lsn` was taken by LevelDB. */
  wrote(name: string, lsn: number, bytes: number): void {
    assert(lsn >= (this.written.get(name) ?? 0), 'a sink checkpoint written to the store does not move back')
    this.written.set(name, lsn)
    this.unsyncedBytes += bytes
    this.dirty = true
    if (this.stopped) return
    if (this.unsyncedBytes >= this.config.bytes) void this.sync()
    else this.arm()
  }

  /** Each sink's checkpoint in the last batch LevelDB took (synced or not). */
  writtenCheckpoints(): ReadonlyMap<string, number> {
    return this.written
  }

  /** The highest checkpoint of `name` known to be on disk (undefined before `opened`). */
  durableCheckpoint(name: string): number | undefined {
    return this.durable.get(name)
  }

  /**
   * Syncs now (after the sync in flight, if any): resolves when every write
   * LevelDB took before the call is durable, or the attempt failed (then
   * reported through `failed`; the checkpoints stay).
   */
  sync(): Promise<void> {
    // One round waiting is enough: it captures what was written when it starts, so it covers every caller queued behind it.
    if (this.queued) return this.queued
    const next = this.tail.then(() => {
      this.queued = undefined
      return this.round()
    })
    this.queued = next
    this.tail = next
    return next
  }

  /** Stops the cadence (close): a sync in flight completes; `sync()` may still be called. */
  stop(): void {
    this.stopped = true
    this.cancelTimer?.()
    this.cancelTimer = undefined
  }

  private async round(): Promise<void> {
    if (!this.dirty) return
    this.cancelTimer?.()
    this.cancelTimer = undefined
    // What the sync covers: the checkpoints of writes LevelDB took before it is issued (later ones wait for the next).
    const covered = new Map(this.written)
    this.unsyncedBytes = 0
    this.dirty = false
    let ok = false
    try {
      ok = await this.ports.syncedWrite()
    } catch (err) {
      this.ports.failed(err)
    }
    if (!ok) {
      // Still not known durable: the next round comes from the timer (or `bytes` more written), never at once.
      this.dirty = true
      this.arm()
      return
    }
    for (const [name, lsn] of covered) if (lsn > (this.durable.get(name) ?? 0)) this.durable.set(name, lsn)
    this.ports.synced()
  }

  private arm(): void {
    if (this.stopped || this.cancelTimer) return
    this.cancelTimer = this.ports.clock.setTimer(this.config.intervalMs, () => {
      this.cancelTimer = undefined
      void this.sync()
    })
  }
}
