import { MemwalError } from '../engine/index.js'

/** A caller's argument the adapters refuse: always this code, so callers match one. */
export function invalid(message: string): MemwalError {
  return new MemwalError('ADAPTER_INVALID_ARGUMENT', message)
}

/**
 * JavaScript's code-unit order (`<` on UTF-16), the order the frameworks'
 * own in-memory stores sort in, used where the adapters order what they
 * return. Not memwal's identity order, which is by code point: the two differ
 * where a character past U+FFFF meets one in U+E000-U+FFFF (README "Queries").
 */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
