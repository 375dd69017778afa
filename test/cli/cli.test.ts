/**
 * The `memwal` CLI as a user runs it (a subprocess; DESIGN.md §9), on the
 * committed data-directory fixtures of fixtures/datadirs/ (see its README);
 * fsck over every fixture is in cli-fixtures.test.ts:
 * - replay applies what a backend left unapplied; dump and status report the
 *   log and the directory; --json prints exactly one JSON document;
 * - operational errors (missing directory, not a memwal directory, lock held,
 *   unknown format version, permission denied) exit 8 and usage errors exit
 *   16, each with one line on stderr.
 */
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { MemWAL, type Sink } from '../../engine/index.js'
import { RecordType, type Op } from '../../engine/testing.js'
import { createChecksums } from '../../engine/format/checksum.js'
import { decodeSegmentHeader, encodeSegmentHeader } from '../../engine/format/format.js'
import { RECORDS, recordFor } from '../../fixtures/make-datadir-fixtures.js'
import { copyFixture, DATADIRS, holdDir, REPO_DIR, oneJson, runCli, stderrLines, type CliResult, type DumpDoc } from '../support/cli-run.js'
import { manifest } from '../support/fixture-expect.js'
import { tmpDir } from '../support/tmp-dir.js'
import { worldReadableCli } from '../support/world-readable-cli.js'

// Most of the time goes to starting subprocesses: run the tests (each in its own directory) a few at a time.
t.jobs = 3

t.test('fsck without --json: a readable summary on stdout, and the same exit codes', async (t) => {
  const clean = await runCli(['fsck', copyFixture(t, 'clean')])
  t.equal(clean.code, 0)
  t.match(clean.stdout, /3 segments, 480 records, last LSN 480/)
  t.match(clean.stdout, /clean: the log, the backend and the index agree/)
  const bad = await runCli(['fsck', copyFixture(t, 'corrupt-middle-segment')])
  t.equal(bad.code, 4)
  const m = manifest['corrupt-middle-segment']
  t.match(bad.stdout, `corrupt-frame ${m.segment}@${m.offset} LSN ${m.lsnFirst}`)
  t.match(bad.stdout, /already in the backend: nothing lost/)
  t.match(bad.stdout, /1 findings left uncorrected \(run with --repair\)/)
})

// ---- replay ----

t.test('replay applies the records a failing backend left unapplied; status shows the backlog before and none after', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  let down = true
  const wrapSink = <S extends Sink>(sink: S): S => {
    if (sink.name !== 'backend') return sink
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch, signal) => {
      if (down) throw new Error('simulated backend outage')
      await apply(batch, signal)
    }
    return sink
  }
  const engine = await MemWAL.open({ dir, wrapSink, closeGraceMs: 200, resilience: { retryDelayMsMin: 1, retryDelayMsMax: 5 } })
  const N = 40
  for (let i = 0; i < N; i++) await engine.put(`replay/${String(i).padStart(2, '0')}`, { i }, { namespace: 'replayed', tags: i % 2 === 0 ? ['even'] : ['odd'] })
  await engine.delete('replay/00', { namespace: 'replayed' })
  const last = N + 1
  t.equal(engine.health().sinks['backend']?.checkpoint, 0, 'the backend applied nothing')
  await engine.close() // without flush: the records stay unapplied in the log
  down = false

  const before = await runCli(['status', dir, '--json'])
  t.equal(before.code, 0, before.stderr)
  const s1 = oneJson<{ lastLsn: number; backlogRecords: number; checkpoints: { backend: number; index: number } }>(before)
  t.equal(s1.lastLsn, last)
  t.equal(s1.checkpoints.backend, 0)
  t.equal(s1.backlogRecords, last, 'every record is in the backlog')

  const replay = await runCli(['replay', dir, '--json'])
  t.equal(replay.code, 0, replay.stderr)
  const doc = oneJson<{ dir: string; replayed: number; checkpoints: { backend: number; index: number }; recovery: { lastLsn: number; findings: unknown[] }; recordsPerSecond: number }>(replay)
  t.equal(doc.dir, dir)
  t.equal(doc.replayed, last, 'replayed every unapplied record')
  t.strictSame(doc.checkpoints, { backend: last, index: last })
  t.equal(doc.recovery.lastLsn, last)
  t.strictSame(doc.recovery.findings, [])
  t.type(doc.recordsPerSecond, 'number')

  const after = oneJson<{ backlogRecords: number; checkpoints: { backend: number; index: number } }>(await runCli(['status', dir, '--json']))
  t.equal(after.backlogRecords, 0, 'no backlog after replay')
  t.strictSame(after.checkpoints, { backend: last, index: last })

  // The backend itself holds the values now (read through a fresh engine: nothing pending, nothing cached).
  const check = await MemWAL.open({ dir })
  try {
    t.equal(check.health().backlog.records, 0)
    t.equal(await check.get('replay/00', { namespace: 'replayed' }), undefined, 'the delete was replayed too')
    t.match(await check.getEntry('replay/07', { namespace: 'replayed' }), { value: { i: 7 }, version: 8, namespace: 'replayed', key: 'replay/07', tags: ['odd'] })
  } finally {
    await check.close()
  }

  const readable = await runCli(['replay', dir])
  t.equal(readable.code, 0)
  t.match(readable.stdout, /replayed 0 unapplied records/, 'a second replay has nothing to do')
})

