/**
 * A memwal directory is recognised by its own marker (issue 14 item 13):
 * `<dir>/MEMWAL`, written durably when the directory is created. A directory
 * with a `wal/` of someone else's, or anything else but no marker, is refused
 * by open and by the tools with DIR_NOT_MEMWAL naming the path, and nothing
 * in it changes. Directories made before the marker (every fixture in
 * fixtures/datadirs/) are recognised by their log and get the marker at the
 * next open that holds the lock; the read-only tools leave them unmarked.
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { checkDataDir, fsck, inspectDataDir, isMemwalError, MemWAL } from '../../engine/index.js'
import { NodeFileSystem } from '../../engine/testing.js'
import { MARKER_NAME } from '../../engine/log/data-dir.js'
import { RecordingFileSystem } from '../support/recording-fs.js'
import { tmpDir } from '../support/tmp-dir.js'

const DATADIRS = path.resolve(import.meta.dirname, '..', '..', 'fixtures', 'datadirs')
const node = new NodeFileSystem()

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    const r = await p
    if (r instanceof MemWAL) await r.close()
    return 'none'
  } catch (err) {
    if (isMemwalError(err)) return err.code
    throw err
  }
}

/** Every path under `dir` with its size: to show that nothing changed. */
function tree(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort().map((f) => `${f} ${fs.statSync(path.join(dir, f)).isDirectory() ? 'dir' : fs.statSync(path.join(dir, f)).size}`)
}

t.test('a new data directory gets its marker first, durably', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  const rec = new RecordingFileSystem(node)
  await (await MemWAL.open({ dir, fs: rec })).close()
  t.same(JSON.parse(fs.readFileSync(path.join(dir, MARKER_NAME), 'utf8')), { memwal: 'data directory', version: 1 })
  const renamed = rec.calls.indexOf(`rename ${path.join(dir, MARKER_NAME)}`)
  t.ok(renamed >= 0, 'renamed into place')
  t.equal(rec.calls[renamed + 1], `syncDir ${dir}`, 'the directory synced right after')
  t.ok(renamed < rec.calls.indexOf(`mkdirp ${path.join(dir, 'wal')}`), 'before wal/ is made')
  t.equal(await checkDataDir(dir, node), 'marked')

  const empty = tmpDir(t)
  await (await MemWAL.open({ dir: empty })).close()
  t.ok(fs.existsSync(path.join(empty, MARKER_NAME)), 'an empty directory is made a memwal one')
  const crashed = tmpDir(t)
  fs.writeFileSync(path.join(crashed, `${MARKER_NAME}.tmp`), '{"mem')
  await (await MemWAL.open({ dir: crashed })).close()
  t.equal(await checkDataDir(crashed, node), 'marked', 'a marker write cut short counts for nothing: the directory was still empty')
  t.notOk(fs.existsSync(path.join(crashed, `${MARKER_NAME}.tmp`)))
})

t.test('a directory with wal/ or anything else but no marker: DIR_NOT_MEMWAL naming the path, untouched', async (t) => {
  const root = tmpDir(t)
  const foreign = path.join(root, 'foreign')
  fs.mkdirSync(path.join(foreign, 'wal'), { recursive: true })
  fs.writeFileSync(path.join(foreign, 'wal', 'notes.txt'), 'mine')
  const fakeSeg = path.join(root, 'fake-seg')
  fs.mkdirSync(path.join(fakeSeg, 'wal'), { recursive: true })
  fs.writeFileSync(path.join(fakeSeg, 'wal', '00000000000000000001.seg'), Buffer.alloc(65536, 7))
  const other = path.join(root, 'other')
  fs.mkdirSync(other)
  fs.writeFileSync(path.join(other, 'photo.jpg'), 'jpeg')
  for (const dir of [foreign, fakeSeg, other]) {
    const before = tree(dir)
    const err = await MemWAL.open({ dir }).then((e) => e.close(), (e: unknown) => e)
    t.ok(isMemwalError(err) && err.code === 'DIR_NOT_MEMWAL', `${path.basename(dir)}: open refused with DIR_NOT_MEMWAL`)
    t.match((err as Error).message, dir, 'naming the path')
    t.equal(await codeOf(fsck({ dir, repair: true, replay: async () => undefined })), 'DIR_NOT_MEMWAL', 'fsck --repair refused')
    t.equal(await codeOf(fsck({ dir, repair: false })), 'DIR_NOT_MEMWAL', 'fsck refused')
    t.equal(await codeOf(inspectDataDir(dir)), 'DIR_NOT_MEMWAL', 'status refused')
    t.same(tree(dir), before, 'nothing in it changed')
  }
  t.equal(await codeOf(checkDataDir(tmpDir(t), node)), 'DIR_NOT_MEMWAL', 'the tools refuse an empty directory (only open makes one)')
  t.equal(await codeOf(checkDataDir(path.join(root, 'nothing-here'), node)), 'DIR_NOT_FOUND')
})

