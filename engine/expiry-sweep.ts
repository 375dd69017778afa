import { assert } from './assert.js'
import type { ResolvedSweep } from './expiry-options.js'
import { isExpired, type ExpiredPosting } from './format/expiry-key.js'
import type { Clock } from './io/clock.js'
import type { WriteWatch, WriteWatches } from './write-watch.js'

export type { ExpiredPosting } from './format/expiry-key.js'

export interface SweepPorts {
  readonly clock: Clock
  readonly config: ResolvedSweep
  readonly watches: WriteWatches
  /** Postings of the entries expired at `nowMs` (expiresAt <= nowMs), in expiry order: the index's expired range, nothing else. */
  expired(nowMs: number): AsyncIterable<ExpiredPosting>
  /** The entries as they are now (pending, then the backend's rows), in the order asked: undefined where one is gone. One read for them all. */
  currentMany(identities: readonly string[]): Promise<({ readonly expiresAt?: number | undefined } | undefined)[]>
  /** Deletes, in one logged batch, those of `identities` that `watch` saw unchanged; resolves once durable. */
  deleteUnchanged(identities: readonly string[], watch: WriteWatch): Promise<{ readonly deleted: readonly string[] } | undefined>
  /** A round failed (backend down, log failed, engine closing): reported; the next round tries again. */
  failed(err: unknown): void
}

export interface SweepRound {
  /** Postings read. */
  readonly examined: number
  /** Entries deleted through the log. */
  readonly deleted: number
  /** Postings whose entry was gone, no longer expired, or written meanwhile. */
  readonly skipped: number
  /** The round stopped at entriesPerRound with expired postings left: the next round follows at once. */
  readonly more: boolean
}

/**
 * The expiry sweep: every `intervalMs` on the engine's clock, reads the
 * expired postings (cost proportional to what expired, not to the store),
 * checks each entry as readers see it, and deletes through the log what is
 * still expired and unchanged, in batches of `batchOps` deletes (each one
 * logged record, one small group commit, so a concurrent write waits behind
 * at most one of them), at most `entriesPerRound` per round. Deletes are
 * ordinary log records: replay, fsck and every sink see the same removals.
 *
 * A delete must never remove a version written after the sweep judged the
 * entry: the entry is watched before it is read (write-watch.ts), and the
 * write path drops any watched entry written since, synchronously before the
 * append. Rounds never overlap.
 */
export class ExpirySweeper {
  private cancelTimer: (() => void) | undefined
  private running: Promise<SweepRound> | undefined
  private stopped = false

  constructor(private readonly p: SweepPorts) {}

  /** Starts the cadence: the first round after one interval. */
  start(): void {
    assert(!this.stopped, 'a stopped sweeper is started again')
    this.schedule(this.p.config.intervalMs)
  }

  /**
   * No further round starts; resolves once a round in progress has ended, or
   * after `graceMs` (on the clock) when given: a round held by a sink that
   * does not answer must not hold the engine's close (its append is refused
   * once the engine closes, so it deletes nothing after that).
   */
  async stop(graceMs?: number): Promise<void> {
    this.stopped = true
    this.cancelTimer?.()
    this.cancelTimer = undefined
    const running = this.running?.then(() => undefined, () => undefined)
    if (running === undefined || graceMs === undefined) return running
    let cancel: (() => void) | undefined
    await Promise.race([running, new Promise<void>((r) => (cancel = this.p.clock.setTimer(graceMs, r)))])
    cancel?.()
  }

  /** Runs one round now (or joins the one running). */
  round(): Promise<SweepRound> {
    this.running ??= this.runRound().finally(() => {
      this.running = undefined
    })
    return this.running
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.cancelTimer = this.p.clock.setTimer(ms, () => {
      this.cancelTimer = undefined
      this.round().then(
        (r) => this.schedule(r.more ? 0 : this.p.config.intervalMs),
        (err: unknown) => {
          this.p.failed(err)
          this.schedule(this.p.config.intervalMs)
        },
      )
    })
  }

  private async runRound(): Promise<SweepRound> {
    const { clock, config, watches } = this.p
    const now = clock.nowMs()
    const watch = watches.begin(config.entriesPerRound)
    let examined = 0
    let deleted = 0
    let skipped = 0
    let more = false
    // Up to batchOps watched identities, judged with one read, then the expired ones deleted in one logged batch.
    let chunk: string[] = []
    const judgeAndDelete = async (): Promise<void> => {
      if (chunk.length === 0) return
      const curs = await this.p.currentMany(chunk)
      const batch = chunk.filter((_, i) => {
        const cur = curs[i]
        return cur !== undefined && isExpired(cur.expiresAt, now)
      })
      skipped += chunk.length - batch.length
      chunk = []
      if (batch.length === 0) return
      const r = await this.p.deleteUnchanged(batch, watch)
      const n = r?.deleted.length ?? 0
      deleted += n
      skipped += batch.length - n
    }
    try {
      const seen = new Set<string>()
      for await (const posting of this.p.expired(now)) {
        if (examined >= config.entriesPerRound) {
          more = true
          break
        }
        examined++
        assert(posting.expiresAt <= now, `the index handed out posting ${posting.expiresAt} that has not expired at ${now}`)
        if (seen.has(posting.identity)) {
          skipped++
          continue
        }
        seen.add(posting.identity)
        // Watched before it is read: a write after this point keeps the entry (decided at the append).
        watch.watch(posting.identity)
        chunk.push(posting.identity)
        if (chunk.length >= config.batchOps) await judgeAndDelete()
        if (this.stopped) break
      }
      await judgeAndDelete()
    } finally {
      watch.end()
    }
    return { examined, deleted, skipped, more }
  }
}
