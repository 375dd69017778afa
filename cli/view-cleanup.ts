import { removeOwnStoreViewsSync } from '../engine/index.js'

/**
 * Runs `fn` (status, fsck: they open the store from a private copy under
 * TMPDIR) so that SIGINT or SIGTERM meanwhile removes this process's copies
 * before the signal ends it as it would have (a copy left holds links to the
 * store's tables and copies of its logs). A SIGKILL cannot be met here: the
 * next view's close removes what a process gone left.
 */
export async function removingViewsOnSignal<T>(command: string, fn: () => Promise<T>, signals: NodeJS.EventEmitter = process): Promise<T> {
  const on = (signal: NodeJS.Signals) => (): void => {
    dispose()
    removeOwnStoreViewsSync()
    process.stderr.write(`memwal ${command}: interrupted by ${signal} (its private copy of the store removed)\n`)
    // Ended by the signal itself, as without this handler (exit status 128 + its number to a shell).
    process.kill(process.pid, signal)
  }
  const onInt = on('SIGINT')
  const onTerm = on('SIGTERM')
  const dispose = (): void => {
    signals.off('SIGINT', onInt)
    signals.off('SIGTERM', onTerm)
  }
  signals.once('SIGINT', onInt)
  signals.once('SIGTERM', onTerm)
  try {
    return await fn()
  } finally {
    dispose()
  }
}
