import { MemwalError } from '../engine/index.js'

/** A caller's argument the adapters refuse: always this code, so callers match one. */
export function invalid(message: string): MemwalError {
  return new MemwalError('ADAPTER_INVALID_ARGUMENT', message)
}

/** Code-unit order, the order memwal keys sort in. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
