/**
 * claude-flow's own SqlJsBackend and SQLiteBackend (@claude-flow/memory
 * 3.0.0-alpha.25, copied byte for byte into vendor/claude-flow-memory/: see
 * its README for why it is not installed), loaded only when a benchmark or
 * the differential test asks for them. SqlJsBackend's wasm comes from the
 * sql.js devDependency: its default `locateFile` would fetch it from
 * sql.js.org, and nothing here may download. SQLiteBackend loads
 * better-sqlite3 (a devDependency) itself.
 */
import { createRequire } from 'node:module'
import type { IMemoryBackend } from '../../adapters/claude-flow/index.js'

/** SqlJsBackend's configuration (the fields it reads; the rest of its defaults stand). */
export interface SqlJsBackendConfig {
  /** ':memory:' (its default), or a file it reads at initialize and rewrites, whole, at persist() and shutdown(). */
  readonly databasePath?: string
  /** ms between its whole-file rewrites; 0: never on a timer. Its default is 5,000. */
  readonly autoPersistInterval?: number
}

export interface SqlJsBackend extends IMemoryBackend {
  /** Writes the whole database to databasePath (writeFileSync, no fsync). */
  persist(): Promise<void>
}

/** SQLiteBackend: better-sqlite3 on `databasePath`, journal_mode=WAL and, by its default, synchronous=NORMAL. */
export interface SqliteBackend extends IMemoryBackend {
  /** Its better-sqlite3 Database, once initialized. */
  readonly db: { pragma(statement: string): unknown } | null
}

// Both paths are resolved from this file: bench/peers/ in the sources (tsx) and dist/bench/peers/ once built sit two levels under the root.
const VENDORED = new URL('../../vendor/claude-flow-memory/sqljs-backend.js', import.meta.url).href
const VENDORED_SQLITE = new URL('../../vendor/claude-flow-memory/sqlite-backend.js', import.meta.url).href

/** A new, not yet initialized SqlJsBackend. Throws ERR_MODULE_NOT_FOUND when sql.js (a devDependency) is not installed. */
export async function newSqlJsBackend(config: SqlJsBackendConfig = {}): Promise<SqlJsBackend> {
  const wasmPath = createRequire(import.meta.url).resolve('sql.js/dist/sql-wasm.wasm')
  const mod = (await import(VENDORED)) as { SqlJsBackend: new (c: SqlJsBackendConfig & { wasmPath: string }) => SqlJsBackend }
  return new mod.SqlJsBackend({ ...config, wasmPath })
}

/** A new, not yet initialized SQLiteBackend on `databasePath`. */
export async function newSqliteBackend(databasePath: string): Promise<SqliteBackend> {
  const mod = (await import(VENDORED_SQLITE)) as { SQLiteBackend: new (c: { databasePath: string }) => SqliteBackend }
  return new mod.SQLiteBackend({ databasePath })
}
