/**
 * SIGKILL in the middle of claude-flow memory writes loses nothing
 * acknowledged: a writer (bench/adapter-kill.ts, the one the harness's
 * `cf-memwal/kill9` and `cf-sqljs/kill9` run) stores entries through
 * MemwalMemoryBackend, 8 in flight, and is killed; after each kill the
 * directory is reopened and every entry whose store() had resolved must read
 * back whole. (claude-flow's own SqlJsBackend lost 44,446 of 81,546
 * acknowledged stores in the same kind of test, issue 13; the harness runs
 * both side by side.)
 */
import t from 'tap'
import { MemwalMemoryBackend } from '../../adapters/claude-flow/index.js'
import { runAndKill } from '../../bench/adapter-kill.js'
import { tmpDir } from '../support/tmp-dir.js'
import { childEnv } from '../support/child-env.js'

const KILLS = Number(process.env['MEMWAL_CF_KILLS'] ?? 3)
const ACKS_BEFORE_KILL = 200

t.test(`${KILLS} SIGKILLs of a claude-flow memory writer lose no acknowledged store`, async (t) => {
  const dir = tmpDir(t)
  let total = 0
  for (let k = 0; k < KILLS; k++) {
    const acked = await runAndKill('cf-memwal', dir, `run${k}`, { afterAcks: ACKS_BEFORE_KILL }, childEnv())
    const backend = new MemwalMemoryBackend({ dir })
    await backend.initialize()
    let lost = 0
    for (const id of acked) {
      const e = await backend.get(id)
      if (!e || e.content !== `content of ${id}` || e.embedding?.length !== 3) lost++
    }
    await backend.shutdown()
    t.equal(lost, 0, `kill ${k + 1}: ${acked.length} acknowledged stores, ${lost} lost`)
    total += acked.length
  }
  t.ok(total >= KILLS * ACKS_BEFORE_KILL, `${total} acknowledged stores checked`)
})
