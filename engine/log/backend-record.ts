import { posix as path } from 'node:path'
import { MemwalError, osError } from '../errors.js'
import { replaceFile } from '../io/file-ops.js'
import type { FileSystem } from '../io/fs.js'

/**
 * Which backend a data directory's writer applies its records into, recorded
 * beside the marker in `<dir>/BACKEND` so that a store is never opened with
 * another one: a PostgreSQL-backed directory opened without its PgBackend
 * would otherwise answer from a fresh local LevelDB store holding only what
 * this writer's log still has (a partial export, wrong query answers, no
 * error), and the reverse is as wrong.
 *
 * The file is one line of JSON, one of:
 *   {"kind":"leveldb"}
 *   {"kind":"postgres","writerId":"w1","schema":"memwal","dirId":"<32 hex digits>"}
 *   {"kind":"custom","name":"<the sink's name>"}
 * Never a URL or a credential: which server is a deployment's concern, which
 * writer and schema are the store's identity.
 *
 * `dirId` (PostgreSQL only) is this directory's own random id, made when the
 * record is first written (or added to a record from before it): PgBackend
 * keeps it in its writer's checkpoint row, so that a second directory opened
 * with a writer id already in use is refused (WRITER_IN_USE) instead of both
 * applying under one id and losing records. A copy of the directory put back
 * holds the record, so it opens as the same directory.
 *
 * It is written like the marker (replaceFile: temp synced, renamed, directory
 * synced): a crash leaves no record (at most `BACKEND.tmp`, which counts for
 * nothing and the next write replaces) or a whole one.
 */
export type BackendKind =
  | { readonly kind: 'leveldb' }
  | { readonly kind: 'postgres'; readonly writerId: string; readonly schema: string; readonly dirId?: string }
  | { readonly kind: 'custom'; readonly name: string }

export const BACKEND_RECORD_NAME = 'BACKEND'

/** The record in `dir`, or undefined when there is none (a directory from before records, or a crash before its rename). */
export async function readBackendRecord(fs: FileSystem, dir: string): Promise<BackendKind | undefined> {
  const file = path.join(dir, BACKEND_RECORD_NAME)
  const st = await fs.stat(file).catch((cause: unknown) => {
    throw osError(cause, `read the backend record ${file}`, file)
  })
  if (!st) return undefined
  let v: unknown
  try {
    v = JSON.parse(Buffer.from(await fs.readFile(file)).toString('utf8'))
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== undefined) throw osError(cause, `read the backend record ${file}`, file)
    throw notARecord(file, cause)
  }
  const kind = asBackendKind(v)
  if (kind === undefined) throw notARecord(file)
  return kind
}

/** Writes the record durably (see the header). */
export async function writeBackendRecord(fs: FileSystem, dir: string, kind: BackendKind): Promise<void> {
  const file = path.join(dir, BACKEND_RECORD_NAME)
  try {
    await replaceFile(fs, file, Buffer.from(`${JSON.stringify(kind)}\n`))
  } catch (cause) {
    throw osError(cause, `write the backend record ${file}`, dir)
  }
}

/**
 * Removes the record durably (unlinked, the directory synced): for an open
 * that wrote it and whose backend then refused the directory
 * (engine/backend-claim.ts). A crash before the sync may leave it.
 */
export async function removeBackendRecord(fs: FileSystem, dir: string): Promise<void> {
  const file = path.join(dir, BACKEND_RECORD_NAME)
  try {
    if (await fs.stat(file)) await fs.unlink(file)
    await fs.syncDir(dir)
  } catch (cause) {
    throw osError(cause, `remove the backend record ${file}`, dir)
  }
}

/** Whether two kinds name the same backend (for PostgreSQL: the same writer in the same schema; the directory's id is not the backend's). */
export function sameBackend(a: BackendKind, b: BackendKind): boolean {
  switch (a.kind) {
    case 'leveldb':
      return b.kind === 'leveldb'
    case 'postgres':
      return b.kind === 'postgres' && a.writerId === b.writerId && a.schema === b.schema
    case 'custom':
      return b.kind === 'custom' && a.name === b.name
    default: {
      const never: never = a
      return never
    }
  }
}

/** One phrase for a kind, as messages name it. */
export function describeBackend(k: BackendKind): string {
  switch (k.kind) {
    case 'leveldb':
      return 'the LevelDB backend (the default)'
    case 'postgres':
      return `PgBackend (writerId ${JSON.stringify(k.writerId)}, schema ${JSON.stringify(k.schema)})`
    case 'custom':
      return `a backend of its own named ${JSON.stringify(k.name)}`
    default: {
      const never: never = k
      return never
    }
  }
}

/**
 * BACKEND_MISMATCH: `dir` was written with `recorded` (undefined: no record,
 * but its store shows no LevelDB backend ever applied a record there) and is
 * being opened with `given`. details: path, recorded, given.
 */
export function backendMismatch(dir: string, recorded: BackendKind | undefined, given: BackendKind): MemwalError {
  const was = recorded === undefined
    ? 'has no backend record, and its local store shows records applied with no LevelDB backend checkpoint: it was written with another backend (PgBackend or one of its own)'
    : `was written with ${describeBackend(recorded)}`
  return new MemwalError('BACKEND_MISMATCH', `${dir} ${was}; it is being opened with ${describeBackend(given)}: open it with the backend it was written with (nothing was applied or recorded)`, {
    details: { path: dir, recorded: recorded ?? null, given },
  })
}

/** Refuses `given` for a directory whose record names another backend. */
export function checkBackendRecord(dir: string, recorded: BackendKind | undefined, given: BackendKind): void {
  if (recorded !== undefined && !sameBackend(recorded, given)) throw backendMismatch(dir, recorded, given)
}

function asBackendKind(v: unknown): BackendKind | undefined {
  if (typeof v !== 'object' || v === null) return undefined
  const o = v as Record<string, unknown>
  if (o['kind'] === 'leveldb') return { kind: 'leveldb' }
  if (o['kind'] === 'postgres' && typeof o['writerId'] === 'string' && typeof o['schema'] === 'string') {
    return { kind: 'postgres', writerId: o['writerId'], schema: o['schema'], ...(typeof o['dirId'] === 'string' ? { dirId: o['dirId'] } : {}) }
  }
  if (o['kind'] === 'custom' && typeof o['name'] === 'string') return { kind: 'custom', name: o['name'] }
  return undefined
}

function notARecord(file: string, cause?: unknown): MemwalError {
  return new MemwalError('IO_ERROR', `${file} is not a memwal backend record: it is replaced atomically, so something else wrote it; move it aside to go on`, {
    ...(cause !== undefined ? { cause } : {}),
    details: { file },
  })
}
