/**
 * The host's timers as Node gives them, bound when this module loads:
 * `node:timers` and `node:perf_hooks`, not the globals. Test doubles (Jest's
 * and vitest's fake timers, @sinonjs/fake-timers) replace the globals, and an
 * application's tests often install them while a store is open: with the
 * globals the log's writer waited forever for a faked `queueMicrotask` (every
 * put hung at once under Jest's defaults), a faked `setImmediate` or the
 * group-synced store's timer. An ES module's named imports of a builtin keep
 * the functions they were bound to, whatever later replaces the globals or
 * the CommonJS `timers` object (Node syncs them only on
 * `module.syncBuiltinESMExports()`).
 *
 * Time as data (ms since the epoch, what records are stamped with) stays the
 * injected Clock's (io/clock.ts); this module is for scheduling only.
 */
import { clearInterval, clearTimeout, setImmediate, setInterval, setTimeout } from 'node:timers'
import { performance } from 'node:perf_hooks'

export { clearInterval, clearTimeout, setImmediate, setInterval, setTimeout }

const resolved = Promise.resolve()

/** Runs `fn` in a microtask (as queueMicrotask does, which test doubles fake); `fn` must not throw. */
export function microtask(fn: () => void): void {
  void resolved.then(fn)
}

/** A monotonic clock in ms for measuring holds and durations (performance.now, which test doubles fake). */
export const monotonicMs = (): number => performance.now()
