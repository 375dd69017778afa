import { isMemwalError, osError, type MemwalError } from '../engine/index.js'
import { withBackendHint } from './backend-hint.js'

/** e2fsck's exit codes (DESIGN.md §9). */
export const ExitCode = {
  CLEAN: 0,
  CORRECTED: 1,
  UNCORRECTED: 4,
  OPERATIONAL: 8,
  USAGE: 16,
} as const

/**
 * An error as the CLI reports it: a raw error from the operating system that
 * reached the top (EACCES reading a segment, say) goes through the engine's
 * one mapping, so that a permission problem is PERMISSION_DENIED, naming the
 * path and the fix, wherever it was met.
 */
export function asReported(err: unknown, command: string): MemwalError | Error {
  if (isMemwalError(err)) return err.code === 'BACKEND_MISMATCH' ? withBackendHint(err, command) : err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return osError(err, `run memwal ${command}`)
  return err instanceof Error ? err : new Error(String(err))
}

/** Corruption that stopped a command is an uncorrected error; anything else that went wrong is operational. */
export function exitCodeFor(err: unknown): number {
  if (isMemwalError(err)) {
    if (err.code.startsWith('WAL_') && err.code !== 'WAL_UNKNOWN_VERSION' && err.code !== 'WAL_FAILED' && err.code !== 'WAL_CLOSED' && err.code !== 'WAL_WRITE_FAILED') return ExitCode.UNCORRECTED
    if (err.code === 'STORE_DAMAGED' || err.code === 'BACKEND_SCHEMA_DAMAGED') return ExitCode.UNCORRECTED
    // A cursor that is not this store's, or not this query's, is input the user gave: a usage error, as a bad flag is.
    // So is a store opened with another backend than it was written with: an option is missing or wrong (--pg),
    // or with a writer id another data directory holds (--writer-id).
    if (err.code === 'INVALID_OPTIONS' || err.code === 'QUERY_INVALID_CURSOR' || err.code === 'BACKEND_MISMATCH' || err.code === 'WRITER_IN_USE') return ExitCode.USAGE
  }
  return ExitCode.OPERATIONAL
}

/** One line a person can act on, with the code when there is one. */
export function describeError(err: unknown): string {
  if (isMemwalError(err)) return `${err.message} [${err.code}]`
  return (err as Error | undefined)?.message ?? String(err)
}
