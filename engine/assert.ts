import { AssertionFailedError } from './errors.js'

/**
 * Checks what cannot happen if the code is right. A failure is a bug in memwal,
 * not a condition of the world: it is never caught to carry on.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionFailedError(message)
}

export function assertNever(value: never, what: string): never {
  throw new AssertionFailedError(`unexpected ${what}: ${String(value)}`)
}
