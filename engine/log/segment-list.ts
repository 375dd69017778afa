import { posix as path } from 'node:path'
import type { FileSystem } from '../io/fs.js'
import { parseSegmentName, TEMP_SUFFIX } from '../format/segment-name.js'

export interface SegmentEntry {
  readonly name: string
  readonly path: string
  readonly baseLsn: number
}

export interface WalListing {
  /** Segments, in LSN order. */
  readonly segments: readonly SegmentEntry[]
  /** Leftovers of an interrupted segment preparation. */
  readonly temps: readonly string[]
  /** Anything else: reported, never touched. */
  readonly strangers: readonly string[]
}

export async function listWal(fs: FileSystem, walDir: string): Promise<WalListing> {
  const segments: SegmentEntry[] = []
  const temps: string[] = []
  const strangers: string[] = []
  for (const name of await fs.readdir(walDir)) {
    const base = parseSegmentName(name)
    if (base !== undefined) segments.push({ name, path: path.join(walDir, name), baseLsn: base })
    else if (name.endsWith(TEMP_SUFFIX)) temps.push(name)
    else strangers.push(name)
  }
  segments.sort((a, b) => a.baseLsn - b.baseLsn)
  return { segments, temps, strangers }
}

/** Reads the first `length` bytes of a file (fewer if it is shorter). */
export function readPrefix(fs: FileSystem, file: string, length: number): Promise<Uint8Array> {
  return readRange(fs, file, 0, length)
}

/** Reads `length` bytes of a file from `at` (fewer if it is shorter). */
export async function readRange(fs: FileSystem, file: string, at: number, length: number): Promise<Uint8Array> {
  const handle = await fs.open(file, 'read')
  try {
    const buf = Buffer.alloc(length)
    let n = 0
    while (n < length) {
      const got = await handle.read(buf, n, length - n, at + n)
      if (got === 0) break
      n += got
    }
    return buf.subarray(0, n)
  } finally {
    await handle.close()
  }
}
