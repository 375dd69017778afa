/**
 * `memwal status` on a PostgreSQL-backed store tells the truth (against the
 * real PostgreSQL, skipped as the other PG tests are when it is down):
 * - it shows the backend the directory records (postgres, its writer id and
 *   schema; leveldb for a LevelDB-backed one), in text and --json;
 * - without --pg it shows no backend checkpoint, backlog or fsck verdict of
 *   the local LevelDB store (which that backend never writes: "backend 0",
 *   a backlog of every record and "verified clean" were shown before), and
 *   names the flags that read them;
 * - with --pg URL --writer-id ID [--schema S] it shows the writer's
 *   checkpoint as PostgreSQL holds it and the backlog from it: 0 once
 *   applied, the records a blackholed connection kept out otherwise;
 * - the log of such a store is still checked (a flipped bit is reported),
 *   whether its LSN reached the backend said only when its checkpoint is read;
 * - it writes nothing to PostgreSQL: a schema no writer made stays unmade
 *   (INVALID_OPTIONS), and the checkpoint row is as it was.
 */
import fs from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { TcpProxy } from '../../bench/tcp-proxy.js'
import { MemWAL, PgBackend } from '../../engine/index.js'
import { copyFixture, oneJson, runCli } from '../support/cli-run.js'
import { dropSchema, PG_URL, pgTarget, requirePg, testSchemaName, viaPort } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'

/** Applies that give up quickly while the proxy swallows everything, and a close that does not wait long for them. */
/** applyTimeoutMs above the backends' statementTimeoutMs (800) + 1 s, as PgBackend requires. */
const fastResilience = { retryDelayMsMin: 5, retryDelayMsMax: 200, breakerThreshold: 3, breakerHalfOpenMs: 200, applyTimeoutMs: 2500 }
const fastBackend = { statementTimeoutMs: 800, connectTimeoutMs: 500 } as const

interface StatusDoc {
  backend: unknown
  lastLsn: number
  checkpoints?: { backend?: number; index?: number }
  backlogRecords?: number
  verified: { skipped?: string; clean?: boolean }
  logVerified?: { skipped?: string; clean?: boolean; findings?: string[] }
  needs?: string
}

async function pgClient(t: { teardown(fn: () => Promise<void>): void }): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: PG_URL })
  client.on('error', () => undefined)
  await client.connect()
  t.teardown(() => client.end())
  return client
}

t.test('a LevelDB-backed store: status shows leveldb, its checkpoints, backlog and dry-run fsck as before', async (t) => {
  const dir = path.join(tmpDir(t), 'l')
  const db = await MemWAL.open({ dir })
  await db.put('k', 1)
  await db.flush()
  await db.close()
  const doc = oneJson<StatusDoc>(await runCli(['status', dir, '--json']))
  t.strictSame(doc.backend, { kind: 'leveldb' })
  t.match(doc, { lastLsn: 1, checkpoints: { backend: 1, index: 1 }, backlogRecords: 0, verified: { clean: true } })
  t.notOk('logVerified' in doc, 'no separate log check: the dry-run fsck covers the log')
  t.notOk('needs' in doc)
  const text = await runCli(['status', dir])
  t.equal(text.code, 0, text.stderr)
  t.match(text.stdout, /backend\s+leveldb \(the local store\)/)
  t.match(text.stdout, /checkpoints\s+backend 1, index 1/)
  t.match(text.stdout, /verified\s+clean \(a dry-run fsck\)/)
  const flagged = await runCli(['status', dir, '--pg', PG_URL, '--writer-id', 'w', '--json'])
  t.equal(flagged.code, 16, 'with --pg: usage (16)')
  t.match(oneJson(flagged), { error: { code: 'BACKEND_MISMATCH', message: /It is a LevelDB-backed store: drop --pg, --writer-id and --schema/ } })
})