// ---- dump ----

t.test('dump --json: one document with every record and its place; --from, --to and --key filter', async (t) => {
  const dir = copyFixture(t, 'clean')
  const all = await runCli(['dump', dir, '--json'])
  t.equal(all.code, 0, all.stderr)
  const doc = oneJson<DumpDoc>(all)
  t.equal(doc.records, RECORDS)
  t.equal(doc.damaged, 0)
  t.strictSame(doc.entries.map((e) => e.lsn), Array.from({ length: RECORDS }, (_, i) => i + 1), 'every LSN, in order')
  t.ok(doc.entries.every((e) => e.kind === 'record' && manifest.clean.segments.includes(e.segment) && e.offset >= 64), 'each names its segment and offset')
  t.strictSame(doc.entries[351]?.record, { type: RecordType.PUT, op: (recordFor(352) as { op: Op }).op }, 'the record as written')
  t.equal(doc.entries[222]?.segment, manifest.clean.segments[1], 'LSN 223 opens the second segment')
  t.equal(doc.entries[222]?.offset, 64)

  const range = oneJson<DumpDoc>(await runCli(['dump', dir, '--from', '100', '--to', '110', '--json']))
  t.strictSame(range.entries.map((e) => e.lsn), [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110])
  t.equal(range.records, 11)

  const key = oneJson<DumpDoc>(await runCli(['dump', dir, '--key', 'profile/alpha', '--json']))
  t.strictSame(key.entries.map((e) => e.lsn), [41, 352], 'the records touching the key')
  const both = oneJson<DumpDoc>(await runCli(['dump', dir, '--key', 'profile/alpha', '--from', '100', '--json']))
  t.strictSame(both.entries.map((e) => e.lsn), [352])
  // A key written inside batches too.
  const batchKey = 'agent/05'
  const expected = [...Array(RECORDS).keys()].map((i) => i + 1).filter((lsn) => {
    const r = recordFor(lsn)
    return (r.type === RecordType.BATCH ? r.ops : [r.op]).some((op) => op.key === batchKey)
  })
  t.strictSame(oneJson<DumpDoc>(await runCli(['dump', dir, '--key', batchKey, '--json'])).entries.map((e) => e.lsn), expected)

  const text = await runCli(['dump', dir, '--from', '352', '--to', '352'])
  t.equal(text.code, 0)
  t.match(text.stdout, new RegExp(`^352\\t${manifest.clean.segments[1]}@\\d+\\t.*profile/alpha`))
  t.match(text.stderr, /1 records, 0 damaged ranges/)
})

t.test('dump on a damaged log shows the damaged range in place and exits 4', async (t) => {
  const m = manifest['corrupt-middle-segment']
  const r = await runCli(['dump', copyFixture(t, 'corrupt-middle-segment'), '--json'])
  t.equal(r.code, 4)
  const doc = oneJson<DumpDoc>(r)
  t.equal(doc.damaged, 1)
  t.equal(doc.records, RECORDS - 1)
  const i = doc.entries.findIndex((e) => e.kind === 'damage')
  t.match(doc.entries[i], { kind: 'damage', segment: m.segment, offset: m.offset })
  t.equal(doc.entries[i - 1]?.lsn, (m.lsnFirst as number) - 1, 'between the records around it')
  t.equal(doc.entries[i + 1]?.lsn, (m.lsnFirst as number) + 1)
})

// ---- status ----

