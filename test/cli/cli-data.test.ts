/**
 * The data commands, run as a user runs them:
 * - `memwal get` prints an entry with its metadata, values in the CLI's JSON
 *   encoding (a Date, bytes, a bigint, a Map read as what they are); a key
 *   with no entry exits 4; beside a process holding the store: LOCK_HELD;
 * - `memwal query` filters by namespace, tag and prefix, in identity order;
 *   takes the query language as flags, prints the next page's cursor, --count;
 * - `memwal watch` runs beside the process writing the store (no lock): with
 *   --from it prints the history then what is written while it runs, one
 *   JSON object per line, each version once, in order; --count stops it;
 * - `memwal top <url>` shows a running engine from its health endpoint, with
 *   rates between looks; a directory is a usage error, a dead endpoint exit 8;
 * - `memwal backup` and `memwal restore` round-trip a store; restoring over
 *   one is refused.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { MemWAL } from '../../engine/index.js'
import { CLI_ENTRY, childEnv, holdDir, oneJson, REPO_DIR, runCli } from '../support/cli-run.js'
import { tmpDir } from '../support/tmp-dir.js'

async function store(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = path.join(tmpDir(t), 'data')
  const db = await MemWAL.open({ dir })
  await db.put('note/1', { when: new Date('2026-05-06T07:08:09.010Z'), raw: new Uint8Array([1, 2, 255]), big: 2n ** 70n, m: new Map([['a', 1]]) }, { namespace: 'agent-1', tags: ['todo'] })
  await db.put('note/2', 'plain', { namespace: 'agent-1' })
  await db.put('other', 3, { namespace: 'agent-1', tags: ['todo'] })
  await db.put('note/3', 'elsewhere', { namespace: 'agent-2', tags: ['todo'] })
  await db.close()
  return dir
}

t.test('memwal get: the entry, values as what they are; none exits 4; a held store is LOCK_HELD', async (t) => {
  const dir = await store(t)
  const r = await runCli(['get', dir, 'note/1', '--namespace', 'agent-1', '--json'])
  t.equal(r.code, 0, r.stderr)
  const doc = oneJson<{ found: boolean; entry: Record<string, unknown> }>(r)
  t.equal(doc.found, true)
  t.match(doc.entry, { namespace: 'agent-1', key: 'note/1', tags: ['todo'], version: 1 })
  t.strictSame(doc.entry.value, { when: { $date: '2026-05-06T07:08:09.010Z' }, raw: { $bytes: Buffer.from([1, 2, 255]).toString('base64') }, big: { $bigint: (2n ** 70n).toString() }, m: { $map: [['a', 1]] } }, 'each type in its own form, none shown as another')
  const text = await runCli(['get', dir, 'note/2', '--namespace', 'agent-1'])
  t.match(text.stdout, /^agent-1\/note\/2 = "plain" {2}\(version 2, updated /, 'a readable line')
  const none = await runCli(['get', dir, 'note/2'])
  t.equal(none.code, 4, 'no entry (the default namespace has none): exit 4')
  t.match(none.stdout, /default\/note\/2: not found/)
  const holder = await holdDir(dir)
  try {
    const held = await runCli(['get', dir, 'note/2', '--namespace', 'agent-1', '--json'])
    t.equal(held.code, 8)
    t.match(oneJson(held), { error: { code: 'LOCK_HELD' } }, 'beside a running process: LOCK_HELD, never a read of a store in flux')
  } finally {
    await holder.release()
  }
})

t.test('memwal query: filters by namespace, tag and prefix, in identity order', async (t) => {
  const dir = await store(t)
  const keys = async (args: string[]): Promise<string[]> => {
    const r = await runCli(['query', dir, ...args, '--json'])
    t.equal(r.code, 0, r.stderr)
    return oneJson<{ entries: { namespace: string; key: string }[] }>(r).entries.map((e) => `${e.namespace}/${e.key}`)
  }
  t.strictSame(await keys([]), ['agent-1/note/1', 'agent-1/note/2', 'agent-1/other', 'agent-2/note/3'])
  t.strictSame(await keys(['--tag', 'todo', '--prefix', 'note/']), ['agent-1/note/1', 'agent-2/note/3'])
  t.strictSame(await keys(['--namespace', 'agent-1', '--tag', 'todo']), ['agent-1/note/1', 'agent-1/other'])
  t.strictSame(await keys(['--limit', '1']), ['agent-1/note/1'])
  t.equal((await runCli(['query', dir, '--color', 'red'])).code, 16, 'an unknown flag is a usage error')
})

t.test('memwal query: the query language as flags, pages through --cursor, --count', async (t) => {
  const dir = await store(t)
  const json = async <T,>(args: string[]): Promise<T> => {
    const r = await runCli(['query', dir, ...args, '--json'])
    t.equal(r.code, 0, r.stderr)
    return oneJson<T>(r)
  }
  type Page = { entries: { namespace: string; key: string }[]; cursor?: string }
  const ids = (p: Page): string[] => p.entries.map((e) => `${e.namespace}/${e.key}`)
  t.strictSame(ids(await json<Page>(['--namespace-prefix', 'agent-1', '--tag', 'todo', '--reverse'])), ['agent-1/other', 'agent-1/note/1'], 'namespace prefix, tags, reverse')
  t.strictSame(ids(await json<Page>(['--any-tag', 'todo', '--any-tag', 'none', '--gte', 'note/2'])), ['agent-1/other', 'agent-2/note/3'], 'any tag, a key range')
  t.strictSame(ids(await json<Page>(['--since', '2000-01-01T00:00:00Z', '--until', String(Date.now() + 60_000), '--namespace', 'agent-2'])), ['agent-2/note/3'], 'a write-time range (ISO and ms)')
  const first = await json<Page>(['--tag', 'todo', '--limit', '2'])
  t.strictSame(ids(first), ['agent-1/note/1', 'agent-1/other'])
  t.type(first.cursor, 'string', 'more follow: the page carries the cursor')
  const second = await json<Page>(['--tag', 'todo', '--limit', '2', '--cursor', first.cursor as string])
  t.strictSame(ids(second), ['agent-2/note/3'], 'the cursor continues the same query')
  t.equal(second.cursor, undefined, 'the last page has none')
  const text = await runCli(['query', dir, '--tag', 'todo', '--limit', '1'])
  t.match(text.stdout, /next page: --cursor \S+/, 'the text form prints the next cursor')
  t.strictSame(await json<{ count: number }>(['--tag', 'todo', '--count']), { count: 3 }, '--count')
  const other = await runCli(['query', dir, '--namespace', 'agent-1', '--cursor', first.cursor as string, '--json'])
  t.equal(other.code, 16, 'a cursor of another query is refused: a usage error')
  t.match(oneJson(other), { error: { code: 'QUERY_INVALID_CURSOR' } })
  t.equal((await runCli(['query', dir, '--since', 'yesterday'])).code, 16, 'a time that is no time is a usage error')
})

t.test('memwal watch: beside the writer, the history from --from and then the live writes, each once, in order', async (t) => {
  const dir = await store(t)
  const db = await MemWAL.open({ dir }) // the writer holds the lock the whole time
  t.teardown(() => db.close())
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI_ENTRY, 'watch', dir, '--from', '2', '--count', '12', '--json'], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const ended = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)))
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000)
  // The history (versions 3 and 4) is there already; ten more are written while it runs.
  for (let i = 0; i < 10; i++) {
    await db.put(`live-${i}`, { i }, { namespace: i % 2 === 0 ? 'even' : 'odd' })
    await new Promise((r) => setTimeout(r, 20))
  }
  const code = await ended
  clearTimeout(timer)
  t.equal(code, 0, stderr)
  const changes = stdout.trim().split('\n').map((l) => JSON.parse(l) as { version: number; key: string; namespace: string; value: unknown; type: string })
  t.strictSame(changes.map((c) => c.version), Array.from({ length: 12 }, (_, i) => 3 + i), 'versions 3..14, each once, in order')
  t.strictSame(changes.slice(0, 2).map((c) => `${c.namespace}/${c.key}`), ['agent-1/other', 'agent-2/note/3'], 'the history first')
  t.strictSame(changes[2], { type: 'put', key: 'live-0', version: 5, time: changes[2]?.['time' as 'version'], namespace: 'even', value: { i: 0 } }, 'then what the writer wrote while it ran')
  const filtered = await runCli(['watch', dir, '--from', '0', '--namespace', 'odd', '--count', '5', '--json'])
  t.strictSame(filtered.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { key: string }).key), ['live-1', 'live-3', 'live-5', 'live-7', 'live-9'], '--namespace')
  t.equal((await runCli(['watch', dir, '--from', '-1'])).code, 16, 'a negative version is a usage error')
})

t.test('memwal backup and memwal restore: a copy that reads back; a non-empty target refused', async (t) => {
  const dir = await store(t)
  const root = path.dirname(dir)
  const b = await runCli(['backup', dir, path.join(root, 'bk'), '--json'])
  t.equal(b.code, 0, b.stderr)
  t.match(oneJson(b), { dir: path.join(root, 'bk'), version: 4 }, 'the backup holds every write up to version 4')
  const r = await runCli(['restore', path.join(root, 'bk'), path.join(root, 'restored')])
  t.equal(r.code, 0, r.stderr)
  const got = await runCli(['get', path.join(root, 'restored'), 'note/3', '--namespace', 'agent-2', '--json'])
  t.match(oneJson(got), { found: true, entry: { value: 'elsewhere', version: 4 } }, 'the restored store reads back')
  const again = await runCli(['restore', path.join(root, 'bk'), dir, '--json'])
  t.equal(again.code, 8)
  t.match(oneJson(again), { error: { code: 'TARGET_NOT_EMPTY' } }, 'restoring over a store is refused')
})

t.test('memwal top: a live view from the health endpoint of the running engine, with rates between looks', async (t) => {
  const dir = await store(t)
  const db = await MemWAL.open({ dir, metricsPort: 0 })
  t.teardown(() => db.close())
  const address = db.metricsAddress
  if (!address) throw new Error('no endpoint')
  const url = `http://${address.host}:${address.port}`
  let writing = true
  const writer = (async () => {
    for (let i = 0; writing; i++) await db.put(`top-${i}`, i)
  })()
  const r = await runCli(['top', url, '--count', '3', '--interval', '300', '--json'])
  writing = false
  await writer
  t.equal(r.code, 0, r.stderr)
  const looks = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { state: string; lastLsn: number; writesPerSec?: number; sinks: { name: string; checkpoint: number }[] })
  t.equal(looks.length, 3, 'one line per look')
  t.equal(looks[0]?.state, 'open')
  t.equal(looks[0]?.writesPerSec, undefined, 'no rate at the first look')
  t.ok((looks[2]?.lastLsn ?? 0) > (looks[0]?.lastLsn ?? 0), 'the last LSN moves with the writer')
  t.ok((looks[2]?.writesPerSec ?? 0) > 0, `a write rate from the looks before (${looks[2]?.writesPerSec})`)
  t.ok(['backend', 'index'].every((n) => looks[0]?.sinks.some((s) => s.name === n)), 'the backend and the index are shown')
  t.equal((await runCli(['top', dir])).code, 16, 'a directory instead of a URL is a usage error')
  await db.close()
  const gone = await runCli(['top', url, '--count', '1'])
  t.equal(gone.code, 8, 'no process serving it: an operational error')
  t.match(gone.stderr, /no answer from .*metricsPort/)
})
