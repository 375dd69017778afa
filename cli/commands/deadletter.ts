import { checkDataDir, DEFAULT_NAMESPACE, InvalidOptionsError, isLegacyDelete, listDeadLetters, opsOf, type DeadLetter, type Op } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { openStore } from '../open-store.js'
import type { Output } from '../output.js'
import { hasPgFlags, type PgFlags } from '../pg-options.js'

export type DeadLetterAction = 'list' | 'retry' | 'drop'

export interface DeadLetterCommandOptions extends PgFlags {
  /** retry and drop: one dead letter by its LSN, or every open one. */
  readonly which?: number | 'all'
  readonly timeoutMs: number
}

/**
 * `memwal deadletter <dir> list|retry|drop [--lsn N | --all]`: the records a
 * sink rejected for good. `list` reads the dead-letter logs without the lock
 * (beside a running process too); `retry` writes each record again through
 * the log (a new LSN) and waits until the sinks applied it (or rejected it
 * again); `drop` records, durably, that it is not to be applied. Both open the
 * store, so they need the lock, and a PostgreSQL-backed store's backend
 * (`--pg URL --writer-id ID`): only they take those flags.
 */
export async function deadletter(dir: string, action: DeadLetterAction, o: DeadLetterCommandOptions, out: Output): Promise<number> {
  if (action === 'list') {
    if (hasPgFlags(o)) throw new InvalidOptionsError('deadletter list reads the dead-letter logs without opening the store: --pg, --writer-id and --schema go with retry and drop', 'pg')
    await checkDataDir(dir)
    const { open, resolved } = await listDeadLetters(dir)
    if (out.json) {
      out.document({ open, resolved: resolved.length })
      return ExitCode.CLEAN
    }
    for (const d of open) out.line(describeDeadLetter(d))
    out.line(`${open.length} open dead letters${resolved.length > 0 ? ` (${resolved.length} retried or dropped before)` : ''}`)
    return ExitCode.CLEAN
  }
  const which = o.which
  if (which === undefined) throw new Error('retry and drop take --lsn N or --all')
  const db = await openStore(dir, o, { existing: true })
  try {
    if (action === 'drop') {
      const r = await db.deadLetters.drop(which)
      if (out.json) out.document(r)
      else out.line(`dropped ${r.dropped.length} dead letters${r.dropped.length > 0 ? ` (LSNs ${r.dropped.join(', ')})` : ''}: recorded in deadletter/resolved.json`)
      return ExitCode.CLEAN
    }
    const r = await db.deadLetters.retry(which)
    await db.flush({ timeoutMs: o.timeoutMs })
    const again = (await db.deadLetters.list()).filter((d) => r.retried.some((x) => x.newLsn === d.lsn))
    if (out.json) {
      out.document({ ...r, rejectedAgain: again.map((d) => ({ sink: d.sink, lsn: d.lsn })) })
    } else {
      for (const x of r.retried) out.line(`LSN ${x.lsn} written again as LSN ${x.newLsn}`)
      for (const l of r.superseded) out.line(`LSN ${l} not retried: a key of it has a newer version (drop it)`)
      for (const d of again) out.line(`LSN ${d.lsn} was rejected again by ${d.sink}`)
    }
    return again.length > 0 || r.superseded.length > 0 ? ExitCode.UNCORRECTED : ExitCode.CLEAN
  } finally {
    await db.close()
  }
}

/** One line of `deadletter list`: the LSN, the sink, and each operation with the entry it names (namespace, key). */
export function describeDeadLetter(d: DeadLetter): string {
  return `LSN ${d.lsn}\t${d.sink}\t${opsOf(d.record).map(describeOp).join(', ')}`
}

function describeOp(op: Op): string {
  // A version-1 delete named no namespace: it removed the key wherever it was.
  const where = isLegacyDelete(op) ? 'every namespace' : JSON.stringify(op.namespace ?? DEFAULT_NAMESPACE)
  return `${op.type === 'put' ? 'put' : 'delete'} ${JSON.stringify(op.key)} in ${where}`
}
