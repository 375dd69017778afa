/**
 * `memwal export <dir> --pg URL --writer-id ID --schema S` against the real
 * PostgreSQL (skipped as the other PG tests are when it is down):
 * - the store opened with its PgBackend exports the tables' rows, every
 *   writer's (not only what this directory's log holds), at this writer's
 *   version; the file imports into a new LevelDB store with every entry
 *   equal with its type;
 * - usage: --pg without --writer-id, --writer-id or --schema without --pg.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { MemWAL, PgBackend } from '../../engine/index.js'
import { oneJson, runCli } from '../support/cli-run.js'
import { all, sameEntries } from '../support/export-entries.js'
import { dropSchema, PG_URL, requirePg, testSchemaName } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'

t.test('usage: --pg needs --writer-id; --writer-id and --schema need --pg', async (t) => {
  const dir = tmpDir(t)
  for (const args of [['--pg', PG_URL], ['--writer-id', 'a'], ['--schema', 's']]) {
    // Without MEMWAL_PG_URL, which stands for --pg (and .ci/run sets for the PostgreSQL tests).
    const r = await runCli(['export', dir, ...args, '--out', path.join(dir, 'x'), '--json'], { env: { MEMWAL_PG_URL: undefined } })
    t.equal(r.code, 16, `${args.join(' ')}: usage (16)`)
    t.match(oneJson(r), { error: { code: 'INVALID_OPTIONS' } })
  }
})

t.test('a PostgreSQL-backed store: every writer\'s rows, at this writer\'s version; imports equal with types', async (t) => {
  if (!(await requirePg(t))) return
  const schema = testSchemaName('cliexport')
  t.teardown(() => dropSchema(schema))
  const open = (dir: string, writerId: string): Promise<MemWAL> => MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId, schema }) })
  const dirA = tmpDir(t)
  const a = await open(dirA, 'a')
  await a.put('date', new Date(7), { namespace: 'ns', tags: ['x'] })
  const { lsn } = await a.put('big', 2n ** 70n, { namespace: 'ns' })
  await a.close()
  const b = await open(tmpDir(t), 'b')
  await b.put('map', new Map([[1, new Set(['b'])]]), { namespace: 'ns' })
  await b.flush({ timeoutMs: 10_000 })
  await b.close()
  const work = tmpDir(t)
  const file = path.join(work, 'pg.msgpack')
  const r = await runCli(['export', dirA, '--pg', PG_URL, '--writer-id', 'a', '--schema', schema, '--format', 'msgpack', '--out', file, '--json'])
  t.equal(r.code, 0, r.stderr)
  t.match(oneJson(r), { version: lsn, entries: 3, format: 'msgpack', file })
  const again = await open(dirA, 'a')
  const want = await all(again)
  await again.close()
  const into = await MemWAL.open({ dir: path.join(work, 'into') })
  t.teardown(() => into.close())
  await into.import([await fs.promises.readFile(file)])
  sameEntries(t, await all(into), want, 'imported')
  t.strictSame(want.map((e) => e.key), ['big', 'date', 'map'], 'the other writer\'s row is in it')
})

t.test('a PostgreSQL-backed directory read without --pg (or a LevelDB one with it): BACKEND_MISMATCH, exit 16, the message says which option to add', async (t) => {
  if (!(await requirePg(t))) return
  const schema = testSchemaName('clikind')
  t.teardown(() => dropSchema(schema))
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir, backend: new PgBackend({ connectionString: PG_URL, writerId: 'a', schema }) })
  await db.put('k', 'v')
  await db.close()
  const before = fs.readdirSync(dir, { recursive: true }).sort()
  const out = path.join(tmpDir(t), 'x.ndjson')
  const exp = await runCli(['export', dir, '--out', out])
  t.equal(exp.code, 16, 'export without --pg: usage (16)')
  t.match(exp.stderr, `[BACKEND_MISMATCH]`)
  t.match(exp.stderr, `Add --pg URL --writer-id a --schema ${schema}`, 'names the options to add, with the recorded writer and schema')
  t.notOk(fs.existsSync(out), 'no export written')
  const wrongWriter = await runCli(['export', dir, '--pg', PG_URL, '--writer-id', 'b', '--schema', schema, '--out', out, '--json'])
  t.equal(wrongWriter.code, 16)
  t.match(oneJson(wrongWriter), { error: { code: 'BACKEND_MISMATCH', message: /Give the writer id and schema it was written with: --pg URL --writer-id a/ } })
  // The other commands that open a store take the same flags (cli-pg-open.test.ts); fsck does not, and says so.
  for (const args of [['get', dir, 'k'], ['replay', dir]]) {
    const r = await runCli([...args, '--json'])
    t.equal(r.code, 16, `${args[0]}: usage (16)`)
    t.match(oneJson(r), { error: { code: 'BACKEND_MISMATCH', message: `Add --pg URL --writer-id a --schema ${schema}` } }, `${args[0]}: names the options to add`)
  }
  const fsck = await runCli(['fsck', dir, '--json'])
  t.equal(fsck.code, 16, 'fsck: usage (16)')
  t.match(oneJson(fsck), { error: { code: 'BACKEND_MISMATCH', message: /memwal fsck checks LevelDB-backed stores only/ } }, 'fsck: says it cannot check it')
  t.strictSame(fs.readdirSync(dir, { recursive: true }).sort(), before, 'no file added to the directory (no LevelDB backend store made)')

  const level = tmpDir(t)
  await (await MemWAL.open({ dir: level })).close()
  const r = await runCli(['export', level, '--pg', PG_URL, '--writer-id', 'a', '--schema', schema, '--json'])
  t.equal(r.code, 16)
  t.match(oneJson(r), { error: { code: 'BACKEND_MISMATCH', message: /drop --pg, --writer-id and --schema/ } })
})