t.test('status --json: segments, last LSN, checkpoints, backlog, dead letters, quarantine, lock', async (t) => {
  const dir = copyFixture(t, 'clean')
  for (const d of [dir, path.join(dir, 'wal'), path.join(dir, 'store')]) fs.chmodSync(d, 0o755)
  const r = await runCli(['status', dir, '--json'])
  t.equal(r.code, 0, r.stderr)
  const s = oneJson(r)
  t.strictSame(Object.keys(s).sort(), ['backend', 'backlogRecords', 'checkpoints', 'deadLetterBytes', 'dir', 'elapsedMs', 'gaps', 'lastLsn', 'openDeadLetters', 'quarantined', 'segments', 'verified', 'warnings'])
  t.match(s, {
    dir,
    backend: null,
    segments: { count: 3, bytes: 3 * 64 * 1024, firstLsn: 1, active: manifest.clean.segments[2] },
    lastLsn: RECORDS,
    checkpoints: { backend: RECORDS, index: RECORDS },
    backlogRecords: 0,
    deadLetterBytes: {},
    openDeadLetters: 0,
    quarantined: [],
    gaps: { open: [], acknowledged: 0 },
    verified: { clean: true, counts: {}, findings: [] },
  })
  t.strictSame(s['warnings'], [], 'no warnings: nothing in it is writable by others')
  t.type(s['elapsedMs'], 'number')

  const text = await runCli(['status', dir])
  t.equal(text.code, 0)
  t.match(text.stdout, /backend\s+leveldb \(not recorded: a directory from before records\)/, 'the fixture is from before backend records')
  t.match(text.stdout, /lock\s+free/)
  t.match(text.stdout, /last LSN\s+480/)
  t.match(text.stdout, /backlog\s+0 records not yet applied everywhere/)
})

t.test('status names the process holding the lock; fsck and replay refuse with exit 8 naming it; dump still reads', async (t) => {
  const dir = copyFixture(t, 'clean')
  const holder = await holdDir(dir)
  t.teardown(() => {
    if (holder.proc.exitCode === null) holder.proc.kill('SIGKILL')
  })
  const s = oneJson<{ lockedBy?: string; checkpoints?: unknown }>(await runCli(['status', dir, '--json']))
  t.match(s.lockedBy, new RegExp(`process ${holder.pid} on `), 'status names the holder')
  t.equal(s.checkpoints, undefined, 'checkpoints are not read while a process holds the store')

  for (const cmd of ['fsck', 'replay']) {
    const r = await runCli([cmd, dir])
    t.equal(r.code, 8, `${cmd} exits 8`)
    t.equal(r.stdout, '')
    const lines = stderrLines(r)
    t.equal(lines.length, 1, `${cmd}: one line on stderr: ${r.stderr}`)
    t.match(lines[0], new RegExp(`^memwal ${cmd}: .*locked by process ${holder.pid} on .*\\[LOCK_HELD\\]$`))
    const j = await runCli([cmd, dir, '--json'])
    t.match(oneJson(j), { error: { code: 'LOCK_HELD' }, exitCode: 8 })
  }
  const d = await runCli(['dump', dir, '--from', '480', '--json'])
  t.equal(d.code, 0, 'dump reads without the lock')
  t.equal(oneJson<DumpDoc>(d).records, 1)

  t.equal(await holder.release(), 0, 'the holder closed cleanly')
  t.equal((await runCli(['fsck', dir])).code, 0, 'fsck runs once the lock is free')
})

// ---- errors ----

function expectOneLineError(t: Test, r: CliResult, cmd: string, code: number, pattern: RegExp): void {
  t.equal(r.code, code, `${cmd} exits ${code}`)
  const lines = stderrLines(r)
  t.equal(lines.length, 1, `${cmd}: one line on stderr, got ${JSON.stringify(r.stderr)}`)
  t.match(lines[0], pattern, `${cmd}: the message says what is wrong`)
}

t.test('a missing directory: exit 8 from every command, one line naming it, and nothing created', async (t) => {
  const dir = path.join(tmpDir(t), 'no-such-dir')
  for (const cmd of ['fsck', 'replay', 'dump', 'status']) {
    const r = await runCli([cmd, dir])
    expectOneLineError(t, r, cmd, 8, new RegExp(`^memwal ${cmd}: no such directory: ${dir} \\[DIR_NOT_FOUND\\]$`))
    t.equal(r.stdout, '')
  }
  for (const cmd of ['replay', 'dump']) {
    const j = await runCli([cmd, dir, '--json'])
    t.equal(j.code, 8)
    t.match(oneJson(j), { error: { code: 'DIR_NOT_FOUND' }, exitCode: 8 }, `${cmd} --json: the error as one document`)
  }
  t.notOk(fs.existsSync(dir), 'no command created the directory')
  const repair = await runCli(['fsck', dir, '--repair'])
  t.equal(repair.code, 8)
  t.notOk(fs.existsSync(dir))
})

