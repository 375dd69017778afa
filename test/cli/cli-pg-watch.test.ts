/**
 * `memwal watch <dir> --all-writers --pg URL --schema S` against the
 * PostgreSQL at MEMWAL_PG_URL (skipped, said so, where it does not answer;
 * a failure under CI):
 * - two writers (two MemWALs sharing a schema) put and delete; the command,
 *   given the resume token taken before they wrote, prints every change of
 *   both, each once, each naming its writer, one JSON line each; each
 *   writer's in LSN order;
 * - given the token of the third change it printed, it prints the rest;
 * - it leaves the schema as it was (it only reads: a schema with no memwal
 *   tables is refused, not created);
 * - usage: --all-writers without --pg, --from with --all-writers, --pg
 *   without --all-writers exit 16.
 */
import t from 'tap'
import pg from 'pg'
import { MemWAL, PgBackend } from '../../engine/index.js'
import { oneJson, runCli } from '../support/cli-run.js'
import { dropSchema, PG_URL, requirePg, testSchemaName } from '../support/pg.js'
import { tmpDir } from '../support/tmp-dir.js'

interface Printed {
  readonly writer: string
  readonly version: number
  readonly type: string
  readonly namespace: string
  readonly key: string
  readonly value?: unknown
  readonly resumeToken: string
}

const lines = (stdout: string): Printed[] => stdout.trimEnd().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Printed)

if (await requirePg(t)) {
  const schema = testSchemaName('cliwatch')
  t.teardown(() => dropSchema(schema))

  t.test('every writer\'s changes, each once, from a resume token; then from a change\'s token', async (t) => {
    const open = async (writerId: string): Promise<MemWAL> => {
      const db = await MemWAL.open({ dir: tmpDir(t, `memwal-cliwatch-${writerId}-`), backend: new PgBackend({ connectionString: PG_URL, writerId, schema }) })
      t.teardown(() => db.close())
      return db
    }
    const a = await open('a')
    const b = await open('b')
    const watcher = new PgBackend({ connectionString: PG_URL, writerId: 'token', schema })
    await watcher.openToWatch()
    const token = await watcher.resumeTokenNow()
    await watcher.close()
    await a.put('k1', { n: 1 }, { namespace: 'ns' })
    await b.put('k2', 'two', { namespace: 'ns' })
    await a.put('k3', 3, { namespace: 'other' })
    await b.delete('k2', { namespace: 'ns' })
    await a.put('k1', { n: 2 }, { namespace: 'ns' })
    await a.flush({ timeoutMs: 20_000 })
    await b.flush({ timeoutMs: 20_000 })
    const dir = tmpDir(t, 'memwal-cliwatch-dir-')
    await (await MemWAL.open({ dir })).close() // the watching writer's own data directory

    const r = await runCli(['watch', dir, '--all-writers', '--pg', PG_URL, '--schema', schema, '--resume', token, '--count', '5', '--json'])
    t.equal(r.code, 0, r.stderr)
    const got = lines(r.stdout)
    const id = (c: Printed): string => `${c.writer}:${c.type} ${c.namespace}/${c.key}`
    t.strictSame(got.map(id).sort(), ['a:put ns/k1', 'a:put ns/k1', 'a:put other/k3', 'b:delete ns/k2', 'b:put ns/k2'], 'every change of both writers, each once')
    const ofA = got.filter((c) => c.writer === 'a')
    t.strictSame(ofA.map((c) => c.version), [...ofA.map((c) => c.version)].sort((x, y) => x - y), 'one writer\'s changes in LSN order')
    t.strictSame(ofA.filter((c) => c.key === 'k1').map((c) => c.value), [{ n: 1 }, { n: 2 }], 'with their values')

    const rest = await runCli(['watch', dir, '--all-writers', '--pg', PG_URL, '--schema', schema, '--resume', (got[2] as Printed).resumeToken, '--count', '2', '--json'])
    t.equal(rest.code, 0, rest.stderr)
    t.strictSame(lines(rest.stdout).map(id), got.slice(3).map(id), 'from the third change\'s token: the two after it')

    const text = await runCli(['watch', dir, '--all-writers', '--pg', PG_URL, '--schema', schema, '--resume', token, '--count', '1'])
    t.match(text.stdout, /^[ab] \d+ \S+ (put|delete) /, 'without --json: one line naming the writer and the version')
  })

  t.test('a schema without memwal tables is refused and not created; usage errors', async (t) => {
    const dir = tmpDir(t, 'memwal-cliwatch-dir-')
    await (await MemWAL.open({ dir })).close()
    const missing = testSchemaName('cliwatchnone')
    const r = await runCli(['watch', dir, '--all-writers', '--pg', PG_URL, '--schema', missing, '--count', '1', '--json'])
    t.equal(r.code, 16, 'INVALID_OPTIONS: a usage error')
    t.match(oneJson(r), { error: { code: 'INVALID_OPTIONS', message: /holds no memwal tables/ } })
    const c = new pg.Client({ connectionString: PG_URL })
    await c.connect()
    try {
      const s = await c.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [missing])
      t.equal(s.rowCount, 0, 'the schema was not created')
    } finally {
      await c.end()
    }
    for (const args of [['--all-writers'], ['--all-writers', '--pg', PG_URL, '--from', '3'], ['--pg', PG_URL]]) {
      const u = await runCli(['watch', dir, ...args, '--count', '1'])
      t.equal(u.code, 16, `${args.join(' ')}: a usage error (${u.stderr.trim()})`)
    }
  })
}
