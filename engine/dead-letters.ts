import { posix as path } from 'node:path'
import { DeadLetterLog } from './apply/dead-letter.js'
import { isMemwalError, MemwalError } from './errors.js'
import type { Checksums } from './format/checksum.js'
import type { RecordCodec, WalRecord } from './format/record-codec.js'
import type { Clock } from './io/clock.js'
import type { FileSystem } from './io/fs.js'
import type { Random } from './io/random.js'
import { checkResolutionRoom, readDeadLetters, readResolutions, recordResolutions, type DeadLetter, type DeadLetterResolution } from './log/dead-letter-file.js'
import type { AppliedRecord, Sink } from './sinks/sink.js'
import type { WriteCondition } from './validate.js'

/** What `MemWAL.deadLetters` offers an operator: the records a sink rejected for good, and what to do about them. */
export interface DeadLetterQueue {
  /** The open dead letters (neither retried nor dropped), by sink, in LSN order. */
  list(): Promise<DeadLetter[]>
  /**
   * Writes the record of each open dead letter (`lsn`, or `'all'`) again
   * through the log, as a new record with a new LSN, so that it flows to every
   * sink anew (after the sink was fixed), and records it as retried, durably
   * (one write of resolved.json per call).
   * A record whose key has a newer version than it (read as `get` reads) is
   * not written again: it is returned in `superseded` and stays open (drop it).
   * The record is written on the condition that every entry is still at the
   * version read (as `ifVersion` / `ifAbsent`, decided in log order), so a
   * write that lands between that read and the rewrite is never overwritten:
   * the record is `superseded` then too.
   * A deletion after it that the backend applied is not seen: check `list()`.
   */
  retry(which: number | 'all'): Promise<{ readonly retried: readonly { readonly lsn: number; readonly newLsn: number }[]; readonly superseded: readonly number[] }>
  /** Records each open dead letter (`lsn`, or `'all'`) as dropped, durably: it is no longer reported, and nothing is written. */
  drop(which: number | 'all'): Promise<{ readonly dropped: readonly number[] }>
}

/** What the queue needs of the engine. */
export interface DeadLetterHost {
  /** Writes a record again through the write path if every condition holds (else VERSION_MISMATCH, nothing written); resolves its new LSN. */
  rewrite(record: WalRecord, conditions: readonly WriteCondition[]): Promise<number>
  /** The LSN that wrote the key's current version, as a read sees it. */
  currentLsn(namespace: string, key: string): Promise<number | undefined>
  assertWritable(): void
}

/**
 * One dead-letter log per sink under `<dir>/deadletter`, opened on first use;
 * and the queue an operator works through (`deadletter/resolved.json` records
 * what was retried or dropped). Operations on the queue run one at a time.
 */
