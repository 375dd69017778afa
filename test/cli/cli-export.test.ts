/**
 * `memwal export` and `memwal import` (issue 12 item 2):
 * - export to a file (--out, --json summary) and import into a new store:
 *   every entry equal, with its type, namespace and tags; ndjson to stdout;
 * - beside a process that holds the store, export is LOCK_HELD saying to
 *   call db.export() there;
 * - a truncated file, or one with a digit or a letter changed in a value (the
 *   line's checksum), is refused naming its line, exit 8, and the store holds
 *   the batches before it;
 * - import draws its progress on a terminal, nothing through a pipe;
 * - export --out that cannot write (a file size limit: EFBIG) is IO_ERROR
 *   naming the errno, exit 8, one line, and leaves no partial file; its
 *   partial file is created, never opened through a symlink planted at its
 *   name (the target is left as it was; the export is a file of mode 0600);
 * - import from a directory, or a file it may not read, is refused before
 *   the store is created: no new, empty data directory is left.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import t, { type Test } from 'tap'
import { MemWAL, type Entry } from '../../engine/index.js'
import { importStore } from '../../cli/commands/export.js'
import { createOutput } from '../../cli/output.js'
import { childEnv, CLI_ENTRY, oneJson, REPO_DIR, runCli, type CliResult } from '../support/cli-run.js'
import { worldReadableCli } from '../support/world-readable-cli.js'
import { tmpDir } from '../support/tmp-dir.js'
import { valueDifference } from '../support/values.js'

const VALUES: [string, unknown][] = [
  ['date', new Date('2026-05-06T07:08:09.010Z')], ['bytes', new Uint8Array([1, 2, 255])], ['buffer', Buffer.from('b')], ['big', 2n ** 70n],
  ['map', new Map<unknown, unknown>([[1, 'a'], ['1', { $date: 'looks like a tag' }]])], ['set', new Set([undefined, -0])], ['err', new RangeError('r')],
  ['sparse', [1, , 3]], ['nan', NaN], ['f32', new Float32Array([1.5])],
]

async function entries(dir: string): Promise<Entry[]> {
  const db = await MemWAL.open({ dir })
  try {
    const out: Entry[] = []
    for await (const e of db.query({ limit: 100_000 })) out.push(e)
    return out
  } finally {
    await db.close()
  }
}

async function store(t: Test): Promise<string> {
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir })
  for (const [i, [key, value]] of VALUES.entries()) await db.put(key, value, { namespace: i % 2 === 0 ? 'even' : 'odd', tags: [`t${i % 3}`] })
  await db.close()
  return dir
}

t.test('export --out then import: every entry equal with its type; ndjson on stdout', async (t) => {
  const dir = await store(t)
  const work = tmpDir(t)
  for (const format of ['ndjson', 'msgpack']) {
    const file = path.join(work, `all.${format}`)
    const r = await runCli(['export', dir, '--format', format, '--out', file, '--json'])
    t.equal(r.code, 0, r.stderr)
    t.match(oneJson(r), { version: VALUES.length, entries: VALUES.length, format, file })
    t.strictSame(fs.readdirSync(work).filter((f) => f.includes('.partial')), [], 'no partial file left')
    const into = path.join(work, `into-${format}`)
    const i = await runCli(['import', into, file, '--json', '--batch-ops', '3'])
    t.equal(i.code, 0, i.stderr)
    t.match(oneJson(i), { entries: VALUES.length, batches: 4, exportVersion: VALUES.length })
    const want = await entries(dir)
    const got = await entries(into)
    t.strictSame(got.map((e) => [e.namespace, e.key, e.tags]), want.map((e) => [e.namespace, e.key, e.tags]), `${format}: the same entries`)
    for (const [n, e] of want.entries()) t.equal(valueDifference(e.value, got[n]?.value), undefined, `${format}: ${e.key} exactly`)
  }
  const s = await runCli(['export', dir, '--namespace', 'odd'])
  t.equal(s.code, 0, s.stderr)
  const lines = s.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines[0], { memwal: 'export', format: 3, encoding: 'ndjson', version: VALUES.length, namespace: 'odd', n: 0 })
  t.strictSame(lines.slice(1, -1).map((l) => l['key']), ['big', 'bytes', 'f32', 'set', 'sparse'])
  t.match(s.stderr, /exported 5 entries .* as of version 10/)
  const bad = await runCli(['export', dir, '--format', 'csv'])
  t.equal(bad.code, 16, 'an unknown format is a usage error')
})

t.test('beside the process holding the store: LOCK_HELD, saying to export there', async (t) => {
  const dir = await store(t)
  const db = await MemWAL.open({ dir })
  t.teardown(() => db.close())
  const r = await runCli(['export', dir])
  t.equal(r.code, 8)
  t.match(r.stderr, /LOCK_HELD/)
  t.match(r.stderr, /call db\.export\(\)/)
})

/** A store's ndjson export by the CLI, in a work directory: the file and its lines. */
async function exportedFile(t: Test): Promise<{ work: string; file: string; lines: string[] }> {
  const dir = await store(t)
  const work = tmpDir(t)
  const file = path.join(work, 'all.ndjson')
  t.equal((await runCli(['export', dir, '--out', file])).code, 0)
  return { work, file, lines: fs.readFileSync(file, 'utf8').split('\n') }
}

