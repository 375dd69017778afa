import { once } from 'node:events'
import fs from 'node:fs'
import { MemwalError } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { openStore } from '../open-store.js'
import type { Output } from '../output.js'
import type { PgFlags } from '../pg-options.js'

/**
 * `memwal export` and `memwal import`: db.export and db.import from the
 * shell. Both open the store, so they need its lock: beside a process that
 * has it open they stop with LOCK_HELD, and that process exports with
 * db.export() (the snapshot is read through the engine that holds it).
 * Both open a PostgreSQL-backed store with its PgBackend when given
 * --pg and --writer-id (pg-options.ts); without them such a store is
 * refused with BACKEND_MISMATCH (the directory records its backend), and
 * the CLI's message names the options to add (backend-hint.ts).
 */

export interface ExportCommandOptions extends PgFlags {
  readonly namespace?: string
  readonly format?: 'ndjson' | 'msgpack'
  /** A file to write (through `<file>.partial`, renamed once whole); stdout when absent. */
  readonly out?: string
}

/**
 * `memwal export <dir> [--namespace NS] [--format ndjson|msgpack] [--out FILE] [--pg URL --writer-id ID [--schema S]]`.
 * A PostgreSQL-backed store's export is its tables' rows (every writer's) with this writer's pending writes over them.
 */
export async function exportStore(dir: string, o: ExportCommandOptions, out: Output, stdout: NodeJS.WritableStream = process.stdout): Promise<number> {
  const db = await openStore(dir, o, { existing: true, lockHint: { command: 'export', api: 'db.export()' } })
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

/**
 * `memwal import <dir> <file> [--batch-ops N] [--pg URL --writer-id ID [--schema S]]`: `-` reads stdin. Progress on
 * a terminal (stderr). A missing or empty directory becomes a new store (with the backend the flags ask for).
 */
export async function importStore(dir: string, file: string, o: { readonly batchOps?: number } & PgFlags, out: Output, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  // Read first: a missing file must not leave a new, empty data directory behind.
  const size = file === '-' ? 0 : (await fs.promises.stat(file)).size
  const db = await openStore(dir, o, { existing: false, lockHint: { command: 'import', api: 'db.import()' } })
  const source = file === '-' ? stdin : fs.createReadStream(file)
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
