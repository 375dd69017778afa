/**
 * The `engine` profiles of the kill child (test/process/kill-child.ts):
 * MemWAL on a real data directory (LevelDB store) writing under load while
 * its backend misbehaves on a seeded schedule, until it is killed.
 *
 *   engine <dir> <seed> <profile> <deletable-file | -> [backup target]
 *
 * The backend sink is wrapped (`wrapSink`): it goes down and comes back every
 * few ms; in the `flaky-backend` profile it also fails some calls
 * transiently and makes some slow, past the apply timeout (the call times
 * out, yet completes later, and the applier must not apply it twice). Writes
 * go in bursts of 1-12 concurrent calls (group commit); the next burst starts
 * when every write of the last one resolved. After `writesMax` writes (if the
 * profile has a maximum) the child idles, its appliers still draining, until
 * it is killed. Given a backup target, once `BACKUP_AFTER_WRITES` writes were
 * issued it runs `MemWAL.backup` into it while the writes go on.
 *
 * Lines (see test/support/child-process.ts for how they are written):
 *   opening                    MemWAL.open is about to run (recovery follows)
 *   ready <pid> <lastLsn>      MemWAL is open
 *   outage on|off              the backend went down / came back
 *   burst <firstCounter> <n>   writes first..first+n-1 are about to be issued
 *   ack <lsn> <counter>        write <counter> was acknowledged under <lsn>
 *   applied <upToLsn>          a backend apply through <upToLsn> resolved
 *   backup <version>           the backup resolved: every write acknowledged at or below <version> is in it
 *   error <code> <message>     then exit 1
 */
import fs from 'node:fs'
import { MemWAL, type ResilienceConfig, type Sink } from '../../../engine/index.js'
import { SeededRandom, type Op } from '../../../engine/testing.js'
import { exitWithError, writeLine } from '../../support/child-process.js'
import { issueWrite, writeRandom } from '../../support/seeded-writes.js'
import { namespaceOf, nsOption } from '../../support/identity-view.js'

const BURST_MAX = 12
/** Writes issued before the backup starts (the log has rotated and records are pending by then). */
export const BACKUP_AFTER_WRITES = 300

/** What every put of write (seed, counter) carries: it names its writer and its place in the write. */
export interface WriteValue {
  readonly s: number
  readonly c: number
  readonly i: number
  readonly pad: string
}

export const ENGINE_CHILD_NAMESPACES = ['n0', 'n1', 'n2'] as const
export const ENGINE_CHILD_TAGS = ['red', 'green', 'blue'] as const
export const SHARED_KEYS = 48
const HOT_KEYS = 8

export function sharedKey(i: number): string {
  return `key/${String(i).padStart(2, '0')}`
}

/**
 * `shared-keys` writes: one put, one delete, or a batch of 2-10 operations,
 * all on 48 keys every write shares (keys may repeat within a batch).
 */