export class DeadLetters implements DeadLetterQueue {
  private readonly logs = new Map<string, Promise<DeadLetterLog>>()
  private queue: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly dir: string,
    private readonly fs: FileSystem,
    private readonly sums: Checksums,
    private readonly codec: RecordCodec,
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly host: DeadLetterHost,
  ) {}

  /** Appends (durably) the record `sink` rejected for good. */
  async append(sink: Sink, record: AppliedRecord): Promise<void> {
    let log = this.logs.get(sink.name)
    if (!log) {
      const opening = DeadLetterLog.open(this.fs, path.join(this.dir, 'deadletter'), sink.name, this.sums, this.random.nextU32(), this.clock.nowMs())
      // A log that failed to open (disk full, I/O error) is opened afresh on the next attempt, not failed for ever.
      opening.catch(() => this.logs.get(sink.name) === opening && this.logs.delete(sink.name))
      this.logs.set(sink.name, opening)
      log = opening
    }
    await (await log).append(record.lsn, record.record.type, this.codec.encode(record.record))
  }

  list(): Promise<DeadLetter[]> {
    return this.serial(async () => [...(await readDeadLetters(this.fs, this.sums, this.dir)).open])
  }

  retry(which: number | 'all'): Promise<{ readonly retried: readonly { readonly lsn: number; readonly newLsn: number }[]; readonly superseded: readonly number[] }> {
    return this.serial(async () => {
      this.host.assertWritable()
      const chosen = await this.chosen(which)
      // Room for every resolution this call may record, before anything is written again.
      checkResolutionRoom((await readResolutions(this.fs, this.dir)).length, chosen.length, this.dir)
      const retried: { lsn: number; newLsn: number }[] = []
      const superseded: number[] = []
      const resolutions: DeadLetterResolution[] = []
      // Recorded once for the whole call (resolved.json is rewritten whole: once per record was quadratic). A crash
      // before that leaves the records written again open; a later retry finds each superseded by its own copy (a
      // newer version, written in log order), so none is lost (the copy is in the log) and none is applied twice.
      try {
        // Several sinks may have rejected the same record: it is written again once.
        for (const lsn of [...new Set(chosen.map((d) => d.lsn))]) {
          const same = chosen.filter((d) => d.lsn === lsn)
          const first = same[0] as DeadLetter
          const seen = await this.versionsSeen(first)
          const newLsn = seen && (await this.rewriteIfUnchanged(first, seen))
          if (newLsn === undefined) {
            superseded.push(lsn)
            continue
          }
          retried.push({ lsn, newLsn })
          for (const d of same) resolutions.push({ sink: d.sink, lsn, how: 'retried', atMs: this.clock.nowMs(), newLsn })
        }
      } catch (err) {
        // What was written again before the failure is recorded all the same; the failure is what the caller sees.
        await this.resolve(resolutions).catch(() => undefined)
        throw err
      }
      await this.resolve(resolutions)
      return { retried, superseded }
    })
  }

  drop(which: number | 'all'): Promise<{ readonly dropped: readonly number[] }> {
    return this.serial(async () => {
      this.host.assertWritable()
      const chosen = await this.chosen(which)
      await this.resolve(chosen.map((d) => ({ sink: d.sink, lsn: d.lsn, how: 'dropped' as const, atMs: this.clock.nowMs() })))
      return { dropped: [...new Set(chosen.map((d) => d.lsn))] }
    })
  }

  async close(): Promise<void> {
    for (const d of this.logs.values()) await d.then((l) => l.close()).catch(() => undefined)
  }

  private async chosen(which: number | 'all'): Promise<DeadLetter[]> {
    if (which !== 'all' && !Number.isSafeInteger(which)) throw new MemwalError('INVALID_OPTIONS', `a dead letter is named by its LSN (a positive integer) or 'all', not ${String(which)}`)
    const { open } = await readDeadLetters(this.fs, this.sums, this.dir)
    if (which === 'all') return [...open]
    const found = open.filter((d) => d.lsn === which)
    if (found.length === 0) throw new MemwalError('DEADLETTER_NOT_FOUND', `no open dead letter has LSN ${which}${open.length > 0 ? ` (open: ${open.map((d) => d.lsn).join(', ')})` : ' (there are none)'}`, { details: { lsn: which } })
    return found
  }

  /** The version each entry of `d` is at now (null: absent), or undefined when one has a version newer than `d`. */
  private async versionsSeen(d: DeadLetter): Promise<WriteCondition[] | undefined> {
    const seen: WriteCondition[] = []
    for (const e of d.entries) {
      const lsn = await this.host.currentLsn(e.namespace, e.key)
      if (lsn !== undefined && lsn > d.lsn) return undefined
      seen.push({ namespace: e.namespace, key: e.key, expected: lsn ?? null })
    }
    return seen
  }

  /** Writes `d`'s record again unless an entry left the version `seen` (a write landed since the read): its new LSN, or undefined. */
  private async rewriteIfUnchanged(d: DeadLetter, seen: readonly WriteCondition[]): Promise<number | undefined> {
    const { hlc: _stamp, ...record } = d.record
    try {
      return await this.host.rewrite(record as WalRecord, seen)
    } catch (err) {
      if (isMemwalError(err) && err.code === 'VERSION_MISMATCH') return undefined
      throw err
    }
  }

  private async resolve(r: readonly DeadLetterResolution[]): Promise<void> {
    if (r.length === 0) return
    await recordResolutions(this.fs, this.dir, r)
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => undefined)
    return run
  }
}
