import fs from 'node:fs'
import path from 'node:path'
import { MemWAL, isMemwalError, type MemwalError, type MemwalOptions } from '../../engine/index.js'
import { BACKEND_RECORD_NAME } from '../../engine/log/backend-record.js'

/** The MemwalError `MemWAL.open(options)` is refused with, or undefined when it opens (closed again at once). */
export async function openError(options: MemwalOptions): Promise<MemwalError | undefined> {
  return refusal(MemWAL.open(options))
}

/** The MemwalError an open under way is refused with, or undefined when it opens (closed again at once). */
export async function refusal(p: Promise<MemWAL>): Promise<MemwalError | undefined> {
  try {
    await (await p).close()
    return undefined
  } catch (err) {
    if (!isMemwalError(err)) throw err
    return err
  }
}

/** A data directory's `BACKEND` record, parsed. */
export function recordOf(dir: string): { writerId?: string; dirId?: string } {
  return JSON.parse(fs.readFileSync(path.join(dir, BACKEND_RECORD_NAME), 'utf8'))
}