export function sharedKeyWrite(seed: number, counter: number): Op[] {
  const rng = writeRandom(seed, counter)
  const put = (i: number): Op => {
    const value: WriteValue = { s: seed, c: counter, i, pad: 'v'.repeat(rng.chance(0.9) ? rng.below(120) : 500 + rng.below(3000)) }
    const key = sharedKey(rng.below(SHARED_KEYS))
    const namespace = namespaceOf(key, ENGINE_CHILD_NAMESPACES)
    const tags = rng.chance(0.5) ? ENGINE_CHILD_TAGS.filter(() => rng.chance(0.5)) : undefined
    return { type: 'put', key, value, ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }
  const del = (): Op => delOf(sharedKey(rng.below(SHARED_KEYS)))
  const roll = rng.below(100)
  if (roll < 55) return [put(0)]
  if (roll < 75) return [del()]
  const n = 2 + rng.below(9)
  const ops: Op[] = []
  for (let i = 0; i < n; i++) ops.push(rng.chance(0.7) ? put(i) : del())
  return ops
}

/**
 * `own-keys` writes, so that every acknowledged write stays checkable for a
 * whole run: a put of a key of its own (`u/<seed>/<c>`), a batch of 2-5 puts
 * of its own keys (sometimes with a delete of a deletable key), a put or
 * delete of one of a few hot keys, or a delete of a deletable key (keys that
 * earlier rounds wrote, listed by the parent).
 */
export function ownKeyWrite(seed: number, counter: number, deletable: readonly string[]): Op[] {
  const rng = writeRandom(seed, counter)
  const value = (i: number): WriteValue => ({ s: seed, c: counter, i, pad: 'v'.repeat(rng.chance(0.9) ? rng.below(100) : 400 + rng.below(2500)) })
  const put = (key: string, i: number): Op => {
    const namespace = namespaceOf(key, ENGINE_CHILD_NAMESPACES)
    const tags = rng.chance(0.4) ? ENGINE_CHILD_TAGS.filter(() => rng.chance(0.5)) : undefined
    return { type: 'put', key, value: value(i), ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }
  const own = `u/${seed}/${counter}`
  const roll = rng.below(100)
  if (roll < 50 || (roll >= 80 && roll < 90 && deletable.length === 0)) return [put(own, 0)]
  if (roll < 65) {
    const n = 2 + rng.below(4)
    const ops = Array.from({ length: n }, (_, i) => put(`${own}/${i}`, i))
    if (deletable.length > 0 && rng.chance(0.3)) ops.splice(rng.below(n + 1), 0, delOf(deletable[rng.below(deletable.length)] as string))
    return ops
  }
  if (roll < 80) return [put(`hot/${rng.below(HOT_KEYS)}`, 0)]
  if (roll < 90) return [delOf(deletable[rng.below(deletable.length)] as string)]
  return [delOf(`hot/${rng.below(HOT_KEYS)}`)]
}

/** A delete of `key` in the namespace its puts use (identity is (namespace, key)). */
function delOf(key: string): Op {
  return { type: 'del', key, ...nsOption(key, ENGINE_CHILD_NAMESPACES) }
}

/** How a profile's backend misbehaves, and what it writes. */
export interface EngineProfile {
  readonly write: (seed: number, counter: number, deletable: readonly string[]) => Op[]
  /** The options the child and the parent open the data directory with (small segments: rotation and retention happen). */
  readonly options: { readonly segmentBytes: number; readonly resilience: Partial<ResilienceConfig> }
  readonly outageFlipMsMin: number
  readonly outageFlipMsMax: number
  /** Share of backend calls that fail transiently. */
  readonly transientRate: number
  /** Share of backend calls that take `slowMsMin`-`slowMsMax` (past the apply timeout when it is short). */
  readonly slowRate: number
  readonly slowMsMin: number
  readonly slowMsMax: number
  /** Writes before the child idles (appliers still draining); 0: no limit. */
  readonly writesMax: number
}

const SEGMENT_BYTES = 128 * 1024
const resilience = { retryDelayMsMin: 1, retryDelayMsMax: 20, breakerThreshold: 3, breakerHalfOpenMs: 15 } as const

export const ENGINE_PROFILES = {
  /** Outages and 15% transient failures on own keys (each checkable), no limit, a 60 ms apply timeout: backup-kill9. */
  backup: {
    write: ownKeyWrite,
    options: { segmentBytes: SEGMENT_BYTES, resilience: { ...resilience, applyTimeoutMs: 60 } },
    outageFlipMsMin: 5,
    outageFlipMsMax: 40,
    transientRate: 0.15,
    slowRate: 0,
    slowMsMin: 0,
    slowMsMax: 0,
    writesMax: 0,
  },
  /** Backend outages only, writes on shared keys, no limit: engine-kill9. */
  outage: {
    write: (seed, counter) => sharedKeyWrite(seed, counter),
    options: { segmentBytes: SEGMENT_BYTES, resilience: { ...resilience, applyTimeoutMs: 5_000 } },
    outageFlipMsMin: 5,
    outageFlipMsMax: 45,
    transientRate: 0,
    slowRate: 0,
    slowMsMin: 0,
    slowMsMax: 0,
    writesMax: 0,
  },
  /** Outages, 15% transient failures, 8% of calls slower (30-150 ms) than the 60 ms apply timeout; 200 writes a round on own keys: crash-loop. */
  'flaky-backend': {
    write: ownKeyWrite,
    options: { segmentBytes: SEGMENT_BYTES, resilience: { ...resilience, applyTimeoutMs: 60 } },
    outageFlipMsMin: 5,
    outageFlipMsMax: 40,
    transientRate: 0.15,
    slowRate: 0.08,
    slowMsMin: 30,
    slowMsMax: 150,
    writesMax: 200,
  },
} as const satisfies Record<string, EngineProfile>

export type EngineProfileName = keyof typeof ENGINE_PROFILES

export function isEngineProfile(name: string): name is EngineProfileName {
  return Object.hasOwn(ENGINE_PROFILES, name)
}

/** Reads the parent's list of deletable keys (`-`: none). */
export function readDeletable(file: string): string[] {
  return file === '-' ? [] : (JSON.parse(fs.readFileSync(file, 'utf8')) as string[])
}

export async function writeUnderFaults(dir: string, seed: number, profile: EngineProfile, deletable: readonly string[], backupTo?: string): Promise<void> {
  const rng = new SeededRandom(seed)
  const flaky = new SeededRandom(seed ^ 0xf1a4)
  let outage = rng.chance(0.5)
  const nextFlip = (): number => profile.outageFlipMsMin + rng.below(profile.outageFlipMsMax - profile.outageFlipMsMin + 1)
  const flip = (): void => {
    outage = !outage
    writeLine(`outage ${outage ? 'on' : 'off'}`)
    setTimeout(flip, nextFlip())
  }
  const wrapSink = <S extends Sink>(sink: S): S => {
    if (sink.name !== 'backend') return sink
    const apply = sink.apply.bind(sink)
    sink.apply = async (batch, signal) => {
      if (outage) throw new Error('simulated backend outage')
      if (flaky.chance(profile.transientRate)) throw new Error('simulated transient backend failure')
      if (flaky.chance(profile.slowRate)) await new Promise((resolve) => setTimeout(resolve, profile.slowMsMin + flaky.below(profile.slowMsMax - profile.slowMsMin + 1)))
      await apply(batch, signal)
      writeLine(`applied ${batch.upToLsn}`)
    }
    return sink
  }
  writeLine('opening')
  const engine = await MemWAL.open({ ...profile.options, dir, wrapSink, random: new SeededRandom(seed ^ 0x51ed) })
  writeLine(`ready ${process.pid} ${engine.health().wal.lastLsn}`)
  writeLine(`outage ${outage ? 'on' : 'off'}`)
  setTimeout(flip, nextFlip())
  let counter = 0
  let backupStarted = false
  while (profile.writesMax === 0 || counter < profile.writesMax) {
    if (backupTo !== undefined && !backupStarted && counter >= BACKUP_AFTER_WRITES) {
      backupStarted = true
      // Not awaited: the writes go on while it copies.
      engine.backup(backupTo).then((r) => writeLine(`backup ${r.version}`), exitWithError)
    }
    const n = Math.min(1 + rng.below(BURST_MAX), profile.writesMax === 0 ? BURST_MAX : profile.writesMax - counter)
    writeLine(`burst ${counter} ${n}`)
    const burst: Promise<void>[] = []
    for (let k = 0; k < n; k++) {
      const c = counter++
      burst.push(issueWrite(engine, profile.write(seed, c, deletable)).then(({ lsn }) => writeLine(`ack ${lsn} ${c}`)))
    }
    await Promise.all(burst)
  }
  // Idle until killed: the appliers go on draining into the backend.
}
