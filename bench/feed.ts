/**
 * The change feed and online backup, on the agent-memory record (namespace,
 * three tags, ~350 bytes):
 *
 *   npm run bench:feed -- [--records N] [--reps R] [--json]
 *
 * - put-256: MemWAL.put at 256 in flight, nobody watching (records/s);
 * - put-256-watched: the same with one live watch that keeps up (a consumer
 *   counting changes): its cost is the ratio of the two, in one run,
 *   interleaved; the watch's own rate is N over the time until it saw the
 *   last change;
 * - watch-batched: one live watch while the records are written by
 *   MemWAL.batch, 256 puts a call, 4 calls in flight (the watch's rate, as
 *   above, and the writer's): put at 256 in flight writes about a tenth of
 *   what a watch delivers, so the live watch above only shows the writer's
 *   rate, and a batch writer is the fastest producer the engine has. Over
 *   100,000 records it is no faster than put (about 20,000 records/s on an
 *   idle machine here, 2026-12-02): the appliers' work on the same thread
 *   bounds both, and the live watch follows its writer;
 * - watch-catchup: a watch from version 0 over N records every sink applied
 *   (every trial keeps its history: watchHistoryRecords N)
 *   (read back from the segments), changes/s;
 * - backup: db.backup of that store (open, idle), MB/s of what it copied;
 * - export: db.export of that store to a file, ndjson and msgpack, MB/s of
 *   what it wrote (issue 12's goal: >= 100 MB/s; feed-export.ts measures it
 *   alone, on a store kept between runs, to compare two builds).
 * Rounds alternate the order of the two put workloads; medians are reported.
 * The issue's goals (watch >= 200,000 changes/s; <= 10% on put at 256 in
 * flight; a 1 GiB store backed up in <= 10 s) are printed beside the figures;
 * nothing is asserted.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { MemWAL } from '../engine/index.js'
import { agentShape, type RecordShape } from './records.js'
import { parseRunArgs } from './run-args.js'
import { fmt, median, table } from './stats.js'


/** Puts records 0..n-1 at 256 in flight; resolves with the ms it took. */
async function putAll(db: MemWAL, shape: RecordShape, n: number): Promise<number> {
  const started = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      const labels = shape.labels(i)
      await db.put(shape.key(i), shape.value(i), labels)
    }
  }
  await Promise.all(Array.from({ length: 256 }, worker))
  return performance.now() - started
}

async function putTrial(dir: string, shape: RecordShape, n: number, watched: boolean): Promise<{ putPerSec: number; watchPerSec?: number }> {
  const db = await MemWAL.open({ dir, maxBacklogBytes: 2 ** 30, watchHistoryRecords: n })
  try {
    let seen = 0
    let watchDone: Promise<number> | undefined
    if (watched) {
      const it = db.watch()
      const started = performance.now()
      watchDone = (async () => {
        for await (const c of it) if (++seen >= n || c.version >= n) break
        return performance.now() - started
      })()
    }
    const ms = await putAll(db, shape, n)
    const watchMs = watchDone ? await watchDone : undefined
    return { putPerSec: n / (ms / 1000), ...(watchMs !== undefined ? { watchPerSec: n / (watchMs / 1000) } : {}) }
  } finally {
    await db.close()
  }
}

/** Puts in a batch call, and batch calls in flight, in the watch-batched trial. */
const BATCH_PUTS = 256
const BATCHES_IN_FLIGHT = 4

/** Records 0..n-1 written by db.batch (BATCH_PUTS a call, BATCHES_IN_FLIGHT calls at once) with one live watch: both rates. */
async function batchedWatchTrial(dir: string, shape: RecordShape, n: number): Promise<{ batchPutPerSec: number; watchPerSec: number }> {
  const db = await MemWAL.open({ dir, maxBacklogBytes: 2 ** 30, watchHistoryRecords: n })
  try {
    const it = db.watch()
    const started = performance.now()
    const watchDone = (async () => {
      let seen = 0
      for await (const c of it) if (++seen >= n || c.version >= n) break
      return performance.now() - started
    })()
    let next = 0
    const writer = async (): Promise<void> => {
      for (let from = next; from < n; from = next) {
        next = Math.min(n, from + BATCH_PUTS)
        const ops = []
        for (let i = from; i < next; i++) ops.push({ type: 'put' as const, key: shape.key(i), value: shape.value(i), ...shape.labels(i) })
        await db.batch(ops)
      }
    }
    await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, writer))
    const putMs = performance.now() - started
    const watchMs = await watchDone
    return { batchPutPerSec: n / (putMs / 1000), watchPerSec: n / (watchMs / 1000) }
  } finally {
    await db.close()
  }
}

/** db.export of the whole store into a file, in `format`: MB written and the ms it took (the file is removed). */
async function exportTrial(db: MemWAL, target: string, format: 'ndjson' | 'msgpack'): Promise<{ mb: number; ms: number }> {
  const started = performance.now()
  await pipeline(db.export({ format }), fs.createWriteStream(target))
  const ms = performance.now() - started
  const mb = fs.statSync(target).size / 1e6
  fs.rmSync(target, { force: true })
  return { mb, ms }
}

interface StoreFigures {
  readonly catchupPerSec: number
  readonly backupMBPerSec: number
  readonly backupMs: number
  readonly backupMB: number
  readonly exportNdjsonMB: number
  readonly exportNdjsonMBPerSec: number
  readonly exportMsgpackMB: number
  readonly exportMsgpackMBPerSec: number
}

