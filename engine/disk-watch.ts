import type { DiskSpace, FileSystem } from './io/fs.js'

/** Samples of the bytes written kept for the write rate: the rate is over the last few health checks. */
const RATE_SAMPLES_MAX = 6

export interface DiskStatus extends DiskSpace {
  /** Log bytes written per second over the last few checks. */
  readonly writeBytesPerSecond: number
  /** At that rate, when the free space runs out; absent while nothing is written. */
  readonly secondsToFull?: number
  /** Free space is below diskLowBytes, or runs out within diskLowSeconds at the recent rate. */
  readonly low: boolean
  /** Free space is below diskReadOnlyBytes: writes are refused before ENOSPC. */
  readonly readOnly: boolean
}

export interface DiskWatchConfig {
  readonly fs: FileSystem
  readonly dir: string
  readonly lowBytes: number
  readonly lowSeconds: number
  /** 0: never read-only for a full disk. */
  readonly readOnlyBytes: number
}

/** One look at the disk: its status, and whether it has just become low (a `disk-low` event: once per crossing). */
export interface DiskSample {
  readonly status: DiskStatus
  /** Low now, and not at the sample before (or this is the first). */
  readonly becameLow: boolean
}

/**
 * The data directory's disk, looked at on each health check: free space, the
 * recent write rate and the time to full it gives. It says when the disk is
 * low (a `disk-low` event, before ENOSPC) and when writes must stop.
 */
export class DiskWatch {
  private readonly samples: { atMs: number; bytes: number }[] = []
  private last: DiskStatus | undefined

  constructor(private readonly c: DiskWatchConfig) {}

  /** The last status sampled (none before the first check, or without `fs.diskSpace`). */
  get status(): DiskStatus | undefined {
    return this.last
  }

  /** Samples the disk; `writtenBytes` is the running total of log bytes written. Undefined when the filesystem cannot say. */
  async sample(nowMs: number, writtenBytes: number): Promise<DiskSample | undefined> {
    if (!this.c.fs.diskSpace) return undefined
    const space = await this.c.fs.diskSpace(this.c.dir)
    this.samples.push({ atMs: nowMs, bytes: writtenBytes })
    if (this.samples.length > RATE_SAMPLES_MAX) this.samples.shift()
    const first = this.samples[0] as { atMs: number; bytes: number }
    const seconds = (nowMs - first.atMs) / 1000
    const rate = seconds > 0 ? Math.max(0, writtenBytes - first.bytes) / seconds : 0
    const secondsToFull = rate > 0 ? space.freeBytes / rate : undefined
    const wasLow = this.last?.low === true
    this.last = {
      freeBytes: space.freeBytes,
      totalBytes: space.totalBytes,
      writeBytesPerSecond: rate,
      ...(secondsToFull !== undefined ? { secondsToFull } : {}),
      low: space.freeBytes < this.c.lowBytes || (secondsToFull !== undefined && secondsToFull < this.c.lowSeconds),
      readOnly: space.freeBytes < this.c.readOnlyBytes,
    }
    return { status: this.last, becameLow: this.last.low && !wasLow }
  }
}
