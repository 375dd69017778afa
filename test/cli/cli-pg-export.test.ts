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
    const r = await runCli(['export', dir, ...args, '--out', path.join(dir, 'x'), '--json'])
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
