import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import { MemwalError, osError, ownerGone, ownerTag, splitOwnerTag, type ExportStream } from '../../engine/index.js'
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
  /** A file to write (through `<file>.partial-<host>-<pid>-<8 hex>`, renamed once whole and synced); stdout when absent. */
  readonly out?: string
}

/**
 * `memwal export <dir> [--namespace NS] [--format ndjson|msgpack] [--out FILE] [--pg URL --writer-id ID [--schema S]]`.
 * A PostgreSQL-backed store's export is its tables' rows (every writer's) with this writer's pending writes over them.
 */
export async function exportStore(dir: string, o: ExportCommandOptions, out: Output, stdout: NodeJS.WritableStream = process.stdout, signals: NodeJS.EventEmitter = process): Promise<number> {
  const db = await openStore(dir, o, { existing: true, lockHint: { command: 'export', api: 'db.export()' } })
  try {
    const stream = db.export({ ...(o.namespace !== undefined ? { namespace: o.namespace } : {}), ...(o.format !== undefined ? { format: o.format } : {}) })
    let bytes = 0
    if (o.out === undefined) {
      if (out.json) throw new MemwalError('INVALID_OPTIONS', 'memwal export --json needs --out FILE: without it, stdout is the export', { details: { field: 'json' } })
      for await (const chunk of stream) {
        bytes += chunk.length
        if (!stdout.write(chunk)) await once(stdout, 'drain')
      }
    } else {
      bytes = await exportToFile(stream, o.out, signals)
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
 * Writes `stream` to `file` so that the file is whole or absent, even after
 * a crash, and returns the bytes written. It goes to
 * `<file>.partial-<owner tag>-<8 hex>` (partialName),
 * created with 'wx' (a file or symlink already there is refused, never
 * followed: a link planted at a name a user can guess overwrote its target
 * with 'w', and kept the target's mode), mode 0600; written through the
 * file handle's promises (each chunk whole before the next is read), so that a write failure (ENOSPC, EFBIG, EIO) rejects here,
 * whenever it comes: a write stream's failure while the loop was not
 * waiting for 'drain' was an 'error' event with no listener, and the
 * process died with a stack. The export's snapshot is closed. Then the file is
 * fsynced, renamed to `file`, and the directory fsynced: an export reported
 * written survives a crash. Any failure removes the partial file and is
 * IO_ERROR (PERMISSION_DENIED for a permission) with its errno; so does
 * SIGINT or SIGTERM (EXPORT_INTERRUPTED, exit 8), even while the stream
 * waits. A process killed outright (SIGKILL, a power loss) cannot remove
 * its partial file: the next export to the same file removes those whose
 * writer is gone (removeStalePartials).
 */
async function exportToFile(stream: ExportStream, file: string, signals: NodeJS.EventEmitter): Promise<number> {
  await removeStalePartials(file)
  const partial = partialName(file, randomBytes(4).toString('hex'))
  const doing = `write the export to ${file}`
  const interrupt = interruption(signals, file)
  try {
    return await writeThenRename(stream, file, partial, doing, interrupt.signalled)
  } finally {
    interrupt.dispose()
  }
}

async function writeThenRename(stream: ExportStream, file: string, partial: string, doing: string, signalled: Promise<never>): Promise<number> {
  let handle: fs.promises.FileHandle
  try {
    handle = await fs.promises.open(partial, 'wx', 0o600)
  } catch (err) {
    await stream.return?.(undefined)
    throw osError(err, doing, partial)
  }
  let bytes = 0
  try {
    try {
      for (;;) {
        // A signal ends the export even while the stream waits (a backend that does not answer).
        const next = await Promise.race([stream.next(), signalled])
        if (next.done === true) break
        const chunk = next.value
        // A write may take part of the chunk (a signal, a file size limit): the rest is written, or its failure met.
        for (let at = 0; at < chunk.length; ) at += (await handle.write(chunk, at, chunk.length - at)).bytesWritten
        bytes += chunk.length
      }
      await handle.sync()
    } finally {
      await handle.close()
    }
    await fs.promises.rename(partial, file)
  } catch (err) {
    // The partial file first: closing the stream may wait for the read a signal cut short.
    await fs.promises.rm(partial, { force: true })
    await stream.return?.(undefined) // closes the snapshot if the writer stopped before the stream's end
    throw osError(err, doing, partial)
  }
  // After the rename: the name is in the directory only once the directory is synced.
  try {
    const dir = await fs.promises.open(path.dirname(path.resolve(file)), 'r')
    await dir.sync().finally(() => dir.close())
  } catch (err) {
    throw osError(err, `sync the directory of ${file}`, path.dirname(path.resolve(file)))
  }
  return bytes
}

/**
 * The partial file of an export to `file` by this process:
 * `<file>.partial-<owner tag>-<hex>` (the engine's ownerTag: host, PID and
 * the process's start time, as the store's private copies are named), so
 * that a later export can tell which partial files are this host's and
 * whose writer is gone.
 */
function partialName(file: string, hex: string): string {
  return `${file}.partial-${ownerTag()}-${hex}`
}

/**
 * Removes the partial files of earlier exports to `file` that no process
 * writes any more: this host's (another host's PIDs mean nothing here)
 * whose owner is gone (ownerGone: its PID gone, or now another process's,
 * as a container's PID 1 is after a restart). A partial file of a live
 * process is left. Files of other names (an older memwal's
 * `<file>.partial-<hex>` or `<file>.partial-<host>-<pid>-<hex>`, anything
 * else) are not touched.
 */
async function removeStalePartials(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file))
  const prefix = `${path.basename(file)}.partial-`
  let names: string[]
  try {
    names = await fs.promises.readdir(dir)
  } catch {
    return // The open of the partial file says what is wrong with the directory.
  }
  for (const name of names) {
    const owned = name.startsWith(prefix) ? splitOwnerTag(name.slice(prefix.length)) : undefined
    if (owned === undefined || !/^[0-9a-f]{8}$/.test(owned.rest) || !ownerGone(owned.tag)) continue
    await fs.promises.rm(path.join(dir, name), { force: true })
  }
}

/** SIGINT and SIGTERM, while an export is written, as a rejection (EXPORT_INTERRUPTED) that ends it. */
function interruption(signals: NodeJS.EventEmitter, file: string): { readonly signalled: Promise<never>; dispose(): void } {
  let fail: (err: Error) => void = () => undefined
  const signalled = new Promise<never>((_resolve, reject) => (fail = reject))
  // Only raced while the export runs: unhandled otherwise.
  signalled.catch(() => undefined)
  const on = (signal: string) => (): void => fail(new MemwalError('EXPORT_INTERRUPTED', `the export to ${file} was interrupted by ${signal}: no file written (its partial file removed)`, { details: { signal } }))
  const onInt = on('SIGINT')
  const onTerm = on('SIGTERM')
  signals.once('SIGINT', onInt)
  signals.once('SIGTERM', onTerm)
  return {
    signalled,
    dispose: () => {
      signals.off('SIGINT', onInt)
      signals.off('SIGTERM', onTerm)
    },
  }
}

/**
 * `memwal import <dir> <file> [--batch-ops N] [--pg URL --writer-id ID [--schema S]]`: `-` reads stdin. Progress on
 * a terminal (stderr). A missing or empty directory becomes a new store (with the backend the flags ask for).
 */
export async function importStore(dir: string, file: string, o: { readonly batchOps?: number } & PgFlags, out: Output, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  // Opened first: a missing, unreadable or directory source must not leave a new, empty data directory behind.
  const input = file === '-' ? undefined : await openSource(file)
  let db: Awaited<ReturnType<typeof openStore>>
  try {
    db = await openStore(dir, o, { existing: false, lockHint: { command: 'import', api: 'db.import()' } })
  } catch (err) {
    await input?.handle.close()
    throw err
  }
  const size = input?.size ?? 0
  const source = input === undefined ? stdin : input.handle.createReadStream()
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

/**
 * The export file to import, opened for reading, and its size: refused
 * before the store is opened or created (IO_ERROR with errno, or
 * PERMISSION_DENIED) when it is missing, unreadable or a directory (which
 * opens for reading on Linux and fails only at the first read, EISDIR).
 */
async function openSource(file: string): Promise<{ readonly handle: fs.promises.FileHandle; readonly size: number }> {
  let handle: fs.promises.FileHandle
  try {
    handle = await fs.promises.open(file, 'r')
  } catch (err) {
    throw osError(err, `read the export ${file}`, file)
  }
  try {
    const st = await handle.stat()
    if (st.isDirectory()) throw new MemwalError('IO_ERROR', `cannot read the export ${file}: it is a directory, not an export file`, { details: { path: file, errno: 'EISDIR' } })
    return { handle, size: st.size }
  } catch (err) {
    await handle.close()
    throw osError(err, `read the export ${file}`, file)
  }
}
