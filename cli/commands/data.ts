import { checkDataDir, followLog, InvalidOptionsError, PgBackend, type Change, type Entry, type MemWAL, type QueryOptions } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { openStore } from '../open-store.js'
import { displayValue, type Output } from '../output.js'
import { withoutPgFlags, type PgFlags } from '../pg-options.js'

/**
 * The data commands. `memwal get`, `memwal query`, `memwal namespaces` and `memwal stats` read a store through the
 * engine (so pending writes show, as in the API): they open it, so they need
 * its lock, and beside a running process they stop with LOCK_HELD naming the
 * holder. A PostgreSQL-backed store is opened with its PgBackend (`--pg URL
 * --writer-id ID [--schema S]`, pg-options.ts), so they read its tables (every
 * writer's rows) with this writer's pending writes over them. `memwal watch`
 * reads the log alone, without the lock.
 */
async function withEngine<T>(dir: string, flags: PgFlags, fn: (db: MemWAL) => Promise<T>): Promise<T> {
  const db = await openStore(dir, flags, { existing: true })
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}

/** `memwal get <dir> <key> [--namespace NS]`: the entry with its metadata; exit 4 when there is none. */
export function get(dir: string, key: string, o: { readonly namespace?: string } & PgFlags, out: Output): Promise<number> {
  return withEngine(dir, o, async (db) => {
    const e = await db.getEntry(key, o.namespace !== undefined ? { namespace: o.namespace } : undefined)
    if (out.json) out.document({ found: e !== undefined, ...(e !== undefined ? { entry: e } : {}) })
    else if (e === undefined) out.line(`${o.namespace ?? 'default'}/${key}: not found`)
    else out.line(describeEntry(e))
    return e === undefined ? ExitCode.UNCORRECTED : ExitCode.CLEAN
  })
}

/**
 * `memwal query <dir> [filters] [--limit N] [--cursor C] [--count]`: one page of matching entries in
 * identity order (namespace, then key), then the cursor that continues it when more follow; with
 * --count, how many match. The filters are the query language's fields (README, "Queries").
 */
export function query(dir: string, q: QueryOptions & { readonly count?: boolean } & PgFlags, out: Output): Promise<number> {
  return withEngine(dir, q, async (db) => {
    const { count, ...criteria } = withoutPgFlags(q)
    if (count === true) {
      const n = await db.count(criteria)
      if (out.json) out.document({ count: n })
      else out.line(String(n))
      return ExitCode.CLEAN
    }
    const page = await db.queryPage(criteria)
    if (out.json) out.document({ entries: page.entries, ...(page.cursor !== undefined ? { cursor: page.cursor } : {}) })
    else {
      for (const e of page.entries) out.line(describeEntry(e))
      if (page.cursor !== undefined) out.line(`next page: --cursor ${page.cursor}`)
    }
    return ExitCode.CLEAN
  })
}

/** `memwal namespaces <dir> [--prefix P] [--limit N]`: the namespaces holding entries, with how many. */
export function namespaces(dir: string, o: { readonly prefix?: string; readonly limit?: number } & PgFlags, out: Output): Promise<number> {
  return withEngine(dir, o, async (db) => {
    const list = await db.listNamespaces(withoutPgFlags(o))
    if (out.json) out.document({ namespaces: list })
    else for (const n of list) out.line(`${n.namespace}  ${n.entries}`)
    return ExitCode.CLEAN
  })
}

/** `memwal stats <dir> [--prefix P] [--limit N]`: entries and value bytes per namespace, then the totals. */
export function stats(dir: string, o: { readonly prefix?: string; readonly limit?: number } & PgFlags, out: Output): Promise<number> {
  return withEngine(dir, o, async (db) => {
    const s = await db.stats(withoutPgFlags(o))
    if (out.json) out.document(s)
    else {
      for (const n of s.namespaces) out.line(`${n.namespace}  ${n.entries} entries  ${n.bytes} bytes`)
      out.line(`total  ${s.entries} entries  ${s.bytes} bytes${s.sizedFromRows > 0 ? ` (${s.sizedFromRows} indexed before sizes were kept, read from their rows)` : ''}`)
    }
    return ExitCode.CLEAN
  })
}

