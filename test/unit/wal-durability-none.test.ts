/**
 * Durability 'none' never syncs, and a log resumed in that mode must not
 * claim otherwise: its group markers' durable-from stays at the segment
 * header (the bytes written before the restart may sit only in the page
 * cache) and durableLsn claims nothing. Were the bytes before the resume
 * point claimed durable, a power cut that lost some of them while a later
 * marker persisted would read as damage in durable bytes: open refused,
 * where a torn tail (nothing was promised) is truncated.
 */
import t from 'tap'
import { decodeFrameAt, frameView, SEGMENT_HEADER_BYTES } from '../../engine/format/format.js'
import { SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'
import { bytesOf, describeSegments, openLog, range, readAll, recordFor, SEGMENT_BYTES, sums, VALUE_BYTES } from '../support/craft.js'

const FIRST = 20
const SECOND = 20

/** FIRST records in one session, SECOND more in a second one, durability 'none' throughout; nothing synced. */
async function twoSessions(sim: SimulatedFileSystem): Promise<void> {
  for (const [from, to] of [[1, FIRST], [FIRST + 1, FIRST + SECOND]] as const) {
    const wal = await openLog(sim, { durability: 'none' })
    for (let lsn = from; lsn <= to; lsn++) await wal.appendRecord(recordFor(lsn, VALUE_BYTES))
    if (from > 1) t.equal(wal.durableLsn, 0, 'a resumed log in durability none claims no LSN durable')
    await wal.close()
  }
}

t.test('after a resume in durability none, group markers claim nothing beyond the segment header', async (t) => {
  const sim = new SimulatedFileSystem(new SeededRandom(3), { tear: 'sectors' })
  await twoSessions(sim)
  const [seg] = await describeSegments(sim)
  if (!seg) throw new Error('no segment')
  const resumed = seg.frames.find((f) => f.lsn === FIRST + 1)
  if (!resumed) throw new Error('no frame for the first record after the resume')
  const m = decodeFrameAt(frameView(bytesOf(sim, seg.path), seg.header.version), resumed.groupStart, seg.header.salt, SEGMENT_BYTES, await sums())
  t.match(m, { kind: 'group', durableFrom: SEGMENT_HEADER_BYTES }, `the first marker after the resume (offset ${resumed.groupStart}) claims only the header`)
})

t.test('a power cut after a resume in durability none: every seed opens with the default policy, a prefix of the records kept', async (t) => {
  let refused = 0
  for (let seed = 1; seed <= 40; seed++) {
    const sim = new SimulatedFileSystem(new SeededRandom(seed), { tear: 'sectors' })
    await twoSessions(sim)
    const after = sim.restart(seed)
    try {
      const wal = await openLog(after, { durability: 'none' })
      const { lsns } = await readAll(wal)
      await wal.close()
      t.strictSame(lsns, range(1, lsns.length), `seed ${seed}: LSNs 1-${lsns.length} read back, no hole`)
    } catch (err) {
      refused++
      t.fail(`seed ${seed}: open refused: ${(err as Error).message}`)
    }
  }
  t.equal(refused, 0, 'no open refused')
})
