import { posix as path } from 'node:path'
import { MemwalError } from '../errors.js'
import { createChecksums, type Checksums } from '../format/checksum.js'
import { decodeSegmentHeader } from '../format/format.js'
import { DEFAULT_NAMESPACE } from '../format/identity.js'
import { opsOf, RecordCodec, type WalRecord } from '../format/record-codec.js'
import { makeDirDurable, readJsonList, replaceFile } from '../io/file-ops.js'
import type { FileSystem } from '../io/fs.js'
import { NodeFileSystem } from '../io/node-fs.js'
import { limits } from '../limits.js'
import { scanFrames } from './segment-cursor.js'

/**
 * Reading `<dir>/deadletter/`: the dead-letter logs (`<sink>.log`, framed as
 * a segment; written by apply/dead-letter.ts) and what operators did about
 * them (`resolved.json`: retried or dropped, replaced atomically and synced).
 * A dead letter is *open* until it is resolved. The reconciler, `memwal
 * deadletter` and `MemWAL.deadLetters` all read through here.
 */
export const RESOLVED_FILE = 'resolved.json'
const LOG_SUFFIX = '.log'

export interface DeadLetter {
  /** The sink that rejected the record for good. */
  readonly sink: string
  /** The record's LSN in the log. */
  readonly lsn: number
  readonly record: WalRecord
  /** The keys it writes. */
  readonly keys: readonly string[]
  /** The entries it writes, by (namespace, key); a version-1 delete, which names no namespace, is left out. */
  readonly entries: readonly { readonly namespace: string; readonly key: string }[]
}

export interface DeadLetterResolution {
  readonly sink: string
  readonly lsn: number
  readonly how: 'retried' | 'dropped'
  readonly atMs: number
  /** retried: the LSN the record was written again at. */
  readonly newLsn?: number
}

export interface DeadLetterState {
  /** Not resolved yet, in sink then LSN order. */
  readonly open: readonly DeadLetter[]
  /** Resolved (retried or dropped), with how. */
  readonly resolved: readonly (DeadLetter & { readonly resolution: DeadLetterResolution })[]
}

export function deadLetterDir(dataDir: string): string {
  return path.join(dataDir, 'deadletter')
}

/** Every dead letter of the data directory, open and resolved. Frames that fail their checks (a torn last append) are not dead letters. */
export async function readDeadLetters(fs: FileSystem, sums: Checksums, dataDir: string): Promise<DeadLetterState> {
  const dir = deadLetterDir(dataDir)
  if (!(await fs.stat(dir))) return { open: [], resolved: [] }
  const resolutions = await readResolutions(fs, dataDir)
  const codec = new RecordCodec()
  const open: DeadLetter[] = []
  const resolved: (DeadLetter & { resolution: DeadLetterResolution })[] = []
  for (const name of (await fs.readdir(dir)).filter((n) => n.endsWith(LOG_SUFFIX)).sort()) {
    const sink = name.slice(0, -LOG_SUFFIX.length)
    const bytes = await fs.readFile(path.join(dir, name))
    const h = decodeSegmentHeader(bytes, sums)
    if (h.kind !== 'header') continue
    for (const ev of scanFrames({ bytes, salt: h.header.salt, recordBytesMax: limits.recordBytesHardMax, sums, mode: 'salvage' })) {
      if (ev.kind !== 'frame') continue
      const record = codec.decode(ev.type, ev.payload)
      const d: DeadLetter = { sink, lsn: ev.lsn, record, ...writesOf(record) }
      const r = resolutions.find((x) => x.sink === sink && x.lsn === ev.lsn)
      if (r) resolved.push({ ...d, resolution: r })
      else if (!open.some((x) => x.sink === sink && x.lsn === ev.lsn)) open.push(d)
    }
  }
  return { open, resolved }
}

export async function readResolutions(fs: FileSystem, dataDir: string): Promise<DeadLetterResolution[]> {
  return readJsonList(fs, path.join(deadLetterDir(dataDir), RESOLVED_FILE), 'resolved', isResolution, 'resolutions')
}

/** Adds resolutions, durably. Refused past `limits.deadLetterResolutionsMax` (the file is rewritten whole each time). */
export async function recordResolutions(fs: FileSystem, dataDir: string, added: readonly DeadLetterResolution[]): Promise<void> {
  if (added.length === 0) return
  const held = await readResolutions(fs, dataDir)
  checkResolutionRoom(held.length, added.length, dataDir)
  const all = [...held, ...added]
  await makeDirDurable(fs, deadLetterDir(dataDir))
  await replaceFile(fs, path.join(deadLetterDir(dataDir), RESOLVED_FILE), Buffer.from(`${JSON.stringify({ resolved: all }, null, 2)}\n`))
}

/** Refuses (DEADLETTER_LIMIT) `adding` resolutions to the `held` ones past `limits.deadLetterResolutionsMax`: checked before anything is retried. */
export function checkResolutionRoom(held: number, adding: number, dataDir: string): void {
  if (held + adding <= limits.deadLetterResolutionsMax) return
  throw new MemwalError('DEADLETTER_LIMIT', `${held + adding} dead-letter resolutions would exceed deadLetterResolutionsMax ${limits.deadLetterResolutionsMax}: archive ${deadLetterDir(dataDir)} (move it aside once nothing in it is open)`)
}

function isResolution(r: unknown): r is DeadLetterResolution {
  const o = r as Partial<DeadLetterResolution> | null
  return !!o && typeof o.sink === 'string' && Number.isSafeInteger(o.lsn) && (o.how === 'retried' || o.how === 'dropped') && typeof o.atMs === 'number' && (o.newLsn === undefined || Number.isSafeInteger(o.newLsn))
}

/** The dead letters of a data directory, open and resolved, read without the lock (`memwal deadletter list`). */
export async function listDeadLetters(dataDir: string, fs: FileSystem = new NodeFileSystem()): Promise<DeadLetterState> {
  return readDeadLetters(fs, await createChecksums(), path.resolve(dataDir))
}

function writesOf(record: WalRecord): Pick<DeadLetter, 'keys' | 'entries'> {
  const ops = opsOf(record)
  return {
    keys: ops.map((op) => op.key),
    entries: ops.filter((op) => !(op.type === 'del' && op.legacy === true)).map((op) => ({ namespace: op.namespace ?? DEFAULT_NAMESPACE, key: op.key })),
  }
}
