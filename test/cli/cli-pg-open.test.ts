/**
 * Every CLI command that opens a store through the engine opens a
 * PostgreSQL-backed one with `--pg URL --writer-id ID [--schema S]`
 * (cli/pg-options.ts), against the real PostgreSQL (skipped as the other PG
 * tests are when it is down):
 * - a store whose backend was cut off (a TCP proxy swallowing everything)
 *   while it was written, then closed with a backlog: `memwal replay` with
 *   the flags applies the backlog into PostgreSQL (the rows are read there),
 *   `get` and `query` with them read the tables (another writer's row too),
 *   `namespaces` and `stats` the local index (this writer's entries);
 * - `memwal import` of an export into a new PostgreSQL-backed store;
 * - without the flags each of them is BACKEND_MISMATCH (exit 16) naming the
 *   flags to add, with the recorded writer and schema; `fsck` and `backup`,
 *   which cannot take such a store, say why and what to run instead;
 * - misuse of the flags is INVALID_OPTIONS (16), before the directory is
 *   touched; `--help` of each command that takes them shows them;
 * - MEMWAL_PG_URL in the environment stands for `--pg URL` (a password kept
 *   out of `ps` and the shell's history) with --writer-id, `--pg` winning;
 *   without --writer-id it changes nothing for a LevelDB-backed store.
 */
import fs from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { TcpProxy } from '../../bench/tcp-proxy.js'
import { MemWAL, PgBackend } from '../../engine/index.js'
import { buildProgram } from '../../cli/main.js'
import { PG_COMMANDS } from '../../cli/pg-options.js'
import { oneJson, runCli } from '../support/cli-run.js'
import { dropSchema, PG_URL, pgTarget, requirePg, testSchemaName, viaPort } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'

/** Applies that give up quickly while the proxy swallows everything, and a close that does not wait long for them. */
/** applyTimeoutMs above the backends' statementTimeoutMs (800) + 1 s, as PgBackend requires. */
const fastResilience = { retryDelayMsMin: 5, retryDelayMsMax: 200, breakerThreshold: 3, breakerHalfOpenMs: 200, applyTimeoutMs: 2500 }
const fastBackend = { statementTimeoutMs: 800, connectTimeoutMs: 500 } as const

t.test('--help: the commands that open a store through the engine, and status, take --pg, --writer-id, --schema; fsck and backup do not', async (t) => {
  const program = buildProgram(() => undefined)
  const help = (name: string): string => {
    const c = program.commands.find((x) => x.name() === name)
    if (c === undefined) throw new Error(`no command ${name}`)
    return c.helpInformation()
  }
  t.strictSame([...PG_COMMANDS].sort(), ['deadletter', 'export', 'get', 'import', 'namespaces', 'query', 'replay', 'stats', 'status'])
  for (const name of PG_COMMANDS) t.match(help(name), /--pg <url>[\s\S]*--writer-id <id>[\s\S]*--schema <name>/, `${name} --help shows the three`)
  for (const name of PG_COMMANDS) t.match(help(name), /MEMWAL_PG_URL[\s\S]*\(env: MEMWAL_PG_URL\)/, `${name} --help names MEMWAL_PG_URL`)
  for (const name of ['fsck', 'backup', 'dump']) t.notMatch(help(name), /--writer-id/, `${name} takes no --writer-id`)
  t.match(help('fsck'), /LevelDB-backed stores only/, 'fsck --help says it checks LevelDB-backed stores only')
  let all = ''
  program.configureOutput({ writeOut: (s) => (all += s) })
  try {
    program.parse(['--help'], { from: 'user' })
  } catch {
    // exitOverride: help ends the parse by throwing.
  }
  t.match(all, /--pg URL --writer-id ID \[--schema S\]: replay, status, get, query, namespaces, stats, export, import, deadletter take them/, 'memwal --help lists them')
  t.match(all, /MEMWAL_PG_URL=URL in the environment stands for --pg URL/, 'and says the environment may carry the URL')
})

