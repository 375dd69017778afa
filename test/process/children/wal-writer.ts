/**
 * The `wal` profiles of the kill child (test/process/kill-child.ts): the
 * write-ahead log alone, through its own modules rather than engine/index.js
 * (the package entry also loads LevelDB and the apply path, which would
 * double every child's start-up).
 *
 *   wal <dir> <seed>          prints `opening`, opens the WAL (sync durability,
 *                             256 KiB segments), prints `ready <pid> <lastLsn>`,
 *                             then appends forever in bursts of 1..64 concurrent
 *                             appends, printing `burst <first> <n>` before each
 *                             and `ack <lsn> <counter>` as each append resolves.
 *   wal-try-open <dir>        tries Wal.open once and prints one JSON line:
 *                             {"ok":true,"pid":...} or {"ok":false,"code":...,"message":...,"details":...}
 *   wal-hold <dir>            opens the WAL, prints `ready <pid> <lastLsn>`, holds it
 *                             until stdin ends, then closes it and prints `closed`.
 *   wal-exit-open <dir>       opens the WAL, appends one record, prints `ready ...`
 *                             and exits (process.exit(0)) without closing it.
 */
import { RecordType } from '../../../engine/format/format.js'
import type { Op, WalRecord } from '../../../engine/format/record-codec.js'
import { SeededRandom } from '../../../engine/io/random.js'
import { Wal } from '../../../engine/log/wal.js'
import { writeLine } from '../../support/child-process.js'
import { writeRandom } from '../../support/seeded-writes.js'

export const WAL_CHILD_SEGMENT_BYTES = 256 * 1024
const BURST_MAX = 64

/** The key prefix every record written by (seed, counter) starts with. */
export function walKeyFor(seed: number, counter: number, part = 0): string {
  return `s${seed}/c${counter}/p${part}`
}

/** Parses a key written by walKeyFor. */
export function parseWalKey(key: string): { seed: number; counter: number } | undefined {
  const m = /^s(\d+)\/c(\d+)\/p\d+$/.exec(key)
  return m ? { seed: Number(m[1]), counter: Number(m[2]) } : undefined
}

function valueBytes(rng: SeededRandom): Uint8Array {
  const roll = rng.below(100)
  const size = roll < 70 ? rng.below(200) : roll < 95 ? 200 + rng.below(1800) : 2000 + rng.below(14_000)
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = rng.below(256)
  return bytes
}

/**
 * The record number `counter` of the writer seeded `seed`: a pure function of
 * both, so the parent recomputes exactly what the child appended. Mostly puts,
 * some deletes and batches; every key carries (seed, counter).
 */
export function walRecordFor(seed: number, counter: number): WalRecord {
  const rng = writeRandom(seed, counter)
  const roll = rng.below(10)
  if (roll === 0) return { type: RecordType.DELETE, op: { type: 'del', key: walKeyFor(seed, counter) } }
  if (roll === 1) {
    const ops: Op[] = []
    const n = 2 + rng.below(4)
    for (let i = 0; i < n; i++) {
      ops.push(rng.chance(0.25) ? { type: 'del', key: walKeyFor(seed, counter, i) } : { type: 'put', key: walKeyFor(seed, counter, i), value: valueBytes(rng) })
    }
    return { type: RecordType.BATCH, ops }
  }
  const tags = rng.chance(0.3) ? ['t' + String(rng.below(5))] : undefined
  return {
    type: RecordType.PUT,
    op: { type: 'put', key: walKeyFor(seed, counter), value: valueBytes(rng), namespace: 'kill9', ...(tags ? { tags } : {}) },
  }
}

function openWal(dir: string): Promise<Wal> {
  return Wal.open({ dir, segmentBytes: WAL_CHILD_SEGMENT_BYTES })
}

export async function appendForever(dir: string, seed: number): Promise<void> {
  writeLine('opening')
  const wal = await openWal(dir)
  writeLine(`ready ${process.pid} ${wal.lastLsn}`)
  const rng = new SeededRandom(seed)
  let counter = 0
  for (;;) {
    const n = 1 + rng.below(BURST_MAX)
    writeLine(`burst ${counter} ${n}`)
    const burst: Promise<void>[] = []
    for (let i = 0; i < n; i++) {
      const c = counter++
      burst.push(wal.appendRecord(walRecordFor(seed, c)).then((lsn) => writeLine(`ack ${lsn} ${c}`)))
    }
    await Promise.all(burst)
  }
}

export async function tryOpen(dir: string): Promise<void> {
  try {
    const wal = await openWal(dir)
    await wal.close()
    writeLine(JSON.stringify({ ok: true, pid: process.pid }))
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown; details?: unknown }
    writeLine(JSON.stringify({ ok: false, pid: process.pid, code: e.code, message: e.message, details: e.details }))
  }
}

export async function holdUntilStdinEnds(dir: string): Promise<void> {
  const wal = await openWal(dir)
  writeLine(`ready ${process.pid} ${wal.lastLsn}`)
  await new Promise<void>((resolve) => {
    process.stdin.on('data', () => undefined)
    process.stdin.on('end', resolve)
  })
  await wal.close()
  writeLine('closed')
}

export async function exitWhileOpen(dir: string): Promise<void> {
  const wal = await openWal(dir)
  await wal.appendRecord(walRecordFor(1, 0))
  writeLine(`ready ${process.pid} ${wal.lastLsn}`)
  process.exit(0)
}