t.test('a truncated file: refused naming the line, exit 8; the store holds the batches before it', async (t) => {
  const { work, file, lines } = await exportedFile(t)
  fs.writeFileSync(file, lines.slice(0, 8).join('\n') + '\n') // the header and 7 entries, no end record
  const into = path.join(work, 'into')
  const r = await runCli(['import', into, file, '--batch-ops', '3'])
  t.equal(r.code, 8)
  t.match(r.stderr, /line 9: the stream ends without its end record \(truncated\); the 6 entries of the 2 batches before it are written.*\[IMPORT_INVALID\]/)
  t.equal((await entries(into)).length, 6)
})

t.test('a value changed in the file (a digit, a letter): refused by its line\'s checksum, naming the line, exit 8', async (t) => {
  const { work, lines } = await exportedFile(t)
  for (const [from, to] of [['2026-05-06', '2027-05-06'], ['looks like a tag', 'looks like a tog']] as const) {
    const at = lines.findIndex((l) => l.includes(from))
    t.ok(at > 0, `an entry line holds ${from}`)
    const damaged = [...lines]
    damaged[at] = (damaged[at] as string).replace(from, to)
    const bad = path.join(work, 'bad.ndjson')
    fs.writeFileSync(bad, damaged.join('\n'))
    const into = path.join(work, `into-${at}`)
    const r = await runCli(['import', into, bad, '--batch-ops', '1'])
    t.equal(r.code, 8, `${to}: refused`)
    t.match(r.stderr, new RegExp(`line ${at + 1}: a line whose checksum does not match \\(damaged\\); the ${at - 1} entries of the ${at - 1} batches before it are written.*\\[IMPORT_INVALID\\]`))
    t.equal((await entries(into)).length, at - 1, 'every entry before the damaged line (batches of 1)')
  }
})

t.test('import: a progress bar on a terminal, none through a pipe', async (t) => {
  const dir = await store(t)
  const file = path.join(tmpDir(t), 'all.ndjson')
  t.equal((await runCli(['export', dir, '--out', file])).code, 0)
  for (const tty of [true, false]) {
    const err = new PassThrough() as unknown as NodeJS.WriteStream & PassThrough
    let text = ''
    err.on('data', (b: Buffer) => (text += b.toString('utf8')))
    Object.assign(err, { isTTY: tty, columns: 120, rows: 40, cursorTo: () => true, clearLine: () => true, moveCursor: () => true })
    const out = new PassThrough() as unknown as NodeJS.WriteStream & PassThrough
    let said = ''
    out.on('data', (b: Buffer) => (said += b.toString('utf8')))
    t.equal(await importStore(path.join(tmpDir(t), 'into'), file, { batchOps: 4 }, createOutput(false, out, err)), 0)
    if (tty) t.match(text, /import .*all\.ndjson \[.*\] 100% /, 'the bar ends at 100%')
    else t.equal(text, '', 'no bar through a pipe')
    t.match(said, /imported 10 entries into .* in 3 batches; the export was of version 10/)
  }
})

/** Files named as export's partial files in `dir`. */
function partials(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.includes('.partial'))
}

/**
 * `memwal <args...>` with a limit on the size of the files it writes
 * (RLIMIT_FSIZE, `ulimit -f` in sh's blocks of 512 or 1024 bytes): a write
 * past it fails with EFBIG, as one on a full disk fails with ENOSPC, with
 * no root needed (a full tmpfs needs a mount). SIGXFSZ, which would kill the
 * process first, is ignored by a handler loaded before the CLI.
 */