t.test('flag misuse: INVALID_OPTIONS (16) naming the flag, before the directory is touched', async (t) => {
  const work = tmpDir(t)
  const dir = path.join(work, 'never-made')
  const file = path.join(work, 'x.ndjson')
  fs.writeFileSync(file, '')
  const cases: [string[], RegExp][] = [
    [['replay', dir, '--pg', PG_URL], /give the writer id it was written with, --writer-id/],
    [['get', dir, 'k', '--writer-id', 'w'], /--writer-id goes with --pg URL/],
    [['query', dir, '--count', '--schema', 's'], /--schema goes with --pg URL/],
    [['namespaces', dir, '--pg', PG_URL, '--schema', 's'], /--writer-id/],
    [['stats', dir, '--writer-id', 'w', '--schema', 's'], /--writer-id goes with --pg URL/],
    [['import', dir, file, '--writer-id', 'w'], /--writer-id goes with --pg URL/],
    [['deadletter', dir, 'retry', '--all', '--pg', PG_URL], /--writer-id/],
    [['deadletter', dir, 'list', '--pg', PG_URL, '--writer-id', 'w'], /deadletter list reads the dead-letter logs without opening the store/],
  ]
  for (const [args, message] of cases) {
    // Without MEMWAL_PG_URL, which would stand for --pg where --writer-id is given.
    const r = await runCli([...args, '--json'], { env: { MEMWAL_PG_URL: undefined } })
    t.equal(r.code, 16, `${args.join(' ')}: usage (16)`)
    t.match(oneJson(r), { error: { code: 'INVALID_OPTIONS', message } }, `${args[0]}: says what is wrong`)
  }
  t.notOk(fs.existsSync(dir), 'no directory made (import makes a new store, but not on a usage error)')
})

