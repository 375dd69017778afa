import { SinkTimeoutError } from '../errors.js'
import type { Clock } from '../io/clock.js'

/**
 * Runs `fn`, failing with SinkTimeoutError after `ms` on the injected clock.
 * The call cannot be cancelled: its signal is aborted (a sink may stop early)
 * and it is abandoned, still running; the caller decides what that means.
 * The signal is also aborted once the call returns, so nothing outlives it.
 */
export async function withTimeout<T>(clock: Clock, ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const aborter = new AbortController()
  let cancel: (() => void) | undefined
  try {
    return await Promise.race([
      fn(aborter.signal),
      new Promise<never>((_, reject) => {
        cancel = clock.setTimer(ms, () => {
          aborter.abort()
          reject(new SinkTimeoutError(ms))
        })
      }),
    ])
  } finally {
    cancel?.()
    aborter.abort()
  }
}
