import { isMemwalError } from '../../engine/index.js'

/** The `code` a promise rejects with (undefined if it resolves): what tests match refusals on. */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return isMemwalError(err) ? err.code : `not a MemwalError: ${String(err)}`
  }
}
