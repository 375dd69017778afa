import { InvalidOptionsError } from '../../errors.js'
import { systemClock, type Clock } from '../../io/clock.js'
import { silentLogger, type Logger } from '../../io/logger.js'
import { checkFields, refuseUnknown } from '../../option-fields.js'

export interface PgBackendOptions {
  /** postgres://user@host:port/database (default: the MEMWAL_PG_URL environment variable). */
  readonly connectionString?: string
  /** This writer's id, unique among the writers sharing the schema and bound to one data directory. */
  readonly writerId: string
  /** Schema holding the tables (default `memwal`): a lower-case SQL identifier. */
  readonly schema?: string
  /** Connections in the pool (default 4). */
  readonly poolSize?: number
  /** Server-side statement timeout (default 15 s); the client gives up on an unanswered query 1 s after it. */
  readonly statementTimeoutMs?: number
  /** How long to wait for a new connection (default 5 s). */
  readonly connectTimeoutMs?: number
  /** Rows per page when `entries` and `query` read (default 500). */
  readonly pageRows?: number
  /** Records of this writer whose changes stay in the change feed (`changes`) for watchers (default 100,000): older ones are pruned. */
  readonly changeHistoryRecords?: number
  /** How often a watch with nothing to read asks PostgreSQL again (default 200 ms). */
  readonly watchPollMs?: number
  /** Time, for the watch's polls (default: the system clock). */
  readonly clock?: Clock
  /** Further settings for pg.Pool (ssl, password, ...); the options above take precedence. */
  readonly pgConfig?: PgPoolSettings
  readonly logger?: Logger
}

/**
 * The pg.Pool settings memwal passes through, typed here rather than with
 * pg's own PoolConfig: memwal's public declarations must type-check for a
 * consumer that has not installed @types/pg (a devDependency of memwal).
 * The names and meanings are pg's.
 */
export interface PgPoolSettings {
  readonly user?: string
  readonly password?: string | (() => string | Promise<string>)
  readonly host?: string
  readonly port?: number
  readonly database?: string
  /** `true`, or Node's tls.connect options (ca, cert, key, rejectUnauthorized, ...). */
  readonly ssl?: boolean | Readonly<Record<string, unknown>>
  readonly application_name?: string
  readonly idleTimeoutMillis?: number
  readonly keepAlive?: boolean
  readonly keepAliveInitialDelayMillis?: number
}

/** A PgBackend's options resolved once: every default applied, every value checked, frozen. */
export interface PgConfig {
  readonly connectionString: string
  readonly writerId: string
  readonly schema: string
  readonly poolSize: number
  readonly statementTimeoutMs: number
  readonly connectTimeoutMs: number
  readonly pageRows: number
  readonly changeHistoryRecords: number
  readonly watchPollMs: number
  readonly clock: Clock
  readonly pgConfig: PgPoolSettings
  readonly logger: Logger
}

/** Every default, written once. */
export const pgDefaults = Object.freeze({
  schema: 'memwal',
  poolSize: 4,
  statementTimeoutMs: 15_000,
  connectTimeoutMs: 5_000,
  pageRows: 500,
  changeHistoryRecords: 100_000,
  watchPollMs: 200,
})

/** Bounds of the feed options: a poll at least every minute; a history of at most 100 M records per writer. */
const WATCH_POLL_MS_MAX = 60_000
const CHANGE_HISTORY_RECORDS_MAX = 100_000_000

const WRITER_ID_CHARS_MAX = 128

/** Every option PgBackendOptions has, with its type: a name not here is refused, never ignored (the type keeps the two in step). */
const FIELDS = {
  connectionString: 'string', writerId: 'string', schema: 'string', poolSize: 'integer', statementTimeoutMs: 'integer',
  connectTimeoutMs: 'integer', pageRows: 'integer', changeHistoryRecords: 'integer', watchPollMs: 'integer', clock: 'object',
  pgConfig: 'object', logger: 'object',
} as const satisfies Record<keyof PgBackendOptions, string>

/** Every pg.Pool setting passed through (their types are pg's to check). */
const POOL_SETTINGS = Object.freeze(Object.keys({
  user: 0, password: 0, host: 0, port: 0, database: 0, ssl: 0, application_name: 0, idleTimeoutMillis: 0, keepAlive: 0, keepAliveInitialDelayMillis: 0,
} satisfies Record<keyof PgPoolSettings, 0>))

/** Resolves a PgBackend's options, or refuses them with INVALID_OPTIONS naming the field. `env` supplies MEMWAL_PG_URL. */
export function resolvePgOptions(options: PgBackendOptions, env: Readonly<Record<string, string | undefined>> = process.env): PgConfig {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('PgBackend takes an options object')
  const o = checkFields<PgBackendOptions>('PgBackend', options, FIELDS)
  const url = o.connectionString ?? env['MEMWAL_PG_URL']
  if (typeof url !== 'string' || url.length === 0) throw new InvalidOptionsError('PgBackend needs connectionString or the MEMWAL_PG_URL environment variable', 'connectionString')
  const w = o.writerId
  if (typeof w !== 'string' || w.length === 0 || w.length > WRITER_ID_CHARS_MAX || w.includes('\u0000') || !w.isWellFormed()) {
    throw new InvalidOptionsError(`writerId must be a non-empty string of at most ${WRITER_ID_CHARS_MAX} characters, without NUL`, 'writerId')
  }
  const schema = o.schema ?? pgDefaults.schema
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new InvalidOptionsError('schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)', 'schema')
  const pgConfig = o.pgConfig ?? {}
  refuseUnknown('PgBackend pgConfig', pgConfig, POOL_SETTINGS, 'pgConfig.')
  return Object.freeze({
    connectionString: url,
    writerId: w,
    schema,
    poolSize: positiveInt('poolSize', o.poolSize ?? pgDefaults.poolSize),
    statementTimeoutMs: positiveInt('statementTimeoutMs', o.statementTimeoutMs ?? pgDefaults.statementTimeoutMs),
    connectTimeoutMs: positiveInt('connectTimeoutMs', o.connectTimeoutMs ?? pgDefaults.connectTimeoutMs),
    pageRows: positiveInt('pageRows', o.pageRows ?? pgDefaults.pageRows),
    changeHistoryRecords: atMost('changeHistoryRecords', positiveInt('changeHistoryRecords', o.changeHistoryRecords ?? pgDefaults.changeHistoryRecords), CHANGE_HISTORY_RECORDS_MAX),
    watchPollMs: atMost('watchPollMs', positiveInt('watchPollMs', o.watchPollMs ?? pgDefaults.watchPollMs), WATCH_POLL_MS_MAX),
    clock: o.clock ?? systemClock,
    pgConfig: Object.freeze({ ...pgConfig }),
    logger: o.logger ?? silentLogger,
  })
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new InvalidOptionsError(`${name} must be a positive integer`, name)
  return v
}

function atMost(name: string, v: number, max: number): number {
  if (v > max) throw new InvalidOptionsError(`${name} must be at most ${max}`, name)
  return v
}