t.test('a directory that is not a memwal directory, or a file: exit 8, one line, untouched', async (t) => {
  const root = tmpDir(t)
  const empty = path.join(root, 'empty')
  fs.mkdirSync(empty)
  fs.writeFileSync(path.join(empty, 'notes.txt'), 'hello')
  const file = path.join(root, 'a-file')
  fs.writeFileSync(file, 'not a directory')
  for (const cmd of ['fsck', 'replay', 'dump', 'status']) expectOneLineError(t, await runCli([cmd, empty]), cmd, 8, /is not a memwal data directory: it has no MEMWAL marker and no memwal log in wal\/ \(it holds notes\.txt\) \[DIR_NOT_MEMWAL\]$/)
  for (const cmd of ['replay', 'status']) expectOneLineError(t, await runCli([cmd, file]), cmd, 8, /is not a directory \[DIR_NOT_MEMWAL\]$/)
  expectOneLineError(t, await runCli(['fsck', empty, '--repair']), 'fsck --repair', 8, /DIR_NOT_MEMWAL/)
  t.strictSame(fs.readdirSync(empty), ['notes.txt'], 'nothing was created in it')
  // A path that runs through a file: the OS says ENOTDIR.
  expectOneLineError(t, await runCli(['fsck', path.join(file, 'data')]), 'fsck', 8, /ENOTDIR/)
})

t.test('a directory with a wal/ folder of someone else\'s: every command refuses it (DIR_NOT_MEMWAL, exit 8) and initialises nothing', async (t) => {
  const dir = path.join(tmpDir(t), 'project')
  fs.mkdirSync(path.join(dir, 'wal'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'wal', 'journal.txt'), 'not memwal')
  const before = (fs.readdirSync(dir, { recursive: true }) as string[]).sort()
  for (const args of [['fsck', dir, '--repair'], ['replay', dir], ['status', dir], ['dump', dir], ['fsck', dir]]) {
    expectOneLineError(t, await runCli(args), args.join(' '), 8, /project is not a memwal data directory: it has no MEMWAL marker .*\[DIR_NOT_MEMWAL\]$/)
  }
  t.strictSame((fs.readdirSync(dir, { recursive: true }) as string[]).sort(), before, 'no segment, store or lock was created')
})

t.test('a store that cannot be opened (a file where store/ should be): exit 8, one line', async (t) => {
  const dir = copyFixture(t, 'clean')
  fs.rmSync(path.join(dir, 'store'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'store'), 'not a LevelDB directory')
  expectOneLineError(t, await runCli(['fsck', dir]), 'fsck', 8, new RegExp(`cannot open the LevelDB store at ${dir}/store: .*\\[IO_ERROR\\]$`))
  expectOneLineError(t, await runCli(['replay', dir]), 'replay', 8, new RegExp(`${dir}/store`))
})

t.test('permission denied: exit 8 and one line naming the path', async (t) => {
  // The tests run as root, whom permissions do not stop: the CLI runs as `nobody` then (spawn uid/gid), on a directory only root may enter.
  const asRoot = process.getuid?.() === 0
  const root = tmpDir(t)
  fs.chmodSync(root, 0o755)
  const dir = path.join(root, 'data')
  fs.cpSync(path.join(DATADIRS, 'clean'), dir, { recursive: true })
  fs.chmodSync(dir, 0o755)
  fs.chmodSync(path.join(dir, 'wal'), asRoot ? 0o700 : 0o000)
  t.teardown(() => fs.chmodSync(path.join(dir, 'wal'), 0o700))
  // `nobody` may not be able to enter the checkout (a clone under a 0700 directory): it runs a copy it can read.
  const as = asRoot ? { uid: 65534, gid: 65534, entry: worldReadableCli(t) } : {}
  // One code wherever the refusal is met, with the path refused and the fix.
  const fix = 'run memwal as the user that owns the data directory, or give this user read, write and search \\(x\\) access to it and its parents \\[PERMISSION_DENIED\\]$'
  // A directory from before the marker is recognised by reading wal/: that is what is refused first.
  for (const cmd of ['status', 'dump', 'fsck', 'replay']) expectOneLineError(t, await runCli([cmd, dir], as), cmd, 8, new RegExp(`^memwal ${cmd}: permission denied: ${dir}/wal \\(EACCES, while trying to .*\\): ${fix}`))
  // With its marker, fsck and replay take the lock first: creating it is what is refused.
  fs.writeFileSync(path.join(dir, 'MEMWAL'), '{"memwal":"data directory","version":1}\n')
  for (const cmd of ['fsck', 'replay']) expectOneLineError(t, await runCli([cmd, dir], as), cmd, 8, new RegExp(`^memwal ${cmd}: permission denied: ${dir}/memwal\\.lock\\S* \\(EACCES, while trying to lock ${dir}\\): ${fix}`))
  for (const cmd of ['fsck', 'status']) {
    const j = await runCli([cmd, dir, '--json'], as)
    t.match(oneJson(j), { error: { code: 'PERMISSION_DENIED' }, exitCode: 8 }, `${cmd} --json: PERMISSION_DENIED`)
  }
})