t.test('a PostgreSQL-backed store left with a backlog: replay, get, query, namespaces, stats, import, deadletter with the flags; refused without them', async (t) => {
  if (!(await requirePg(t))) return
  const schema = testSchemaName('cliopen')
  const into = testSchemaName('cliimport')
  t.teardown(() => dropSchema(schema).then(() => dropSchema(into)))
  const client = new pg.Client({ connectionString: PG_URL })
  client.on('error', () => undefined)
  await client.connect()
  t.teardown(() => client.end())
  const rowsOf = async (s: string, writer: string): Promise<string[]> =>
    (await client.query<{ id: string }>(`SELECT namespace || '/' || key AS id FROM "${s}".entries WHERE writer = $1 AND NOT deleted ORDER BY 1`, [writer])).rows.map((r) => r.id)
  const checkpointOf = async (s: string, writer: string): Promise<number> =>
    Number((await client.query<{ lsn: string }>(`SELECT lsn FROM "${s}".checkpoints WHERE writer = $1`, [writer])).rows[0]?.lsn ?? 0)

  // Another writer's row: the reads below come from the shared tables, not from this directory's log.
  const other = await MemWAL.open({ dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId: 'other', schema }) })
  await other.put('theirs', 'o', { namespace: 'n2' })
  await other.flush({ timeoutMs: 20_000 })
  await other.close()

  const proxy = await TcpProxy.start(pgTarget())
  t.teardown(() => proxy.close())
  const dir = path.join(tmpDir(t), 'w')
  const db = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: viaPort(proxy.port), writerId: 'w', schema, ...fastBackend }), resilience: fastResilience, closeGraceMs: 500 })
  await db.put('applied', 1, { namespace: 'n1' })
  await db.flush({ timeoutMs: 20_000 })
  proxy.blackhole()
  await db.put('a', { n: 1 }, { namespace: 'n1', tags: ['t'] })
  await db.put('b', 'two', { namespace: 'n1' })
  await db.put('c', 3n, { namespace: 'n2' })
  await db.delete('applied', { namespace: 'n1' })
  const lastLsn = db.health().wal.lastLsn
  await db.close()
  proxy.heal()
  const flags = ['--pg', PG_URL, '--writer-id', 'w', '--schema', schema]
  t.strictSame(await rowsOf(schema, 'w'), ['n1/applied'], 'the backlog is not in PostgreSQL yet')
  t.ok((await checkpointOf(schema, 'w')) < lastLsn, 'and the writer\'s checkpoint is behind its log')

  for (const args of [['replay', dir], ['get', dir, 'a', '--namespace', 'n1'], ['query', dir, '--count'], ['namespaces', dir], ['stats', dir], ['deadletter', dir, 'retry', '--all']]) {
    const r = await runCli([...args, '--json'])
    t.equal(r.code, 16, `${args[0]} without the flags: usage (16)`)
    t.match(oneJson(r), { error: { code: 'BACKEND_MISMATCH', message: `Add --pg URL --writer-id w --schema ${schema}` } }, `${args[0]}: names the flags to add`)
  }

  const replayed = await runCli(['replay', dir, ...flags, '--json'])
  t.equal(replayed.code, 0, replayed.stderr)
  const doc = oneJson<{ replayed: number; checkpoints: { backend: number } }>(replayed)
  t.equal(doc.replayed, 4, 'the four records of the backlog replayed')
  t.equal(doc.checkpoints.backend, lastLsn, 'the backend\'s checkpoint is the log\'s last LSN')
  t.strictSame(await rowsOf(schema, 'w'), ['n1/a', 'n1/b', 'n2/c'], 'PostgreSQL holds the backlog, the delete applied')
  t.equal(await checkpointOf(schema, 'w'), lastLsn, 'the writer\'s checkpoint row caught up')

  const got = await runCli(['get', dir, 'c', '--namespace', 'n2', ...flags, '--json'])
  t.equal(got.code, 0, got.stderr)
  t.match(oneJson(got), { found: true, entry: { namespace: 'n2', key: 'c', value: { $bigint: '3' } } })
  const count = await runCli(['query', dir, '--count', ...flags, '--json'])
  t.equal(count.code, 0, count.stderr)
  t.strictSame(oneJson(count), { count: 4 }, 'query --count: this writer\'s three and the other writer\'s one')
  const tagged = await runCli(['query', dir, '--tag', 't', ...flags, '--json'])
  t.match(oneJson(tagged), { entries: [{ namespace: 'n1', key: 'a', value: { n: 1 } }] }, 'query filters by tag over the tables')
  // namespaces and stats count from the local index, as db.listNamespaces and db.stats do: this writer's entries (docs/postgres.md).
  const ns = await runCli(['namespaces', dir, ...flags, '--json'])
  t.equal(ns.code, 0, ns.stderr)
  t.strictSame(oneJson(ns), { namespaces: [{ namespace: 'n1', entries: 2 }, { namespace: 'n2', entries: 1 }] }, 'namespaces: this writer\'s, the delete applied')
  const st = await runCli(['stats', dir, ...flags, '--json'])
  t.equal(st.code, 0, st.stderr)
  t.match(oneJson(st), { entries: 3, namespaces: [{ namespace: 'n1', entries: 2 }, { namespace: 'n2', entries: 1 }] }, 'stats: the same')
  const dl = await runCli(['deadletter', dir, 'retry', '--all', ...flags, '--json'])
  t.equal(dl.code, 0, dl.stderr)
  t.match(oneJson(dl), { retried: [], rejectedAgain: [] }, 'deadletter retry opens it: nothing to retry')

  for (const [args, message] of [
    [['fsck', dir], /memwal fsck checks LevelDB-backed stores only[^]*memwal replay <dir> --pg URL --writer-id w[^]*PgBackend\.verifyLog/],
    [['backup', dir, path.join(tmpDir(t), 'b')], /memwal backup copies LevelDB-backed stores only/],
  ] as const) {
    const r = await runCli([...args, '--json'])
    t.equal(r.code, 16, `${args[0]}: usage (16)`)
    t.match(oneJson(r), { error: { code: 'BACKEND_MISMATCH', message } }, `${args[0]}: says it cannot take this store and what to run instead`)
  }

  // An export of it imported into a new PostgreSQL-backed store (another schema: only the import's rows are there).
  const work = tmpDir(t)
  const file = path.join(work, 'w.ndjson')
  const exported = await runCli(['export', dir, ...flags, '--out', file, '--json'])
  t.equal(exported.code, 0, exported.stderr)
  const target = path.join(work, 'imported')
  const importFlags = ['--pg', PG_URL, '--writer-id', 'imp', '--schema', into]
  const imported = await runCli(['import', target, file, ...importFlags, '--json'])
  t.equal(imported.code, 0, imported.stderr)
  t.match(oneJson(imported), { entries: 4 })
  const back = await runCli(['query', target, ...importFlags, '--json'])
  t.match(oneJson(back), { entries: [{ key: 'a', value: { n: 1 }, tags: ['t'] }, { key: 'b', value: 'two' }, { key: 'c', value: { $bigint: '3' } }, { key: 'theirs', value: 'o' }] }, 'read back with the flags')
  const again = await runCli(['import', target, file, '--json'])
  t.equal(again.code, 16, 'import into it without the flags: usage (16)')
  t.match(oneJson(again), { error: { code: 'BACKEND_MISMATCH', message: `Add --pg URL --writer-id imp --schema ${into}` } })
  const replayedImport = await runCli(['replay', target, ...importFlags, '--json'])
  t.equal(replayedImport.code, 0, replayedImport.stderr)
  t.strictSame(await rowsOf(into, 'imp'), ['n1/a', 'n1/b', 'n2/c', 'n2/theirs'], 'the import\'s rows are in PostgreSQL, written by the importing writer')
})

