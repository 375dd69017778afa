/**
 * Modes (issue 14 item 16), under umask 000 (the worst case: LevelDB's files
 * would be 0666): everything memwal makes is its user's only (directories
 * 0700, files 0600, LevelDB's included); a data directory others may write is
 * warned about, at open through the logger and in `status`, not refused
 * (docs/design.md §2 says why).
 */
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { inspectDataDir, MemWAL, type Logger } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'

process.umask(0)

function modes(dir: string): Map<string, number> {
  const out = new Map<string, number>([['.', fs.statSync(dir).mode & 0o777]])
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) out.set(f, fs.statSync(path.join(dir, f)).mode & 0o777)
  return out
}

function warnings(): { logger: Logger; seen: string[] } {
  const seen: string[] = []
  const none = (): void => undefined
  return { seen, logger: { debug: none, info: none, error: none, warn: (_o, msg) => seen.push(msg ?? '') } }
}

t.test('under umask 000, directories are 0700 and files 0600, LevelDB\'s too', async (t) => {
  t.equal(process.umask(), 0, 'umask is 000')
  const dir = path.join(tmpDir(t), 'data')
  const w = warnings()
  const db = await MemWAL.open({ dir, logger: w.logger })
  for (let i = 0; i < 50; i++) await db.put(`k${i}`, { i })
  await db.flush()
  await db.close()
  const after = modes(dir)
  t.ok([...after.keys()].some((f) => f.startsWith('store/') && f.endsWith('.log')), 'LevelDB wrote its files')
  for (const [f, mode] of after) {
    const isDir = fs.statSync(path.join(dir, f)).isDirectory()
    t.equal(mode.toString(8), isDir ? '700' : '600', `${f}: 0${mode.toString(8)}`)
  }
  t.same(w.seen, [], 'nothing to warn about')
})

t.test('a store made with LevelDB\'s modes (an older memwal) is tightened at the next open', async (t) => {
  const dir = path.join(tmpDir(t), 'data')
  await (await MemWAL.open({ dir })).close()
  const store = path.join(dir, 'store')
  fs.chmodSync(store, 0o755)
  for (const f of fs.readdirSync(store)) fs.chmodSync(path.join(store, f), 0o666)
  await (await MemWAL.open({ dir })).close()
  for (const [f, mode] of modes(store)) t.equal(mode.toString(8), f === '.' ? '700' : '600', `store/${f}`)
})

t.test('a data directory others may write: a warning at open and in status, with the fix; not refused', async (t) => {
  const dir = path.join(tmpDir(t), 'shared')
  await (await MemWAL.open({ dir })).close()
  fs.chmodSync(dir, 0o777)
  const w = warnings()
  const db = await MemWAL.open({ dir, logger: w.logger })
  await db.put('k', 1)
  await db.close()
  t.equal(w.seen.length, 1, 'one warning')
  t.match(w.seen[0], `${dir} is writable by group or others (mode 0777)`)
  t.match(w.seen[0], `chmod go-w ${dir}`)
  const s = await inspectDataDir(dir)
  t.same(s.warnings, w.seen, 'status says the same')
  fs.chmodSync(dir, 0o700)
  t.same((await inspectDataDir(dir)).warnings, [], 'and nothing once fixed')
})
