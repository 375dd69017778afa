import { once } from 'node:events'
import fs from 'node:fs'
import { checkDataDir, InvalidOptionsError, isMemwalError, MemWAL, MemwalError, PgBackend } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import type { Output } from '../output.js'

/**
 * `memwal export` and `memwal import`: db.export and db.import from the
 * shell. Both open the store, so they need its lock: beside a process that
 * has it open they stop with LOCK_HELD, and that process exports with
 * db.export() (the snapshot is read through the engine that holds it).
 * Export opens a PostgreSQL-backed store with its PgBackend when given
 * --pg and --writer-id; without them such a store is refused with
 * BACKEND_MISMATCH (the directory records its backend), and the CLI's
 * message names the options to add (backend-hint.ts).
 */

export interface ExportCommandOptions {
  readonly namespace?: string
  readonly format?: 'ndjson' | 'msgpack'
  /** A file to write (through `<file>.partial`, renamed once whole); stdout when absent. */
  readonly out?: string
  /**
   * The store's backend is PostgreSQL at this URL: the store is opened with
   * a PgBackend (its `writerId`, its `schema`), so the export is its rows
   * (every writer's) with this writer's pending writes over them. They must
   * be those the directory records (BACKEND_MISMATCH otherwise).
   */
  readonly pg?: string
  readonly writerId?: string
  readonly schema?: string
}

/** `memwal export <dir> [--namespace NS] [--format ndjson|msgpack] [--out FILE] [--pg URL --writer-id ID [--schema S]]`. */
export async function exportStore(dir: string, o: ExportCommandOptions, out: Output, stdout: NodeJS.WritableStream = process.stdout): Promise<number> {
  const backend = pgBackendOf(o)
  await checkDataDir(dir)
  const db = await openLocked(dir, 'export', 'db.export()', backend)
  try {
    const stream = db.export({ ...(o.namespace !== undefined ? { namespace: o.namespace } : {}), ...(o.format !== undefined ? { format: o.format } : {}) })
    let bytes = 0
    const into = async (sink: NodeJS.WritableStream): Promise<void> => {
      for await (const chunk of stream) {
        bytes += chunk.length
        if (!sink.write(chunk)) await once(sink, 'drain')
      }
    }
    if (o.out === undefined) {
      if (out.json) throw new MemwalError('INVALID_OPTIONS', 'memwal export --json needs --out FILE: without it, stdout is the export', { details: { field: 'json' } })
      await into(stdout)
    } else {
      const partial = `${o.out}.partial`
      const file = fs.createWriteStream(partial, { flags: 'w', mode: 0o600 })
      try {
        await into(file)
        file.end()
        await once(file, 'finish')
        const fd = await fs.promises.open(partial, 'r+')
        await fd.sync().finally(() => fd.close())
        await fs.promises.rename(partial, o.out)
      } catch (err) {
        file.destroy()
        await fs.promises.rm(partial, { force: true })
        throw err
      }
    }
    const summary = { version: stream.version, entries: stream.entries, bytes, format: o.format ?? 'ndjson', ...(o.out !== undefined ? { file: o.out } : {}) }
    if (out.json) out.document(summary)
    else out.note(`exported ${summary.entries} entries of ${dir} as of version ${summary.version} (${bytes} bytes, ${summary.format})${o.out !== undefined ? ` to ${o.out}` : ''}`)
    return ExitCode.CLEAN
  } finally {
    await db.close()
  }
}

/** `memwal import <dir> <file> [--batch-ops N]`: `-` reads stdin. Progress on a terminal (stderr). */
export async function importStore(dir: string, file: string, o: { readonly batchOps?: number }, out: Output, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  // Read first: a missing file must not leave a new, empty data directory behind.
  const size = file === '-' ? 0 : (await fs.promises.stat(file)).size
  const source = file === '-' ? stdin : fs.createReadStream(file)
  const db = await openLocked(dir, 'import', 'db.import()')
  const bar = out.progress(size, `import ${file === '-' ? 'stdin' : file}`)
  try {
    const r = await db.import(source as AsyncIterable<Buffer>, { ...(o.batchOps !== undefined ? { batchOps: o.batchOps } : {}), onProgress: (p) => bar.update(p.bytes) })
    bar.update(size)
    bar.stop()
    if (out.json) out.document(r)
    else out.line(`imported ${r.entries} entries into ${dir} in ${r.batches} batches${r.expired > 0 ? ` (${r.expired} expired, not written)` : ''}; the export was of version ${r.exportVersion}${r.lsn !== undefined ? `; last version written ${r.lsn}` : ''}`)
    return ExitCode.CLEAN
  } finally {
    bar.stop()
    ;(source as { destroy?: () => void }).destroy?.()
    await db.close()
  }
}

/** The PgBackend --pg asks for (with its --writer-id, and --schema if given), or none. */
function pgBackendOf(o: ExportCommandOptions): PgBackend | undefined {
  if (o.pg === undefined) {
    if (o.writerId !== undefined || o.schema !== undefined) throw new InvalidOptionsError('--writer-id and --schema go with --pg', 'pg')
    return undefined
  }
  if (o.writerId === undefined) throw new InvalidOptionsError('--pg opens the store with its PostgreSQL backend: give the writer id it was opened with, --writer-id', 'writerId')
  return new PgBackend({ connectionString: o.pg, writerId: o.writerId, ...(o.schema !== undefined ? { schema: o.schema } : {}) })
}

async function openLocked(dir: string, command: string, api: string, backend?: PgBackend): Promise<MemWAL> {
  try {
    return await MemWAL.open(backend === undefined ? { dir } : { dir, backend })
  } catch (err) {
    if (isMemwalError(err) && err.code === 'LOCK_HELD') {
      throw new MemwalError('LOCK_HELD', `${err.message}: memwal ${command} opens the store and needs its lock; from the process that holds it, call ${api}`, { cause: err, details: err.details })
    }
    throw err
  }
}
