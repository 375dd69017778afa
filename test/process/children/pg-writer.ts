/**
 * The `pg` profile of the kill child (test/process/kill-child.ts), for
 * test/process/pg-multiwriter.test.ts:
 *
 *   pg <dir> <writerId> <incarnation> <seed> <url> <schema>
 *
 * runs MemWAL on its own data directory with a PgBackend (writer id given)
 * on the shared schema, and writes puts, deletes and batches on a key space
 * every writer shares, so that writers conflict. A value names its writer,
 * incarnation and write: { w, n, c, i }.
 *
 * Lines (see test/support/child-process.ts for how they are written):
 *   ready <pid> <lastLsn> <cp>     MemWAL is open; <cp> is the backend's checkpoint (read from PostgreSQL)
 *   ack <lsn> <json ops>           a write resolved: acknowledged under <lsn>
 *   flushed <lastLsn> <checkpoint> after `stop` on stdin: writing stopped and every sink caught up
 *   error <code> <message>         then exit 1
 */
import { MemWAL, PgBackend } from '../../../engine/index.js'
import { SeededRandom, type Op } from '../../../engine/testing.js'
import { writeLine } from '../../support/child-process.js'
import { issueWrite, writeRandom } from '../../support/seeded-writes.js'
import { namespaceOf } from '../../support/identity-view.js'

export const PG_CHILD_KEYS = 24
export const PG_CHILD_NAMESPACES = ['n0', 'n1'] as const
export const PG_CHILD_TAGS = ['red', 'green', 'blue'] as const
const BURST_MAX = 8
/** Pause between bursts: keeps the log to a size the test verifies in a few seconds. */
const BURST_GAP_MS = 3

/** What the writers apply and time out with: short, so that outages show within a test. */
export const pgChildBackendOptions = { statementTimeoutMs: 1500, connectTimeoutMs: 1000, poolSize: 2 } as const
export const pgChildEngineOptions = {
  resilience: { retryDelayMsMin: 5, retryDelayMsMax: 250, breakerThreshold: 3, breakerHalfOpenMs: 250, applyTimeoutMs: 3000 },
  closeGraceMs: 3000,
} as const

export function pgChildKey(i: number): string {
  return `k/${String(i).padStart(2, '0')}`
}

export interface PgChildValue {
  readonly w: string
  readonly n: number
  readonly c: number
  readonly i: number
}

/** Write `counter` of incarnation `n` of writer `w`: one put, one delete, or a batch of 2-6 operations (keys may repeat). */
export function pgChildWrite(w: string, n: number, seed: number, counter: number): Op[] {
  const rng = writeRandom(seed, counter, Math.imul(n + 7, 0xc2b2ae35))
  const put = (i: number): Op => {
    const value: PgChildValue = { w, n, c: counter, i }
    const tags = rng.chance(0.5) ? PG_CHILD_TAGS.filter(() => rng.chance(0.5)) : undefined
    const key = pgChildKey(rng.below(PG_CHILD_KEYS))
    const namespace = namespaceOf(key, PG_CHILD_NAMESPACES)
    return { type: 'put', key, value, ...(namespace !== undefined ? { namespace } : {}), ...(tags ? { tags } : {}) }
  }
  // Identity is (namespace, key): each key lives in one namespace (a function of the key), so the test's key-keyed model holds.
  const del = (): Op => {
    const key = pgChildKey(rng.below(PG_CHILD_KEYS))
    const namespace = namespaceOf(key, PG_CHILD_NAMESPACES)
    return { type: 'del', key, ...(namespace !== undefined ? { namespace } : {}) }
  }
  const roll = rng.below(100)
  if (roll < 60) return [put(0)]
  if (roll < 75) return [del()]
  const ops: Op[] = []
  for (let i = 0, k = 2 + rng.below(5); i < k; i++) ops.push(rng.chance(0.75) ? put(i) : del())
  return ops
}

export interface PgWriterArgs {
  readonly dir: string
  readonly writerId: string
  readonly incarnation: number
  readonly seed: number
  readonly url: string
  readonly schema: string
}

export function pgWriterArgs(a: PgWriterArgs): string[] {
  return ['pg', a.dir, a.writerId, String(a.incarnation), String(a.seed), a.url, a.schema]
}

export async function writeToPg(a: PgWriterArgs): Promise<void> {
  const backend = new PgBackend({ connectionString: a.url, writerId: a.writerId, schema: a.schema, ...pgChildBackendOptions })
  const engine = await MemWAL.open({ dir: a.dir, backend, random: new SeededRandom(a.seed ^ 0x5eed), ...pgChildEngineOptions })
  writeLine(`ready ${process.pid} ${engine.health().wal.lastLsn} ${backend.checkpoint}`)
  let stopping = false
  process.stdin.setEncoding('utf8').on('data', (s: string) => {
    if (s.includes('stop')) stopping = true
  })
  const rng = new SeededRandom(a.seed)
  let counter = 0
  while (!stopping) {
    const burst: Promise<void>[] = []
    for (let k = 0, n = 1 + rng.below(BURST_MAX); k < n; k++) {
      const ops = pgChildWrite(a.writerId, a.incarnation, a.seed, counter++)
      burst.push(issueWrite(engine, ops).then(({ lsn }) => writeLine(`ack ${lsn} ${JSON.stringify(ops)}`)))
    }
    await Promise.all(burst)
    await new Promise((r) => setTimeout(r, BURST_GAP_MS))
  }
  await engine.flush({ timeoutMs: 60_000 })
  const h = engine.health()
  writeLine(`flushed ${h.wal.lastLsn} ${h.sinks['backend']?.checkpoint ?? -1}`)
  await engine.close()
  process.exit(0)
}

