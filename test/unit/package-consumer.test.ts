/**
 * memwal as a package, seen from a project that installs it (issue 14 item
 * 11): a strict TypeScript consumer type-checks against the built
 * declarations with skipLibCheck off, although it has none of memwal's
 * devDependencies (@types/pg above all); and `require('memwal')` either
 * loads (Node 20.19 and later load ES modules from require) or fails with
 * Node's own "this is an ES module" error, never "no exports main defined".
 *
 * The consumer is laid out for real in a temporary directory:
 * node_modules/memwal holds this package's manifest and a fresh build of it
 * (tsc into the copy, so never a stale dist/), and node_modules holds links
 * to memwal's runtime dependencies and to @types/node and typescript, which
 * the consumer itself would install; nothing else.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { childEnv } from '../support/child-env.js'
import { REPO_DIR } from '../support/cli-run.js'
import { tmpDir } from '../support/tmp-dir.js'
import { runtimeClosure } from '../support/world-readable-cli.js'

const CONSUMER_OWN = ['@types/node', 'typescript']

const CONSUMER_SOURCE = `
import { MemWAL, PgBackend, isMemwalError, type MemwalOptions, type PgBackendOptions, type EngineHealth } from 'memwal'

const options: MemwalOptions = { dir: './memory', durability: 'sync', segmentBytes: 1024 * 1024 }
const pg: PgBackendOptions = { writerId: 'agent-1', pgConfig: { ssl: { rejectUnauthorized: false }, password: 'x' } }

export async function remember(key: string, value: unknown): Promise<number> {
  const db = await MemWAL.open({ ...options, backend: new PgBackend(pg) })
  try {
    const { lsn } = await db.put(key, value, { namespace: 'agent', tags: ['a'] })
    const h: EngineHealth = db.health()
    return h.wal.lastLsn >= lsn ? lsn : -1
  } catch (err) {
    if (isMemwalError(err)) return err.code.length
    throw err
  } finally {
    await db.close()
  }
}
`

function run(cwd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, args, { cwd, env: childEnv(), encoding: 'utf8', timeout: 300_000 })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

function consumer(t: Parameters<typeof tmpDir>[0]): string {
  const root = tmpDir(t, 'memwal-consumer-')
  const modules = path.join(root, 'node_modules')
  const pkg = path.join(modules, 'memwal')
  fs.mkdirSync(pkg, { recursive: true })
  fs.copyFileSync(path.join(REPO_DIR, 'package.json'), path.join(pkg, 'package.json'))
  for (const dep of runtimeClosure(REPO_DIR)) {
    const rel = path.relative(path.join(REPO_DIR, 'node_modules'), dep)
    fs.mkdirSync(path.dirname(path.join(modules, rel)), { recursive: true })
    fs.symlinkSync(dep, path.join(modules, rel))
  }
  for (const own of CONSUMER_OWN) {
    fs.mkdirSync(path.dirname(path.join(modules, own)), { recursive: true })
    fs.symlinkSync(path.join(REPO_DIR, 'node_modules', own), path.join(modules, own))
  }
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }))
  fs.writeFileSync(path.join(root, 'index.ts'), CONSUMER_SOURCE)
  fs.writeFileSync(
    path.join(root, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, skipLibCheck: false, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: ['node'] }, files: ['index.ts'] }),
  )
  return root
}

t.test('a strict TypeScript consumer type-checks against the declarations, without memwal devDependencies', async (t) => {
  const root = consumer(t)
  const tsc = path.join(REPO_DIR, 'node_modules', 'typescript', 'bin', 'tsc')
  const pkg = path.join(root, 'node_modules', 'memwal')
  const build = run(REPO_DIR, [tsc, '-p', 'tsconfig.json', '--outDir', path.join(pkg, 'dist')])
  t.equal(build.status, 0, `memwal builds into the consumer's node_modules ${build.out}`)
  t.ok(fs.existsSync(path.join(pkg, 'dist', 'engine', 'index.d.ts')), 'with its declarations')
  t.notOk(fs.existsSync(path.join(root, 'node_modules', '@types', 'pg')), 'the consumer has no @types/pg')

  const check = run(root, [tsc, '-p', 'tsconfig.json'])
  t.equal(check.status, 0, 'tsc --strict with skipLibCheck false passes')
  t.equal(check.out, '', 'and reports nothing')

  const required = run(root, ['-e', "const m = require('memwal'); console.log(typeof m.MemWAL.open)"])
  if (required.status === 0) t.match(required.out, /^function\n/, 'require(memwal) loads the ES module (Node 20.19 and later)')
  else t.match(required.out, /ERR_REQUIRE_ESM/, 'or Node says memwal is an ES module')
  t.notMatch(required.out, /ERR_PACKAGE_PATH_NOT_EXPORTED/, 'never "no exports main defined"')
})
