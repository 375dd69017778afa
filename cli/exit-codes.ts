import { isMemwalError } from '../engine/index.js'

/** e2fsck's exit codes (DESIGN.md §9). */
export const ExitCode = {
  CLEAN: 0,
  CORRECTED: 1,
  UNCORRECTED: 4,
  OPERATIONAL: 8,
  USAGE: 16,
} as const

/** Corruption that stopped a command is an uncorrected error; anything else that went wrong is operational. */
export function exitCodeFor(err: unknown): number {
  if (isMemwalError(err)) {
    if (err.code.startsWith('WAL_') && err.code !== 'WAL_UNKNOWN_VERSION' && err.code !== 'WAL_FAILED' && err.code !== 'WAL_CLOSED' && err.code !== 'WAL_WRITE_FAILED') return ExitCode.UNCORRECTED
    if (err.code === 'INVALID_OPTIONS') return ExitCode.USAGE
  }
  return ExitCode.OPERATIONAL
}

/** One line a person can act on, with the code when there is one. */
export function describeError(err: unknown): string {
  if (isMemwalError(err)) return `${err.message} [${err.code}]`
  const e = err as NodeJS.ErrnoException
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return `permission denied: ${e.path ?? e.message} [${e.code}]`
  if (e?.code === 'ENOTDIR') return `not a directory: ${e.path ?? e.message} [${e.code}]`
  return e?.message ?? String(err)
}