export interface WatchCommandOptions {
  readonly fromVersion?: number
  readonly namespace?: string
  readonly prefix?: string
  /** Stop after this many changes (default: until interrupted). */
  readonly count?: number
  /** Every writer's changes, from PostgreSQL (`pg`, `schema`), after `resumeToken` or from now. */
  readonly allWriters?: boolean
  readonly pg?: string
  readonly schema?: string
  readonly resumeToken?: string
}

/** The writer id the watching backend connects with (its application_name): it never writes, so it holds no checkpoint. */
const WATCHER_ID = 'watch'

/**
 * `memwal watch <dir> [--from VERSION] [--namespace] [--prefix] [--count N]`:
 * prints changes as they reach the log, one line each (one JSON object per
 * line with --json), until SIGINT or SIGTERM, or after --count changes. It
 * reads the log without the lock (followLog), so it runs beside the process
 * that writes the store. With `--all-writers --pg URL [--schema S] [--resume
 * TOKEN]`: every writer's changes as they reach PostgreSQL (PgBackend.watch,
 * through a backend that only reads: it neither creates nor migrates the
 * schema), each with its writer and resume token.
 */
export async function watch(dir: string, o: WatchCommandOptions, out: Output, signals: NodeJS.EventEmitter = process): Promise<number> {
  await checkDataDir(dir)
  const { count, allWriters, pg, schema, resumeToken, ...options } = o
  if (allWriters !== true && (pg ?? schema ?? resumeToken) !== undefined) throw new InvalidOptionsError('--pg, --schema and --resume go with --all-writers', 'allWriters')
  if (allWriters === true && pg === undefined) throw new InvalidOptionsError('--all-writers reads every writer\'s changes from PostgreSQL: give its URL with --pg', 'pg')
  if (allWriters === true && options.fromVersion !== undefined) throw new InvalidOptionsError('--from is one writer\'s version: with --all-writers, continue after a change with --resume and its token', 'fromVersion')
  if (count === 0) return ExitCode.CLEAN
  if (allWriters === true && pg !== undefined) {
    const backend = new PgBackend({ connectionString: pg, writerId: WATCHER_ID, ...(schema !== undefined ? { schema } : {}) })
    await backend.openToWatch()
    const { namespace, prefix } = options
    const feed = backend.watch({ ...(namespace !== undefined ? { namespace } : {}), ...(prefix !== undefined ? { prefix } : {}), ...(resumeToken !== undefined ? { resumeToken } : {}) })
    try {
      return await printChanges(feed, count, out, signals, () => void backend.close())
    } finally {
      await backend.close()
    }
  }
  const stop = new AbortController()
  return printChanges(followLog({ dir, ...options, signal: stop.signal }), count, out, signals, () => stop.abort())
}

/** Prints each change until `count` of them, the end of `changes`, or SIGINT / SIGTERM (which calls `stop`, ending `changes`). */
async function printChanges(changes: AsyncIterable<Change & { readonly writer?: string }>, count: number | undefined, out: Output, signals: NodeJS.EventEmitter, stop: () => void): Promise<number> {
  signals.once('SIGINT', stop)
  signals.once('SIGTERM', stop)
  try {
    let n = 0
    for await (const c of changes) {
      if (out.json) out.jsonLine(c)
      else out.line(describeChange(c))
      if (count !== undefined && ++n >= count) break
    }
    return ExitCode.CLEAN
  } finally {
    signals.off('SIGINT', stop)
    signals.off('SIGTERM', stop)
  }
}

function describeEntry(e: Entry): string {
  const meta = [`version ${e.version}`, `updated ${new Date(e.updatedAt).toISOString()}`]
  if (e.tags.length > 0) meta.push(`tags ${e.tags.join(',')}`)
  if (e.expiresAt !== undefined) meta.push(`expires ${new Date(e.expiresAt).toISOString()}`)
  return `${e.namespace}/${e.key} = ${displayValue(e.value)}  (${meta.join(', ')})`
}

function describeChange(c: Change & { readonly writer?: string }): string {
  const at = `${c.writer !== undefined ? `${c.writer} ` : ''}${c.version} ${new Date(c.time).toISOString()}`
  const id = `${c.namespace ?? '*'}/${c.key}`
  return c.type === 'put' ? `${at} put ${id} = ${displayValue(c.value)}` : `${at} delete ${id}`
}