t.test('MEMWAL_PG_URL stands for --pg URL with --writer-id (no password in ps), --pg wins; without --writer-id a LevelDB-backed store is opened as before', async (t) => {
  if (!(await requirePg(t))) return
  const schema = testSchemaName('clienv')
  t.teardown(() => dropSchema(schema))
  const dir = path.join(tmpDir(t), 'w')
  const db = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema }) })
  await db.put('k', 'from pg', { namespace: 'n' })
  await db.flush({ timeoutMs: 20_000 })
  await db.close()
  const flags = ['--writer-id', 'w', '--schema', schema]

  const got = await runCli(['get', dir, 'k', '--namespace', 'n', ...flags, '--json'], { env: { MEMWAL_PG_URL: PG_URL } })
  t.equal(got.code, 0, got.stderr)
  t.match(oneJson(got), { found: true, entry: { namespace: 'n', key: 'k', value: 'from pg' } }, 'get with the URL from the environment')
  const st = await runCli(['status', dir, ...flags, '--json'], { env: { MEMWAL_PG_URL: PG_URL } })
  t.equal(st.code, 0, st.stderr)
  t.match(oneJson(st), { checkpoints: { backend: 1 } }, 'status reads the writer\'s checkpoint from PostgreSQL')
  const nowhere = 'postgres://nobody@127.0.0.1:1/none'
  const both = await runCli(['get', dir, 'k', '--namespace', 'n', '--pg', PG_URL, ...flags, '--json'], { env: { MEMWAL_PG_URL: nowhere } })
  t.equal(both.code, 0, both.stderr)
  t.match(oneJson(both), { found: true }, '--pg given wins over the environment')
  const noWriter = await runCli(['get', dir, 'k', '--namespace', 'n', '--json'], { env: { MEMWAL_PG_URL: PG_URL } })
  t.match(oneJson(noWriter), { error: { code: 'BACKEND_MISMATCH', message: /Add --pg URL --writer-id w/ } }, 'without --writer-id the environment is not taken: the store asks for its options')

  const level = path.join(tmpDir(t), 'level')
  const local = await MemWAL.open({ dir: level })
  await local.put('k', 'from leveldb')
  await local.close()
  for (const args of [['get', level, 'k'], ['deadletter', level, 'list']]) {
    const r = await runCli([...args, '--json'], { env: { MEMWAL_PG_URL: nowhere } })
    t.equal(r.code, 0, `${args[0]} on a LevelDB-backed store with MEMWAL_PG_URL set: as before (${r.stderr})`)
  }
})
