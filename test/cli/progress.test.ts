/**
 * Progress on a terminal (issue 14 item 15, "a summary line runs into its
 * timing"): every command's summary was checked on a TTY and through a pipe;
 * the lines themselves did not run together, but two bars ended wrong and
 * stayed on screen above the summary: `replay` with nothing to replay left
 * "0% 0/1" with an endless ETA, and `fsck` counted wal/spare.tmp (64 MiB,
 * never read) in its total, so after any open its bar stopped at 0%.
 */
import fs from 'node:fs'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { fsck, MemWAL } from '../../engine/index.js'
import { createOutput } from '../../cli/output.js'
import { copyFixture } from '../support/cli-run.js'

/** A stream that says it is a terminal, and keeps what was written to it. */
function terminal(): { stream: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough() as unknown as NodeJS.WriteStream & PassThrough
  let text = ''
  s.on('data', (b: Buffer) => (text += b.toString('utf8')))
  Object.assign(s, { isTTY: true, columns: 120, rows: 40, cursorTo: () => true, clearLine: () => true, moveCursor: () => true })
  return { stream: s, text: () => text }
}

t.test('a bar with nothing to do draws nothing; one with work ends at 100%', async (t) => {
  const idle = terminal()
  const out = createOutput(false, process.stdout, idle.stream)
  const none = out.progress(0, 'replay')
  none.update(0)
  none.stop()
  t.equal(idle.text(), '', 'nothing to replay: no bar')

  const busy = terminal()
  const bar = createOutput(false, process.stdout, busy.stream).progress(0, 'verify')
  bar.update(50, 100)
  bar.update(100, 100)
  bar.stop()
  t.match(busy.text(), /verify \[.*\] 100% 100\/100/, 'the last frame drawn is complete')
  t.notMatch(busy.text(), /0\/1 /, 'never the placeholder total')
})

t.test('fsck counts only the segments it reads: its progress ends at its total after an open made a spare', async (t) => {
  const dir = copyFixture(t, 'clean')
  await (await MemWAL.open({ dir })).close()
  t.ok(fs.existsSync(path.join(dir, 'wal', 'spare.tmp')), 'the open prepared a spare segment')
  let last: [number, number] = [0, 0]
  await fsck({ dir, repair: false, onProgress: (done, total) => (last = [done, total]) })
  t.ok(last[1] > 0, 'progress was reported')
  t.equal(last[0], last[1], `done ${last[0]} of ${last[1]} bytes`)
})