function runCliWithFileLimit(args: readonly string[], blocks: number): Promise<CliResult> {
  const node = [process.execPath, '--import', 'tsx', '--import', 'data:text/javascript,process.on("SIGXFSZ",()=>{})', CLI_ENTRY, ...args]
  const proc = spawn('sh', ['-c', `ulimit -f ${blocks} && exec "$@"`, 'sh', ...node], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  return new Promise((resolve, reject) => {
    proc.on('error', reject)
    proc.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

t.test('export --out that cannot write (EFBIG past a file size limit): IO_ERROR with its errno, exit 8, one line, no partial file left', async (t) => {
  const dir = tmpDir(t)
  const db = await MemWAL.open({ dir })
  // 310 kB of export, which LevelDB compresses to a few kB: the store opens under the limit, the export is past it.
  for (let i = 0; i < 300; i++) await db.put(`k${String(i).padStart(3, '0')}`, 'v'.repeat(1000))
  await db.close()
  const work = tmpDir(t)
  for (const json of [false, true]) {
    const file = path.join(work, 'all.ndjson')
    const r = await runCliWithFileLimit(['export', dir, '--out', file, ...(json ? ['--json'] : [])], 128)
    t.equal(r.code, 8, `exit 8: ${r.stderr}`)
    if (json) t.match(oneJson(r), { error: { code: 'IO_ERROR', message: /^cannot write the export to .*all\.ndjson: EFBIG/ }, exitCode: 8 })
    else t.match(r.stderr, /^memwal export: cannot write the export to \S*all\.ndjson: EFBIG: file too large, write \[IO_ERROR\]\n$/, 'one line naming what failed and its errno, no stack')
    t.notMatch(r.stderr, /Unhandled|\n\s+at /, 'no unhandled error, no stack')
    t.notOk(fs.existsSync(file), 'no export file')
    t.strictSame(partials(work), [], 'no partial file left')
  }
})

t.test('export --out: a symlink planted at a partial file\'s name is not followed; the export is a file of its own, mode 0600', async (t) => {
  const dir = await store(t)
  const work = tmpDir(t)
  const file = path.join(work, 'all.ndjson')
  const victim = path.join(work, 'victim.txt')
  fs.writeFileSync(victim, 'not to be overwritten\n', { mode: 0o644 })
  // The name memwal used before (a name anyone may guess), and a file already at the export's name.
  fs.symlinkSync(victim, `${file}.partial`)
  fs.writeFileSync(file, 'an older export\n')
  const r = await runCli(['export', dir, '--out', file])
  t.equal(r.code, 0, r.stderr)
  t.equal(fs.readFileSync(victim, 'utf8'), 'not to be overwritten\n', 'the symlink\'s target is left as it was')
  t.equal(fs.statSync(victim).mode & 0o777, 0o644, 'and its mode')
  const st = fs.lstatSync(file)
  t.ok(st.isFile(), 'the export is a file, not a link')
  t.equal(st.mode & 0o777, 0o600 & ~process.umask(), 'mode 0600 (less the umask)')
  t.match(fs.readFileSync(file, 'utf8'), /^\{"memwal":"export"/)
  t.strictSame(partials(work), ['all.ndjson.partial'], 'only the planted link: no partial file of its own left')
})

t.test('import from a directory, or a file it may not read: refused before the store is created (no new, empty data directory)', async (t) => {
  const work = tmpDir(t)
  const into = path.join(work, 'into')
  const r = await runCli(['import', into, work])
  t.equal(r.code, 8, r.stderr)
  t.match(r.stderr, /^memwal import: cannot read the export \S+: it is a directory, not an export file \[IO_ERROR\]\n$/)
  t.notOk(fs.existsSync(into), 'no data directory created')
  const j = await runCli(['import', into, work, '--json'])
  t.match(oneJson(j), { error: { code: 'IO_ERROR' }, exitCode: 8 })
  // The tests run as root, whom permissions do not stop: the CLI runs as `nobody` then, in a directory it may write.
  const asRoot = process.getuid?.() === 0
  const open = tmpDir(t)
  fs.chmodSync(open, 0o777)
  const file = path.join(open, 'secret.ndjson')
  fs.writeFileSync(file, '{"memwal":"export"}\n', { mode: 0o600 })
  if (!asRoot) fs.chmodSync(file, 0o000)
  const target = path.join(open, 'into')
  const u = await runCli(['import', target, file], asRoot ? { uid: 65534, gid: 65534, entry: worldReadableCli(t) } : {})
  t.equal(u.code, 8, u.stderr)
  t.match(u.stderr, /^memwal import: permission denied: \S*secret\.ndjson \(EACCES, while trying to read the export .*\[PERMISSION_DENIED\]\n$/)
  t.notOk(fs.existsSync(target), 'no data directory created')
})
