/**
 * The systems memwal is measured against, and the load drivers every system
 * (memwal included) is measured with.
 *
 * - raw-append: `fs.writeSync` + `fs.fdatasyncSync` of one frame-sized buffer
 *   (payload + 32-byte frame header) per operation, appended to a file that
 *   grows: the loop the issue names. Each fdatasync also commits the new file
 *   size (an ext4 journal commit), so this is not quite the disk's floor.
 * - raw-prealloc: the same loop over a file zero-filled and synced beforehand,
 *   which is how memwal lays out its segments (see engine/wal/segment-file.ts):
 *   each fdatasync then flushes data only. This is the physical limit a WAL on
 *   this disk can approach, one record per flush.
 * - classic-level: LevelDB `put(key, value, { sync: true })` on a fresh
 *   database, the backend memwal replicates to.
 */
import fs from 'node:fs'
import { posix as path } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { LatencyRecorder, trialResult, type TrialResult } from './stats.js'

// ---- load drivers ----

/**
 * One awaited writer: issue, await, repeat, for `durationMs`. Each op's
 * latency runs from just before it is issued to just after its promise
 * settles (the end of one op is the start of the next, to save a clock read).
 */
export async function driveAwaited(op: () => Promise<unknown>, durationMs: number): Promise<TrialResult> {
  const latencies = new LatencyRecorder()
  const start = performance.now()
  const deadline = start + durationMs
  let now = start
  let ops = 0
  while (now < deadline) {
    const issuedAt = now
    await op()
    now = performance.now()
    latencies.record((now - issuedAt) * 1000)
    ops++
  }
  return trialResult(ops, now - start, latencies)
}

/** The same as driveAwaited for a synchronous operation (the raw loops). */
export function driveSync(op: () => void, durationMs: number): TrialResult {
  const latencies = new LatencyRecorder()
  const start = performance.now()
  const deadline = start + durationMs
  let now = start
  let ops = 0
  while (now < deadline) {
    const issuedAt = now
    op()
    now = performance.now()
    latencies.record((now - issuedAt) * 1000)
    ops++
  }
  return trialResult(ops, now - start, latencies)
}

/**
 * `depth` operations kept in flight: each time one settles, a new one is
 * issued, until `durationMs` has passed; then the outstanding ones drain and
 * count. Throughput is acknowledged ops over the time to the last ack.
 * The first failure rejects (after every outstanding op settled).
 */
export function driveInFlight(op: () => Promise<unknown>, durationMs: number, depth: number): Promise<TrialResult> {
  return new Promise((resolve, reject) => {
    const latencies = new LatencyRecorder(1 << 18)
    const start = performance.now()
    const deadline = start + durationMs
    let outstanding = 0
    let ops = 0
    let failure: { error: unknown } | undefined
    const settle = (now: number): void => {
      if (outstanding > 0) return
      if (failure) reject(failure.error)
      else resolve(trialResult(ops, now - start, latencies))
    }
    const issue = (issuedAt: number): void => {
      outstanding++
      op().then(
        () => {
          const now = performance.now()
          latencies.record((now - issuedAt) * 1000)
          ops++
          outstanding--
          if (now < deadline && !failure) issue(now)
          else settle(now)
        },
        (error: unknown) => {
          failure ??= { error }
          outstanding--
          settle(performance.now())
        },
      )
    }
    for (let i = 0; i < depth; i++) issue(performance.now())
  })
}

// ---- raw fdatasync loops ----

export interface RawOptions {
  /** Bytes per append: payload + frame header. */
  readonly appendBytes: number
  readonly warmupMs: number
  readonly measureMs: number
}

function appendBuffer(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes)
  for (let i = 0; i < bytes; i++) b[i] = (i * 131 + 7) & 0xff
  return b
}

/** writeSync + fdatasyncSync appends to a new file that grows with every append. */
export function rawAppendTrial(dir: string, o: RawOptions): TrialResult {
  const buf = appendBuffer(o.appendBytes)
  const fd = fs.openSync(path.join(dir, 'raw-append.log'), 'w', 0o600)
  try {
    let position = 0
    const op = (): void => {
      fs.writeSync(fd, buf, 0, buf.length, position)
      fs.fdatasyncSync(fd)
      position += buf.length
    }
    driveSync(op, o.warmupMs)
    return driveSync(op, o.measureMs)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The same loop over a file of `fileBytes` zero-filled and synced before the
 * clock starts (wrapping to the start if it fills).
 */
export function rawPreallocTrial(dir: string, o: RawOptions & { readonly fileBytes: number }): TrialResult {
  const buf = appendBuffer(o.appendBytes)
  const file = path.join(dir, 'raw-prealloc.log')
  const fill = fs.openSync(file, 'w', 0o600)
  try {
    const zeros = Buffer.alloc(1024 * 1024)
    for (let at = 0; at < o.fileBytes; at += zeros.length) fs.writeSync(fill, zeros, 0, Math.min(zeros.length, o.fileBytes - at), at)
    fs.fdatasyncSync(fill)
  } finally {
    fs.closeSync(fill)
  }
  const fd = fs.openSync(file, 'r+')
  try {
    let position = 0
    const op = (): void => {
      if (position + buf.length > o.fileBytes) position = 0
      fs.writeSync(fd, buf, 0, buf.length, position)
      fs.fdatasyncSync(fd)
      position += buf.length
    }
    driveSync(op, o.warmupMs)
    return driveSync(op, o.measureMs)
  } finally {
    fs.closeSync(fd)
  }
}

// ---- classic-level ----

export interface LevelOptions {
  readonly key: (n: number) => string
  readonly value: string
  readonly warmupMs: number
  readonly measureMs: number
  /** 1: one awaited writer; more: that many puts in flight. */
  readonly depth: number
}

/** `put(key, value, { sync: true })` on a fresh LevelDB database in `dir`. */
export async function classicLevelTrial(dir: string, o: LevelOptions): Promise<TrialResult> {
  const db = new ClassicLevel<string, string>(path.join(dir, 'level'), { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  await db.open()
  try {
    let n = 0
    const op = (): Promise<void> => db.put(o.key(n++), o.value, { sync: true })
    const drive = (ms: number): Promise<TrialResult> => (o.depth === 1 ? driveAwaited(op, ms) : driveInFlight(op, ms, o.depth))
    await drive(o.warmupMs)
    return await drive(o.measureMs)
  } finally {
    await db.close()
  }
}
