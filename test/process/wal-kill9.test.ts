/**
 * G1 against real processes on the real filesystem: a writer process (the
 * kill child's `wal` profile) is SIGKILLed at random moments, over and over,
 * on one data directory (test/process/kill-loop.ts). After
 * each kill this process opens the WAL (taking over the dead writer's lock at
 * once) and checks that every append the child saw resolve reads back with
 * exactly the bytes it appended, that LSNs are contiguous from 1, that each
 * child's records are a prefix of what it appended, and that recovery found
 * nothing but a torn tail.
 *
 * MEMWAL_KILLS sets the number of kills (default 50); MEMWAL_SEED replays a
 * run's choices of child seeds and kill delays (the kill timing itself is the
 * operating system's).
 */
import { randomInt } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { describeFinding } from '../../engine/index.js'
import { RecordCodec, Wal } from '../../engine/testing.js'
import { tmpDir } from '../support/tmp-dir.js'
import { parseWalKey, walRecordFor, WAL_CHILD_SEGMENT_BYTES } from './children/wal-writer.js'
import { killLoop, type Round } from './kill-loop.js'

const KILLS = Number(process.env['MEMWAL_KILLS'] ?? 50)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
/** Kill delay after `ready`, ms. */
const DELAY_MS_MIN = 2
const DELAY_MS_MAX = 150
/** One round in this many kills the child at a random moment during or just after its Wal.open (recovery, lock, segment preparation). */
const EARLY_KILL_ONE_IN = 8
/** How long a Wal.open is taken to last before one was measured: the window early kills aim at. */
const OPEN_MS_GUESS = 20

interface Ack {
  readonly lsn: number
  readonly round: number
  readonly counter: number
}

interface Verified {
  readonly round: number
  readonly counter: number
  readonly type: number
  readonly payload: Buffer
}

function firstKey(codec: RecordCodec, type: 1 | 2 | 3, payload: Uint8Array): string {
  const rec = codec.decode(type, payload)
  if (rec.type === 3) return rec.ops[0]?.key ?? ''
  return rec.op.key
}

