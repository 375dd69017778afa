/**
 * The frameworks are optional peers: in a project that has memwal but not
 * LangGraph, `import 'memwal'` works and `import 'memwal/langgraph'` fails
 * with one typed error that names what to install. The project is laid out
 * for real in a temporary directory: node_modules/memwal is a copy of this
 * package (sources run through tsx, with the package's exports pointed at
 * them) and every other installed package except @langchain/* is linked in.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { tmpDir } from '../support/tmp-dir.js'
import { childEnv } from '../support/child-env.js'

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const MISSING = new Set(['@langchain'])

function project(t: Parameters<typeof tmpDir>[0] & { ok(v: unknown, msg: string): void }): string {
  const root = tmpDir(t, 'memwal-peers-')
  const modules = path.join(root, 'node_modules')
  fs.mkdirSync(modules)
  for (const name of fs.readdirSync(path.join(REPO_DIR, 'node_modules'))) {
    if (MISSING.has(name) || name.startsWith('.')) continue
    fs.symlinkSync(path.join(REPO_DIR, 'node_modules', name), path.join(modules, name))
  }
  const pkg = path.join(modules, 'memwal')
  for (const dir of ['engine', 'adapters']) fs.cpSync(path.join(REPO_DIR, dir), path.join(pkg, dir), { recursive: true })
  const manifest = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as { exports: Record<string, unknown> }
  t.ok(manifest.exports['./langgraph'], 'the package exports memwal/langgraph')
  const exports = { '.': './engine/index.ts', './langgraph': './adapters/langgraph/index.ts' }
  fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ ...manifest, exports, main: undefined, types: undefined }))
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }))
  return root
}

function run(cwd: string, code: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd, env: childEnv(), encoding: 'utf8' })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('memwal loads without LangGraph; memwal/langgraph says what to install', async (t) => {
  const root = project(t)
  const base = run(root, "const m = await import('memwal'); console.log(typeof m.MemWAL.open)")
  t.equal(base.stdout.trim(), 'function', `import 'memwal' works without the frameworks ${base.stderr}`)
  const adapter = run(root, "try { await import('memwal/langgraph'); console.log('loaded') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }")
  const err = JSON.parse(adapter.stdout.trim() || '{}') as { code?: string; message?: string }
  t.equal(err.code, 'ADAPTER_PEER_MISSING', `typed error ${adapter.stderr}`)
  t.match(err.message, /npm install @langchain\/langgraph-checkpoint @langchain\/core/, 'the message names what to install')
})