t.test('a PostgreSQL-backed store: no LevelDB checkpoint, backlog or fsck verdict without --pg; the writer\'s checkpoint and backlog with it', async (t) => {
  if (!(await requirePg(t))) return
  const schema = testSchemaName('clistatus')
  t.teardown(() => dropSchema(schema))
  const client = await pgClient(t)
  const checkpointOf = async (): Promise<number> =>
    Number((await client.query<{ lsn: string }>(`SELECT lsn FROM "${schema}".checkpoints WHERE writer = 'w'`)).rows[0]?.lsn ?? -1)

  const proxy = await TcpProxy.start(pgTarget())
  t.teardown(() => proxy.close())
  const dir = path.join(tmpDir(t), 'w')
  const db = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: viaPort(proxy.port), writerId: 'w', schema, ...fastBackend }), resilience: fastResilience, closeGraceMs: 500 })
  await db.put('applied', 1)
  await db.flush({ timeoutMs: 20_000 })
  t.equal(await checkpointOf(), 1, 'the record is applied in PostgreSQL')

  // The store as the earlier helper found it: every record applied, the local store's backend checkpoint 0.
  await db.close()
  const flags = ['--pg', PG_URL, '--writer-id', 'w', '--schema', schema]
  const bare = await runCli(['status', dir])
  t.equal(bare.code, 0, bare.stderr)
  t.match(bare.stdout, new RegExp(`backend\\s+postgres \\(writer id w, schema ${schema}\\)`), 'shows the recorded backend')
  t.notMatch(bare.stdout, /backend 0/, 'no LevelDB backend checkpoint shown as the store\'s')
  t.notMatch(bare.stdout, /records not yet applied/, 'no backlog from it')
  t.notMatch(bare.stdout, /verified\s+clean/, 'no LevelDB fsck verdict')
  t.match(bare.stdout, new RegExp(`checkpoints\\s+backend: in PostgreSQL \\(add --pg URL --writer-id w --schema ${schema}\\), index 1`))
  t.match(bare.stdout, new RegExp(`backlog\\s+not known without the backend's checkpoint: add --pg URL --writer-id w --schema ${schema}`))
  t.match(bare.stdout, /log\s+clean \(its frames checked; no sink compared\)/, 'the log is checked')
  t.match(bare.stdout, /verified\s+not run: memwal fsck checks LevelDB-backed stores only/, 'and says fsck is LevelDB-only')
  const bareDoc = oneJson<StatusDoc>(await runCli(['status', dir, '--json']))
  t.strictSame(bareDoc.backend, { kind: 'postgres', writerId: 'w', schema, dirId: (bareDoc.backend as { dirId?: string } | undefined)?.dirId })
  t.match(bareDoc.backend, { dirId: /^[0-9a-f]{32}$/ }, 'with the directory\'s id')
  t.strictSame(bareDoc.checkpoints, { index: 1 }, '--json: no backend checkpoint')
  t.notOk('backlogRecords' in bareDoc, '--json: no backlog')
  t.match(bareDoc, { lastLsn: 1, verified: { skipped: /LevelDB-backed stores only/ }, logVerified: { clean: true }, needs: `--pg URL --writer-id w --schema ${schema}` })

  const withFlags = oneJson<StatusDoc>(await runCli(['status', dir, ...flags, '--json']))
  t.match(withFlags, { checkpoints: { backend: 1, index: 1 }, backlogRecords: 0, verified: { skipped: /LevelDB-backed stores only/ }, logVerified: { clean: true } }, 'with the flags: PostgreSQL\'s checkpoint, backlog 0')
  t.notOk('needs' in withFlags)
  const text = await runCli(['status', dir, ...flags])
  t.equal(text.code, 0, text.stderr)
  t.match(text.stdout, /checkpoints\s+backend 1 \(as PostgreSQL holds it\), index 1/)
  t.match(text.stdout, /backlog\s+0 records not yet applied everywhere/)
  t.notMatch(text.stdout, /verified\s+clean/)

  // A backlog: three records written while the connection was swallowed, the index applying them locally.
  const again = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: viaPort(proxy.port), writerId: 'w', schema, ...fastBackend }), resilience: fastResilience, closeGraceMs: 500 })
  proxy.blackhole()
  for (const k of ['a', 'b', 'c']) await again.put(k, k)
  const lastLsn = again.health().wal.lastLsn
  await again.close()
  proxy.heal()
  t.equal(lastLsn, 4)
  t.equal(await checkpointOf(), 1, 'PostgreSQL still holds the writer at LSN 1')
  const behind = oneJson<StatusDoc>(await runCli(['status', dir, ...flags, '--json']))
  t.match(behind, { lastLsn: 4, checkpoints: { backend: 1 }, backlogRecords: 3 }, 'the backlog is the three records PostgreSQL lacks')
  const behindText = await runCli(['status', dir, ...flags])
  t.match(behindText.stdout, /backlog\s+3 records not yet applied everywhere/)
  t.equal(await checkpointOf(), 1, 'status wrote nothing: the checkpoint row is as it was')

  const wrongWriter = await runCli(['status', dir, '--pg', PG_URL, '--writer-id', 'x', '--schema', schema, '--json'])
  t.equal(wrongWriter.code, 16, 'another writer id: usage (16)')
  t.match(oneJson(wrongWriter), { error: { code: 'BACKEND_MISMATCH', message: `Give the writer id and schema it was written with: --pg URL --writer-id w --schema ${schema}` } })
})

