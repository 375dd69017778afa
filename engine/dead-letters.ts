import { posix as path } from 'node:path'
import { DeadLetterLog } from './apply/dead-letter.js'
import type { Checksums } from './format/checksum.js'
import type { RecordCodec } from './format/record-codec.js'
import type { Clock } from './io/clock.js'
import type { FileSystem } from './io/fs.js'
import type { Random } from './io/random.js'
import type { AppliedRecord, Sink } from './sinks/sink.js'

/** One dead-letter log per sink under `<dir>/deadletter`, opened on first use. */
export class DeadLetters {
  private readonly logs = new Map<string, Promise<DeadLetterLog>>()

  constructor(
    private readonly dir: string,
    private readonly fs: FileSystem,
    private readonly sums: Checksums,
    private readonly codec: RecordCodec,
    private readonly clock: Clock,
    private readonly random: Random,
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

  async close(): Promise<void> {
    for (const d of this.logs.values()) await d.then((l) => l.close()).catch(() => undefined)
  }
}
