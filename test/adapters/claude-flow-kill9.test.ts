/**
 * SIGKILL in the middle of claude-flow memory writes loses nothing
 * acknowledged: a child stores entries through MemwalMemoryBackend and is
 * killed; after each kill the directory is reopened and every entry whose
 * store() had resolved must read back whole. (claude-flow's own SqlJsBackend
 * lost 44,446 of 81,546 acknowledged stores in the same kind of test, issue 13.)
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { MemwalMemoryBackend } from '../../adapters/claude-flow/index.js'
import { tmpDir } from '../support/tmp-dir.js'
import { childEnv } from '../support/child-env.js'

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support', 'cf-writer-child.ts')
const KILLS = Number(process.env['MEMWAL_CF_KILLS'] ?? 3)
const ACKS_BEFORE_KILL = 200

function runAndKill(dir: string, prefix: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const acked: string[] = []
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, prefix], { env: childEnv(), stdio: ['ignore', 'pipe', 'inherit'] })
    let buf = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      buf += s
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (line.startsWith('ack ')) acked.push(line.slice(4))
        if (acked.length >= ACKS_BEFORE_KILL) child.kill('SIGKILL')
      }
    })
    child.on('error', reject)
    child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve(acked) : reject(new Error(`child exited without being killed (${String(signal)})`))))
  })
}

t.test(`${KILLS} SIGKILLs of a claude-flow memory writer lose no acknowledged store`, async (t) => {
  const dir = tmpDir(t)
  let total = 0
  for (let k = 0; k < KILLS; k++) {
    const acked = await runAndKill(dir, `run${k}`)
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