t.test('status reads PostgreSQL only: a schema no writer made is INVALID_OPTIONS, and stays unmade', async (t) => {
  if (!(await requirePg(t))) return
  const schema = testSchemaName('clistatusnone')
  t.teardown(() => dropSchema(schema))
  const client = await pgClient(t)
  // A store recorded with that schema, whose tables were dropped since (a misspelt schema reads the same).
  const dir = path.join(tmpDir(t), 'w')
  const db = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'w', schema }) })
  await db.put('k', 1)
  await db.flush({ timeoutMs: 20_000 })
  await db.close()
  await dropSchema(schema)
  const r = await runCli(['status', dir, '--pg', PG_URL, '--writer-id', 'w', '--schema', schema, '--json'])
  t.equal(r.code, 16, r.stderr)
  t.match(oneJson(r), { error: { code: 'INVALID_OPTIONS', message: /holds no memwal tables/ } })
  const made = await client.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema])
  t.equal(made.rows.length, 0, 'no schema created: status does not migrate')
})

t.test('a PostgreSQL-backed store\'s damaged log: reported by the log check; whether it was lost, only with the backend\'s checkpoint', async (t) => {
  // The LevelDB fixture with a flipped bit at LSN 461, recorded as a PostgreSQL writer's directory.
  const schema = testSchemaName('clistatuslog')
  const dir = copyFixture(t, 'bitflip-payload')
  fs.writeFileSync(path.join(dir, 'BACKEND'), `${JSON.stringify({ kind: 'postgres', writerId: 'w', schema })}\n`)
  const bare = oneJson<StatusDoc>(await runCli(['status', dir, '--json']))
  t.match(bare, { lastLsn: 480, verified: { skipped: /LevelDB-backed stores only/ }, logVerified: { clean: false, counts: { 'corrupt-frame': 1 } } })
  t.match(bare.logVerified?.findings, [/^corrupt-frame 00000000000000000441\.seg@6512 LSN 461: /], 'the finding, where it is')
  t.notMatch(bare.logVerified?.findings?.[0], /in the backend/, 'not said whether the backend had it: its checkpoint was not read')
  const text = await runCli(['status', dir])
  t.match(text.stdout, /log\s+DAMAGED: corrupt-frame 1 \(memwal dump to read it\)/)
  t.notMatch(text.stdout, /verified\s+(clean|DAMAGED)/, 'no fsck verdict')

  if (!(await requirePg(t))) return
  t.teardown(() => dropSchema(schema))
  // The schema made by another writer: this one has no checkpoint row, so PostgreSQL holds none of its records.
  const other = await MemWAL.open({ dir: tmpDir(t), backend: new PgBackend({ connectionString: PG_URL, writerId: 'other', schema }) })
  await other.close()
  const flagged = oneJson<StatusDoc>(await runCli(['status', dir, '--pg', PG_URL, '--writer-id', 'w', '--schema', schema, '--json']))
  t.match(flagged, { checkpoints: { backend: 0, index: 480 }, backlogRecords: 480, logVerified: { clean: false } })
  t.match(flagged.logVerified?.findings?.[0], /LSN 461: .*\(NOT in the backend: lost\)$/, 'with the checkpoint: LSN 461 never reached PostgreSQL')
})
