import { assert } from './assert.js'

/**
 * Which entries were acknowledged since a watch began: with the version
 * gate's writes in flight, the append-time condition of the expiry sweep. A
 * sweep watches an entry, then reads its current version (pending, cache,
 * backend), and deletes it only if nothing wrote it since. The write path
 * notes every entry a record writes once it is acknowledged; a write
 * appended but not yet acknowledged when the sweep decides (its append may
 * have begun before the watch, and the read could not see it) is one the
 * gate holds in flight (`VersionGate.writing`), and `deleteUnchanged` keeps
 * its entry too. A write acknowledged before the watch began is what the
 * read sees. The sweep's decision is taken synchronously right before its
 * own append, so "unchanged" holds in log order: a newer version is never
 * deleted, whatever crashes and replays follow (the log holds the decision).
 *
 * Entries are named by identity strings (engine/format/identity.ts:
 * namespace NUL key).
 */
export class WriteWatches {
  private readonly open = new Set<WriteWatch>()

  /** A new watch; `end()` it when done (a watch costs every write a lookup while it is open). */
  begin(watchedMax: number): WriteWatch {
    const w = new WriteWatch(watchedMax, () => this.open.delete(w))
    this.open.add(w)
    return w
  }

  /** An entry was written (acknowledged). */
  note(identity: string): void {
    for (const w of this.open) w.note(identity)
  }

  /** Watches open now (a test's and health's view). */
  get size(): number {
    return this.open.size
  }
}

export class WriteWatch {
  private readonly watched = new Set<string>()
  private readonly written = new Set<string>()
  private ended = false

  constructor(
    /** Bounds the watch's memory: a sweep round watches at most its entries per round. */
    private readonly watchedMax: number,
    private readonly onEnd: () => void,
  ) {}

  /** Starts watching an entry: from now on, a write to it makes it changed. */
  watch(identity: string): void {
    assert(!this.ended, 'a watch is used after it ended')
    if (this.watched.has(identity)) return
    assert(this.watched.size < this.watchedMax, `a watch holds at most ${this.watchedMax} entries`)
    this.watched.add(identity)
  }

  note(identity: string): void {
    if (this.watched.has(identity)) this.written.add(identity)
  }

  /** Watched, and not written since. */
  unchanged(identity: string): boolean {
    return this.watched.has(identity) && !this.written.has(identity)
  }

  end(): void {
    if (this.ended) return
    this.ended = true
    this.onEnd()
  }
}
