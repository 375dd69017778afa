/**
 * G1 against real processes on the real filesystem: a writer process is
 * SIGKILLed at random moments, over and over, on one data directory. After
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
import { describeFinding, RecordCodec, SeededRandom, Wal } from '../../engine/index.js'
import { tmpDir } from '../support/tmp-dir.js'
import { CHILD_SEGMENT_BYTES, parseKey, recordFor, spawnChild, type Child } from '../support/writer-child.js'

const KILLS = Number(process.env['MEMWAL_KILLS'] ?? 50)
const SEED = Number(process.env['MEMWAL_SEED'] ?? randomInt(0, 2 ** 31))
/** Kill delay after `ready`, ms. */
const DELAY_MS_MIN = 2
const DELAY_MS_MAX = 150
/** One round in this many kills the child at a random moment during or just after its Wal.open (recovery, lock, segment preparation). */
const EARLY_KILL_ONE_IN = 8

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

interface Totals {
  kills: number
  earlyKills: number
  killsDuringOpen: number
  acks: number
  ackChecks: number
  unackedSurvivors: number
  tornTails: number
  segments: number
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function firstKey(codec: RecordCodec, type: 1 | 2 | 3, payload: Uint8Array): string {
  const rec = codec.decode(type, payload)
  if (rec.type === 3) return rec.ops[0]?.key ?? ''
  return rec.op.key
}

t.test(`kill -9 a writer ${KILLS} times: every acknowledged append survives (seed ${SEED})`, async (t) => {
  t.comment(`MEMWAL_SEED=${SEED} MEMWAL_KILLS=${KILLS}`)
  const dir = path.join(tmpDir(t, 'memwal-kill9-'), 'data')
  const rng = new SeededRandom(SEED)
  const codec = new RecordCodec()
  const roundOfSeed = new Map<number, number>()
  const acks: Ack[] = []
  const totals: Totals = { kills: 0, earlyKills: 0, killsDuringOpen: 0, acks: 0, ackChecks: 0, unackedSurvivors: 0, tornTails: 0, segments: 0 }
  let child: Child | undefined
  t.teardown(() => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL')
  })
  let lastLsn = 0
  /** What the log held at each LSN when last verified (index 0 unused). */
  const log: (Verified | undefined)[] = [undefined]
  /** How long the child's Wal.open took last time: the window early kills aim at. */
  let openMs = 20

  for (let round = 0; round < KILLS; round++) {
    let childSeed = rng.nextU32()
    while (roundOfSeed.has(childSeed)) childSeed = rng.nextU32()
    roundOfSeed.set(childSeed, round)

    // ---- run a writer and kill it ----
    const roundAcks: Ack[] = []
    const bad: string[] = []
    let readyLast: number | undefined
    let openingAtMs: number | undefined
    let onOpening = (): void => undefined
    let onReady = (): void => undefined
    const opening = new Promise<void>((resolve) => (onOpening = resolve))
    const ready = new Promise<void>((resolve) => (onReady = resolve))
    child = spawnChild([dir, String(childSeed)], {
      keepLines: false,
      onLine: (line) => {
        const [word, a, b] = line.split(' ')
        if (word === 'ack') roundAcks.push({ lsn: Number(a), round, counter: Number(b) })
        else if (word === 'opening') {
          openingAtMs = performance.now()
          onOpening()
        } else if (word === 'ready') {
          readyLast = Number(b)
          if (openingAtMs !== undefined) openMs = performance.now() - openingAtMs
          onReady()
        } else bad.push(line)
      },
    })
    const early = rng.below(EARLY_KILL_ONE_IN) === 0
    const delayMs = DELAY_MS_MIN + rng.below(DELAY_MS_MAX - DELAY_MS_MIN + 1)
    if (early) {
      // Somewhere in Wal.open (recovery, lock, segment preparation) or just after it.
      await Promise.race([opening, child.ended])
      await sleep(rng.below(Math.ceil(openMs * 1.5) + 1))
    } else {
      await Promise.race([ready, child.ended])
      if (readyLast === undefined) {
        t.fail(`round ${round}: the child ended before ready: ${bad.join(' | ')} ${child.stderr().slice(0, 2000)}`)
        break
      }
      await sleep(delayMs)
    }
    child.proc.kill('SIGKILL')
    const end = await child.ended
    totals.kills++
    if (early) totals.earlyKills++
    if (readyLast === undefined) totals.killsDuringOpen++
    if (end.signal !== 'SIGKILL') {
      t.fail(`round ${round}: the child ended by itself (${String(end.code)}): ${bad.join(' | ')} ${child.stderr().slice(0, 2000)}`)
      break
    }
    if (bad.length > 0) t.fail(`round ${round}: unexpected child output: ${bad.slice(0, 5).join(' | ')}`)
    if (readyLast !== undefined && readyLast !== lastLsn) t.fail(`round ${round}: the child opened a log ending at ${readyLast}, the parent had verified ${lastLsn}`)
    acks.push(...roundAcks)
    totals.acks += roundAcks.length

    // ---- open in this process (takes over the dead child's lock at once) and verify ----
    const wal = await Wal.open({ dir, segmentBytes: CHILD_SEGMENT_BYTES })
    try {
      const other = wal.recovery.findings.filter((f) => f.kind !== 'torn-tail')
      if (other.length > 0) t.fail(`round ${round}: recovery found more than a torn tail: ${other.map(describeFinding).join('; ')}`)
      totals.tornTails += wal.recovery.findings.length - other.length

      let expected = 1
      let due = 0
      for await (const r of wal.read(1)) {
        if (r.lsn !== expected) {
          t.fail(`round ${round}: LSN ${r.lsn} read where ${expected} was due`)
          break
        }
        expected++
        const seen = log[r.lsn]
        if (seen !== undefined) {
          // Verified after an earlier kill: it must not have changed since.
          if (r.type !== seen.type || !seen.payload.equals(r.payload)) {
            t.fail(`round ${round}: LSN ${r.lsn} (writer ${seen.round}, record ${seen.counter}) changed since it was verified`)
            break
          }
          continue
        }
        // New since the last kill: written by this round's child, its records in order from 0, each exactly as appended.
        const id = parseKey(firstKey(codec, r.type, r.payload))
        const owner = id === undefined ? undefined : roundOfSeed.get(id.seed)
        if (id === undefined || owner !== round || id.counter !== due) {
          t.fail(`round ${round}: LSN ${r.lsn} holds ${id ? `writer ${String(owner)}'s record ${id.counter}` : 'a record no writer appended'} where this writer's record ${due} was due`)
          break
        }
        const want = recordFor(id.seed, id.counter)
        if (r.type !== want.type || !Buffer.from(codec.encode(want)).equals(r.payload)) {
          t.fail(`round ${round}: LSN ${r.lsn} (writer ${owner}, record ${id.counter}) does not read back as appended`)
          break
        }
        due++
        log[r.lsn] = { round, counter: id.counter, type: r.type, payload: Buffer.from(r.payload) }
      }
      const readLast = expected - 1
      if (readLast !== wal.lastLsn) t.fail(`round ${round}: read to LSN ${readLast}, the log's last LSN is ${wal.lastLsn}`)
      if (readLast < lastLsn) {
        t.fail(`round ${round}: the log shrank from ${lastLsn} to ${readLast}`)
        break
      }
      totals.unackedSurvivors += readLast - lastLsn - roundAcks.length

      // G1: every append that resolved, in this round and all before, reads back as acknowledged.
      let lost = 0
      for (const a of acks) {
        totals.ackChecks++
        const at = a.lsn <= readLast ? log[a.lsn] : undefined
        if (at?.round !== a.round || at.counter !== a.counter) {
          if (lost++ < 5) t.fail(`round ${round}: acknowledged LSN ${a.lsn} (writer ${a.round}, record ${a.counter}) reads back as ${at ? `writer ${at.round}, record ${at.counter}` : 'nothing'}`)
        }
      }
      if (lost > 0) break
      lastLsn = readLast
      totals.segments = (await wal.segments()).length
    } finally {
      await wal.close()
    }
  }

  t.equal(totals.kills, KILLS, 'every round ended in a kill')
  t.ok(totals.acks > 0, 'the writers acknowledged appends')
  t.ok(lastLsn >= totals.acks, 'the log holds at least every acknowledged record')
  if (KILLS >= 20) t.ok(totals.segments > 1, 'the log rotated across segments')
  // Locks (and half-made locks) of the killed writers were cleaned up by the takeovers; this process closed its own.
  t.same(fs.readdirSync(dir).filter((n) => n.startsWith('memwal.lock')), [], 'no lock left in the data directory')
  t.comment(`kills: ${totals.kills} (${totals.earlyKills} aimed at Wal.open, ${totals.killsDuringOpen} before it resolved), acks: ${totals.acks}, ack checks: ${totals.ackChecks}`)
  t.comment(`records in the log: ${lastLsn} (${totals.unackedSurvivors} written but not seen acknowledged), torn tails: ${totals.tornTails}, segments: ${totals.segments}`)
})