async function catchupAndBackup(dir: string, n: number): Promise<StoreFigures> {
  const db = await MemWAL.open({ dir, maxBacklogBytes: 2 ** 30, watchHistoryRecords: n })
  try {
    await db.flush({ timeoutMs: 600_000 })
    const started = performance.now()
    let seen = 0
    for await (const c of db.watch({ fromVersion: 0 })) if (++seen >= n || c.version >= n) break
    const catchupMs = performance.now() - started
    const target = `${dir}-backup`
    const b0 = performance.now()
    const r = await db.backup(target)
    const backupMs = performance.now() - b0
    fs.rmSync(target, { recursive: true, force: true })
    const nd = await exportTrial(db, `${dir}-export.ndjson`, 'ndjson')
    const mp = await exportTrial(db, `${dir}-export.msgpack`, 'msgpack')
    return {
      catchupPerSec: n / (catchupMs / 1000), backupMs, backupMB: r.bytes / 1e6, backupMBPerSec: r.bytes / 1e6 / (backupMs / 1000),
      exportNdjsonMB: nd.mb, exportNdjsonMBPerSec: nd.mb / (nd.ms / 1000), exportMsgpackMB: mp.mb, exportMsgpackMBPerSec: mp.mb / (mp.ms / 1000),
    }
  } finally {
    await db.close()
  }
}

async function main(): Promise<void> {
  const o = parseRunArgs('feed', process.argv.slice(2), { records: 100_000, reps: 3 })
  const shape = agentShape()
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-bench-feed-'))
  const rows: Record<string, number[]> = { put: [], watchedPut: [], watch: [], batchPut: [], batchWatch: [], catchup: [], backupMBPerSec: [], backupMs: [], backupMB: [], exportNdjsonMB: [], exportNdjsonMBPerSec: [], exportMsgpackMB: [], exportMsgpackMBPerSec: [] }
  try {
    for (let r = 0; r < o.reps; r++) {
      for (const watched of r % 2 === 0 ? [false, true] : [true, false]) {
        const dir = path.join(base, `r${r}-${watched ? 'watched' : 'plain'}`)
        const t = await putTrial(dir, shape, o.records, watched)
        ;(watched ? rows.watchedPut : rows.put)?.push(t.putPerSec)
        if (t.watchPerSec !== undefined) rows.watch?.push(t.watchPerSec)
        if (!watched) {
          const c = await catchupAndBackup(dir, o.records)
          rows.catchup?.push(c.catchupPerSec)
          rows.backupMBPerSec?.push(c.backupMBPerSec)
          rows.backupMs?.push(c.backupMs)
          rows.backupMB?.push(c.backupMB)
          for (const k of ['exportNdjsonMB', 'exportNdjsonMBPerSec', 'exportMsgpackMB', 'exportMsgpackMBPerSec'] as const) rows[k]?.push(c[k])
        }
        fs.rmSync(dir, { recursive: true, force: true })
        if (!o.json) process.stderr.write(`round ${r + 1}/${o.reps} ${watched ? 'watched' : 'plain'} done\n`)
      }
      const dir = path.join(base, `r${r}-batched`)
      const b = await batchedWatchTrial(dir, shape, o.records)
      rows.batchPut?.push(b.batchPutPerSec)
      rows.batchWatch?.push(b.watchPerSec)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true })
  }
  const m = (k: string): number => median(rows[k] ?? [])
  const result = {
    records: o.records,
    reps: o.reps,
    putPerSec: m('put'),
    watchedPutPerSec: m('watchedPut'),
    watchedPutRatio: m('watchedPut') / m('put'),
    liveWatchPerSec: m('watch'),
    batchPutPerSec: m('batchPut'),
    batchLiveWatchPerSec: m('batchWatch'),
    catchupWatchPerSec: m('catchup'),
    backupMB: m('backupMB'),
    backupMs: m('backupMs'),
    backupMBPerSec: m('backupMBPerSec'),
    backupSecondsPerGiB: 1024 / m('backupMBPerSec') * 1.048576,
    exportNdjsonMB: m('exportNdjsonMB'),
    exportNdjsonMBPerSec: m('exportNdjsonMBPerSec'),
    exportMsgpackMB: m('exportMsgpackMB'),
    exportMsgpackMBPerSec: m('exportMsgpackMBPerSec'),
  }
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    return
  }
  process.stdout.write(`${table([
    ['figure', 'median', 'goal'],
    ['put, 256 in flight (records/s)', fmt(result.putPerSec), ''],
    ['put, 256 in flight, one live watch (records/s)', fmt(result.watchedPutPerSec), ''],
    ['  ratio watched / not', fmt(result.watchedPutRatio, 3), '>= 0.90'],
    ['live watch (changes/s)', fmt(result.liveWatchPerSec), '>= 200,000'],
    [`batch, ${BATCH_PUTS} puts a call, ${BATCHES_IN_FLIGHT} in flight, one live watch (records/s)`, fmt(result.batchPutPerSec), ''],
    ['  its live watch (changes/s)', fmt(result.batchLiveWatchPerSec), '>= 200,000'],
    ['watch from version 0, from the segments (changes/s)', fmt(result.catchupWatchPerSec), '>= 200,000'],
    [`backup of ${fmt(result.backupMB, 1)} MB (MB/s)`, fmt(result.backupMBPerSec, 1), ''],
    ['  seconds per GiB at that rate', fmt(result.backupSecondsPerGiB, 1), '<= 10'],
    [`export, ndjson, ${fmt(result.exportNdjsonMB, 1)} MB written (MB/s)`, fmt(result.exportNdjsonMBPerSec, 1), '>= 100'],
    [`export, msgpack, ${fmt(result.exportMsgpackMB, 1)} MB written (MB/s)`, fmt(result.exportMsgpackMBPerSec, 1), '>= 100'],
  ])}\n`)
}

await main()
