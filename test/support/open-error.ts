import { MemWAL, isMemwalError, type MemwalError, type MemwalOptions } from '../../engine/index.js'

/** The MemwalError `MemWAL.open(options)` is refused with, or undefined when it opens (closed again at once). */
export async function openError(options: MemwalOptions): Promise<MemwalError | undefined> {
  try {
    const e = await MemWAL.open(options)
    await e.close()
    return undefined
  } catch (err) {
    if (!isMemwalError(err)) throw err
    return err
  }
}