t.test('a marker that is not memwal\'s, or from a newer memwal, is refused', async (t) => {
  const dir = tmpDir(t)
  await (await MemWAL.open({ dir })).close()
  fs.writeFileSync(path.join(dir, MARKER_NAME), '{"memwal":"data directory","version":2}\n')
  t.equal(await codeOf(MemWAL.open({ dir })), 'WAL_UNKNOWN_VERSION', 'version 2: made by a newer memwal')
  fs.writeFileSync(path.join(dir, MARKER_NAME), 'hello')
  t.equal(await codeOf(MemWAL.open({ dir })), 'DIR_NOT_MEMWAL', 'not a marker')
  t.equal(await codeOf(inspectDataDir(dir)), 'DIR_NOT_MEMWAL')
})

t.test('directories made before the marker (fixtures/datadirs/*) are recognised by their log and marked at the next open', async (t) => {
  const cases = fs.readdirSync(DATADIRS).filter((n) => fs.statSync(path.join(DATADIRS, n)).isDirectory())
  t.ok(cases.length >= 9, `${cases.length} fixtures`)
  for (const name of cases) {
    t.notOk(fs.existsSync(path.join(DATADIRS, name, MARKER_NAME)), `${name}: made without a marker`)
    const dir = path.join(tmpDir(t), name)
    fs.cpSync(path.join(DATADIRS, name), dir, { recursive: true })
    t.equal(await checkDataDir(dir, node), 'unmarked', `${name}: recognised by its log`)
    await inspectDataDir(dir)
    await fsck({ dir, repair: false })
    t.notOk(fs.existsSync(path.join(dir, MARKER_NAME)), `${name}: status and a dry-run fsck leave it unmarked`)
    // Damaged ones are refused by recovery; the marker is written before, under the lock, either way.
    await codeOf(MemWAL.open({ dir }))
    t.equal(await checkDataDir(dir, node), 'marked', `${name}: marked by the open`)
  }
})

t.test('the marker is written through replaceFile: an EIO from the directory sync fails the open, and one directory sync per replacement', async (t) => {
  const { SeededRandom, SimulatedFileSystem } = await import('../../engine/testing.js')
  const { replaceFile } = await import('../../engine/io/file-ops.js')
  const { writeMarker } = await import('../../engine/log/data-dir.js')
  class Counting extends SimulatedFileSystem {
    syncs = 0
    override async syncDir(p: string): Promise<void> {
      this.syncs++
      return super.syncDir(p)
    }
  }
  // The directory sync after the rename, the one that makes the marker durable: the last of a dry run's.
  const dry = new Counting(new SeededRandom(1))
  await dry.mkdirp('/d')
  const before = dry.syncs
  await writeMarker(dry, '/d')
  const sim = new SimulatedFileSystem(new SeededRandom(1))
  await sim.mkdirp('/d')
  sim.injectFault({ op: 'syncDir', code: 'EIO', pathIncludes: '/d', after: dry.syncs - before - 1 })
  await t.rejects(writeMarker(sim, '/d'), { code: 'IO_ERROR' }, 'the sync\'s EIO is not swallowed (the marker may not be durable)')
  const counting = new Counting(new SeededRandom(2))
  await counting.mkdirp('/e')
  const at = counting.syncs
  await replaceFile(counting, '/e/f', Buffer.from('one'))
  await replaceFile(counting, '/e/f', Buffer.from('two'))
  t.equal(counting.syncs - at, 2, 'one directory sync per replacement')
  t.equal(Buffer.from(await counting.readFile('/e/f')).toString(), 'two')
})
