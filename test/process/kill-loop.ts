/**
 * The one kill loop of the process tests: round after round, a kill child
 * (test/process/kill-child.ts) runs on one data directory and is SIGKILLed at
 * a moment chosen from the run's seed; after each kill the test's `check`
 * examines what the child left (reading the lines it printed before the
 * kill), and returns the log's last LSN it verified, which the next child
 * must open at.
 *
 * Every line a child printed is an event that happened before the kill (see
 * test/support/child-process.ts); the loop parses the protocol's common
 * lines and fails the test on any other line, on a child that ended by
 * itself, and on a child that opened the log anywhere but where the last
 * check left it.
 */
import { SeededRandom } from '../../engine/testing.js'
import type { Child } from '../support/child-process.js'
import { sleep } from '../support/wait-for.js'
import { spawnKillChild } from './kill-child.js'

/** The part of a tap Test the loop uses. */
export interface LoopTest {
  fail(message: string): void
  teardown(fn: () => unknown): void
}

/** What one child did before its kill, from its lines. */
export interface Round {
  readonly round: number
  readonly childSeed: number
  /** counter -> LSN of every write the child saw acknowledged. */
  readonly acks: Map<number, number>
  /** Writes issued (first counter past the last burst begun). */
  issued: number
  /** The first counter and size of the last burst begun. */
  lastBurst?: { readonly first: number; readonly n: number }
  /** The log's last LSN when the child's open resolved; undefined if killed before. */
  readyLast?: number
  /** ms from `opening` to `ready`, when both were seen. */
  openMs?: number
  /** Highest LSN through which a backend apply of the child resolved. */
  childApplied: number
  /** Outages of the backend begun. */
  outagesBegun: number
  /** The version of the backup the child made, once it resolved (the `backup` line). */
  backupVersion?: number
}

/** When to kill: `delayMs` after the child prints `opening` (recovery ahead), `ready`, or `backup` (its backup resolved). */
export interface KillMoment {
  readonly after: 'opening' | 'ready' | 'backup'
  readonly delayMs: number
}

export interface KillLoopOptions {
  readonly kills: number
  readonly seed: number
  /** The kill child's arguments for this round (may draw from `rng`). */
  args(childSeed: number, round: number, rng: SeededRandom): string[]
  /** When this round's child dies (may draw from `rng`; `previous` is the last round). */
  killMoment(rng: SeededRandom, previous: Round | undefined): KillMoment
  /**
   * Examines the directory after the kill; returns the log's last LSN as
   * verified, or undefined to stop the run (after reporting why).
   */
  check(r: Round): Promise<number | undefined>
}

export interface KillLoopResult {
  readonly kills: number
  /** Kills that landed before the child's open resolved. */
  readonly killsBeforeReady: number
  readonly acks: number
  readonly outagesBegun: number
  readonly childApplied: number
}

export async function killLoop(t: LoopTest, o: KillLoopOptions): Promise<KillLoopResult> {
  const rng = new SeededRandom(o.seed)
  const seeds = new Set<number>()
  const totals = { kills: 0, killsBeforeReady: 0, acks: 0, outagesBegun: 0, childApplied: 0 }
  let child: Child | undefined
  t.teardown(() => child?.killIfRunning())
  let verifiedLast = 0
  let previous: Round | undefined
  for (let round = 0; round < o.kills; round++) {
    let childSeed = rng.nextU32()
    while (seeds.has(childSeed)) childSeed = rng.nextU32()
    seeds.add(childSeed)
    const args = o.args(childSeed, round, rng)
    const moment = o.killMoment(rng, previous)
    const r: Round = { round, childSeed, acks: new Map(), issued: 0, childApplied: 0, outagesBegun: 0 }
    const unexpected: string[] = []
    let openingAt: number | undefined
    let onMark = (): void => undefined
    const mark = new Promise<void>((resolve) => (onMark = resolve))
    child = spawnKillChild(args, {
      keepLines: false,
      onLine: (line) => {
        const [word, a, b] = line.split(' ')
        if (word === 'ack') r.acks.set(Number(b), Number(a))
        else if (word === 'burst') {
          r.lastBurst = { first: Number(a), n: Number(b) }
          r.issued = Number(a) + Number(b)
        } else if (word === 'applied') r.childApplied = Math.max(r.childApplied, Number(a))
        else if (word === 'outage') r.outagesBegun += a === 'on' ? 1 : 0
        else if (word === 'opening') {
          openingAt = performance.now()
          if (moment.after === 'opening') onMark()
        } else if (word === 'ready') {
          r.readyLast = Number(b)
          if (openingAt !== undefined) r.openMs = performance.now() - openingAt
          if (moment.after === 'ready') onMark()
        } else if (word === 'backup') {
          r.backupVersion = Number(a)
          if (moment.after === 'backup') onMark()
        } else unexpected.push(line)
      },
    })
    await Promise.race([mark, child.ended])
    await sleep(moment.delayMs)
    child.proc.kill('SIGKILL')
    const end = await child.ended
    const said = (): string => `${unexpected.slice(0, 3).join(' | ').slice(0, 1000)} ${child?.stderr().slice(0, 2000) ?? ''}`
    if (end.signal !== 'SIGKILL') {
      t.fail(`round ${round}: the child ended by itself (${String(end.code)}): ${said()}`)
      break
    }
    totals.kills++
    if (r.readyLast === undefined) totals.killsBeforeReady++
    totals.acks += r.acks.size
    totals.outagesBegun += r.outagesBegun
    totals.childApplied = Math.max(totals.childApplied, r.childApplied)
    if (unexpected.length > 0) t.fail(`round ${round}: unexpected child output: ${said()}`)
    if (r.readyLast !== undefined && r.readyLast !== verifiedLast) t.fail(`round ${round}: the child opened a log ending at ${r.readyLast}, the last check left it at ${verifiedLast}`)
    const last = await o.check(r)
    if (last === undefined) break
    verifiedLast = last
    previous = r
  }
  return totals
}
