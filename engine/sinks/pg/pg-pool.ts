import { Socket } from 'node:net'
import pg from 'pg'
import type { PoolConfig, QueryResultRow } from 'pg'
import { assert } from '../../assert.js'
import { MemwalError } from '../../errors.js'
import { systemClock } from '../../io/clock.js'
import type { PgConfig } from './pg-options.js'

/** The client's own read timeout, past the server's statement timeout. */
const CLIENT_TIMEOUT_MARGIN_MS = 1_000
/** close() waits this long for the pool to end gracefully, then destroys the sockets. */
const CLOSE_GRACE_MS = 2_000

/**
 * A connection as memwal uses it: statements. (No type of @types/pg in what
 * this module exports: memwal's declarations must type-check for a consumer
 * without @types/pg, a devDependency.)
 */
export interface PgClient {
  query<R extends object>(sql: string, params?: readonly unknown[]): Promise<{ readonly rows: R[] }>
}

/** A connection outside the pool (PgConnections.dedicated): its statements, and its end. */
export interface DedicatedClient extends PgClient {
  /** Closes the connection (a transaction still open is rolled back by the server); never rejects. */
  end(): Promise<void>
}

/**
 * A PgBackend's connections: one pg.Pool, started at open and ended at
 * close, whose sockets are memwal's own so that close can destroy them when
 * the network swallows the goodbye. A connection that broke, or whose call
 * was aborted, is destroyed rather than returned to the pool.
 */
export class PgConnections {
  private pool: pg.Pool | undefined
  private readonly sockets = new Set<Socket>()

  constructor(private readonly c: PgConfig) {}

  /** Whether the pool is there: from start() to end(). */
  get started(): boolean {
    return this.pool !== undefined
  }

  /** Creates the pool (connections are made on first use). */
  start(): void {
    assert(this.pool === undefined, 'a PgBackend is opened once (close it before opening it again)')
    const pool = new pg.Pool({ ...this.connectionConfig(), max: this.c.poolSize })
    // An idle connection that breaks (server restart, network cut) is dropped by the pool; the next call makes a new one.
    pool.on('error', (err) => this.c.logger.warn({ err, writer: this.c.writerId }, 'PostgreSQL connection lost (idle)'))
    this.pool = pool
  }

  /**
   * A connection of its own, outside the pool, for a transaction held open
   * as long as its reader reads (an export's snapshot): held in the pool, a
   * slow reader would take a connection the applier and reads need. Made
   * with the pool's settings (so idle_in_transaction_session_timeout ends a
   * transaction its reader left); its socket is destroyed by end() like the
   * pool's. The caller ends it.
   */
  async dedicated(): Promise<DedicatedClient> {
    this.requirePool()
    const client = new pg.Client(this.connectionConfig())
    // A connection that breaks emits 'error' as well as failing the statement in progress (which the reader sees).
    client.on('error', (err) => this.c.logger.warn({ err, writer: this.c.writerId }, 'PostgreSQL connection lost (dedicated)'))
    try {
      await client.connect()
    } catch (err) {
      await client.end().catch(() => undefined)
      throw err
    }
    return {
      query: <R extends object>(sql: string, params?: readonly unknown[]) => client.query<R & QueryResultRow>(sql, params as unknown[]),
      end: () => client.end().catch(() => undefined),
    }
  }

  /** What every connection is made with, pooled or dedicated. */
  private connectionConfig(): PoolConfig {
    return {
      ...(this.c.pgConfig as PoolConfig),
      connectionString: this.c.connectionString,
      connectionTimeoutMillis: this.c.connectTimeoutMs,
      statement_timeout: this.c.statementTimeoutMs,
      query_timeout: this.c.statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
      idle_in_transaction_session_timeout: 2 * this.c.statementTimeoutMs,
      application_name: `memwal:${this.c.writerId}`.slice(0, 63),
      keepAlive: true,
      stream: () => this.track(new Socket()),
    }
  }

  /** One statement on any pooled connection. */
  query<R extends object>(sql: string, params?: readonly unknown[]): Promise<{ readonly rows: R[] }> {
    return this.requirePool().query<R & QueryResultRow>(sql, params as unknown[])
  }

  /** Runs `fn` on one pooled connection (a transaction, or a call that `signal` may abort). */
  async withClient<T>(signal: AbortSignal | undefined, fn: (c: PgClient) => Promise<T>): Promise<T> {
    const client = await this.requirePool().connect()
    let released = false
    const release = (err?: Error): void => {
      if (released) return
      released = true
      client.release(err)
    }
    // A checked-out connection that breaks emits 'error' on the client as well as failing the query.
    const onError = (err: Error): void => this.c.logger.warn({ err, writer: this.c.writerId }, 'PostgreSQL connection lost')
    client.on('error', onError)
    const onAbort = (): void => release(new Error('apply aborted (timeout)'))
    if (signal?.aborted) onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      if (released) throw new MemwalError('SINK_TIMEOUT', 'the apply was aborted before it started', { transient: true })
      return await fn({ query: <R extends object>(sql: string, params?: readonly unknown[]) => client.query<R & QueryResultRow>(sql, params as unknown[]) })
    } catch (err) {
      release(isConnectionLevel(err) ? (err as Error) : undefined)
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
      client.off('error', onError)
      release()
    }
  }

  /** Ends the pool; sockets still open after a grace period (a network that swallows the goodbye) are destroyed. */
  async end(): Promise<void> {
    const pool = this.pool
    this.pool = undefined
    if (!pool) return
    let cancel: (() => void) | undefined
    const grace = new Promise<void>((resolve) => (cancel = systemClock.setTimer(CLOSE_GRACE_MS, resolve)))
    await Promise.race([pool.end().catch(() => undefined), grace])
    cancel?.()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }

  private requirePool(): pg.Pool {
    if (!this.pool) throw new MemwalError('ENGINE_CLOSED', 'the PostgreSQL backend is not open')
    return this.pool
  }

  private track(s: Socket): Socket {
    this.sockets.add(s)
    s.once('close', () => this.sockets.delete(s))
    return s
  }
}

/** The SQLSTATE of an error the server sent (pg's DatabaseError carries a severity), or undefined. */
export function sqlState(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const e = err as { code?: unknown; severity?: unknown }
  const fromServer = err instanceof pg.DatabaseError || typeof e.severity === 'string'
  return fromServer && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined
}

/** An error after which the connection cannot be trusted: anything but a server's answer to a statement. */
function isConnectionLevel(err: unknown): boolean {
  if (err === undefined) return false
  const code = sqlState(err)
  return code === undefined || code.startsWith('08') || code.startsWith('57')
}