t.test('an unknown format version: fsck and replay exit 8 saying which version; dump shows the segment as damage', async (t) => {
  const dir = copyFixture(t, 'clean')
  const seg = path.join(dir, 'wal', manifest.clean.segments[0] as string)
  const bytes = fs.readFileSync(seg)
  const sums = await createChecksums()
  const h = decodeSegmentHeader(bytes, sums)
  if (h.kind !== 'header') throw new Error('fixture header unreadable')
  encodeSegmentHeader({ ...h.header, version: 3 }, sums).copy(bytes, 0)
  fs.writeFileSync(seg, bytes)
  t.equal(decodeSegmentHeader(bytes, sums).kind, 'unknown-version', 'a valid header of another version')
  for (const cmd of ['fsck', 'replay']) {
    expectOneLineError(t, await runCli([cmd, dir]), cmd, 8, new RegExp(`segment ${manifest.clean.segments[0]} has format version 3; this memwal reads versions 1 and 2 \\[WAL_UNKNOWN_VERSION\\]$`))
  }
  expectOneLineError(t, await runCli(['fsck', dir, '--repair']), 'fsck --repair', 8, /WAL_UNKNOWN_VERSION/)
  t.equal(fs.readFileSync(seg).compare(bytes), 0, 'the segment is left as it is')
  t.notOk(fs.existsSync(path.join(dir, 'quarantine')), 'nothing quarantined')
  const d = await runCli(['dump', dir, '--json'])
  t.equal(d.code, 4)
  t.match(oneJson<DumpDoc>(d).entries[0], { kind: 'damage', segment: manifest.clean.segments[0], offset: 0, detail: 'format version 3' })
})

t.test('usage errors exit 16 with one line on stderr (and, under --json, one document on stdout)', async (t) => {
  const dir = copyFixture(t, 'clean')
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['fsck', dir, '--bogus'], /unknown option '--bogus'/],
    [['fsck'], /missing required argument 'dir'/],
    [['dump', dir, '--from', 'abc'], /'--from <lsn>' argument 'abc' is invalid/],
    [['replay', dir, '--timeout', '0'], /'--timeout <ms>' argument '0' is invalid/],
    [['dump', dir, '--from', '5', '--to', '2'], /--from 5 is after --to 2: the range is empty/],
  ]
  for (const [args, pattern] of cases) {
    const r = await runCli(args)
    expectOneLineError(t, r, args.join(' '), 16, pattern)
    t.equal(r.stdout, '', 'nothing on stdout')
  }
  for (const args of [['fsck', dir, '--bogus', '--json'], ['dump', dir, '--json', '--from', 'abc']]) {
    const j = await runCli(args)
    t.equal(j.code, 16)
    t.match(oneJson(j), { error: { code: 'USAGE' }, exitCode: 16 }, `${args.join(' ')}: the error as one document`)
    t.equal(stderrLines(j).length, 1)
  }
  const help = await runCli(['--help'])
  t.equal(help.code, 0, '--help is not an error')
  t.match(help.stdout, /Usage: memwal/)

  const bare = await runCli([])
  t.equal(bare.code, 16, 'no arguments at all is a usage error')
  t.equal(bare.stdout, '')
  t.match(bare.stderr, /^Usage: memwal .*\n[^]*replay[^]*fsck[^]*dump[^]*status/, 'with the usage on stderr')

  const version = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')) as { version: string }
  for (const flag of ['--version', '-V']) {
    const v = await runCli([flag])
    t.equal(v.code, 0, `${flag} is not an error`)
    t.equal(v.stdout, `${version.version}\n`, `${flag} prints the package's version`)
  }
})