t.test(`kill -9 a writer ${KILLS} times: every acknowledged append survives (seed ${SEED})`, async (t) => {
  t.comment(`MEMWAL_SEED=${SEED} MEMWAL_KILLS=${KILLS}`)
  const dir = path.join(tmpDir(t, 'memwal-kill9-'), 'data')
  const codec = new RecordCodec()
  const roundOfSeed = new Map<number, number>()
  const acks: Ack[] = []
  const totals = { earlyKills: 0, ackChecks: 0, unackedSurvivors: 0, tornTails: 0, segments: 0 }
  let lastLsn = 0
  /** What the log held at each LSN when last verified (index 0 unused). */
  const log: (Verified | undefined)[] = [undefined]
  let openMs = OPEN_MS_GUESS

  const check = async ({ round, acks: roundAcks }: Round): Promise<number | undefined> => {
    for (const [counter, lsn] of roundAcks) acks.push({ lsn, round, counter })
    // ---- open in this process (takes over the dead child's lock at once) and verify ----
    const wal = await Wal.open({ dir, segmentBytes: WAL_CHILD_SEGMENT_BYTES })
    try {
      const other = wal.recovery.findings.filter((f) => f.kind !== 'torn-tail')
      if (other.length > 0) t.fail(`round ${round}: recovery found more than a torn tail: ${other.map(describeFinding).join('; ')}`)
      totals.tornTails += wal.recovery.findings.length - other.length

      let expected = 1
      let due = 0
      for await (const r of wal.read(1)) {
        if (r.lsn !== expected) {
          t.fail(`round ${round}: LSN ${r.lsn} read where ${expected} was due`)
          return undefined
        }
        expected++
        const seen = log[r.lsn]
        if (seen !== undefined) {
          // Verified after an earlier kill: it must not have changed since.
          if (r.type !== seen.type || !seen.payload.equals(r.payload)) {
            t.fail(`round ${round}: LSN ${r.lsn} (writer ${seen.round}, record ${seen.counter}) changed since it was verified`)
            return undefined
          }
          continue
        }
        // New since the last kill: written by this round's child, its records in order from 0, each exactly as appended.
        const id = parseWalKey(firstKey(codec, r.type, r.payload))
        const owner = id === undefined ? undefined : roundOfSeed.get(id.seed)
        if (id === undefined || owner !== round || id.counter !== due) {
          t.fail(`round ${round}: LSN ${r.lsn} holds ${id ? `writer ${String(owner)}'s record ${id.counter}` : 'a record no writer appended'} where this writer's record ${due} was due`)
          return undefined
        }
        const want = walRecordFor(id.seed, id.counter)
        if (r.type !== want.type || !Buffer.from(codec.encode(want)).equals(r.payload)) {
          t.fail(`round ${round}: LSN ${r.lsn} (writer ${owner}, record ${id.counter}) does not read back as appended`)
          return undefined
        }
        due++
        log[r.lsn] = { round, counter: id.counter, type: r.type, payload: Buffer.from(r.payload) }
      }
      const readLast = expected - 1
      if (readLast !== wal.lastLsn) t.fail(`round ${round}: read to LSN ${readLast}, the log's last LSN is ${wal.lastLsn}`)
      if (readLast < lastLsn) {
        t.fail(`round ${round}: the log shrank from ${lastLsn} to ${readLast}`)
        return undefined
      }
      totals.unackedSurvivors += readLast - lastLsn - roundAcks.size

      // G1: every append that resolved, in this round and all before, reads back as acknowledged.
      let lost = 0
      for (const a of acks) {
        totals.ackChecks++
        const at = a.lsn <= readLast ? log[a.lsn] : undefined
        if (at?.round !== a.round || at.counter !== a.counter) {
          if (lost++ < 5) t.fail(`round ${round}: acknowledged LSN ${a.lsn} (writer ${a.round}, record ${a.counter}) reads back as ${at ? `writer ${at.round}, record ${at.counter}` : 'nothing'}`)
        }
      }
      if (lost > 0) return undefined
      lastLsn = readLast
      totals.segments = (await wal.segments()).length
      return lastLsn
    } finally {
      await wal.close()
    }
  }

  const run = await killLoop(t, {
    kills: KILLS,
    seed: SEED,
    args: (childSeed, round) => {
      roundOfSeed.set(childSeed, round)
      return ['wal', dir, String(childSeed)]
    },
    killMoment: (rng, previous) => {
      if (previous?.openMs !== undefined) openMs = previous.openMs
      if (rng.below(EARLY_KILL_ONE_IN) === 0) {
        // Somewhere in Wal.open (recovery, lock, segment preparation) or just after it.
        totals.earlyKills++
        return { after: 'opening', delayMs: rng.below(Math.ceil(openMs * 1.5) + 1) }
      }
      return { after: 'ready', delayMs: DELAY_MS_MIN + rng.below(DELAY_MS_MAX - DELAY_MS_MIN + 1) }
    },
    check,
  })

  t.equal(run.kills, KILLS, 'every round ended in a kill')
  t.ok(run.acks > 0, 'the writers acknowledged appends')
  t.ok(lastLsn >= run.acks, 'the log holds at least every acknowledged record')
  if (KILLS >= 20) t.ok(totals.segments > 1, 'the log rotated across segments')
  // Locks (and half-made locks) of the killed writers were cleaned up by the takeovers; this process closed its own.
  t.same(fs.readdirSync(dir).filter((n) => n.startsWith('memwal.lock')), [], 'no lock left in the data directory')
  t.comment(`kills: ${run.kills} (${totals.earlyKills} aimed at Wal.open, ${run.killsBeforeReady} before it resolved), acks: ${run.acks}, ack checks: ${totals.ackChecks}`)
  t.comment(`records in the log: ${lastLsn} (${totals.unackedSurvivors} written but not seen acknowledged), torn tails: ${totals.tornTails}, segments: ${totals.segments}`)
})
