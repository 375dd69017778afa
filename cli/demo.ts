import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { MemWAL, QUERY_RESULTS_MAX } from '../engine/index.js'
import { AGENT_NAMESPACE, indexOf, memoryOf } from './demo-memory.js'

/**
 * `npm run demo`: memwal's main job, end to end, on the embedded default
 * (LevelDB), explained step by step:
 * an agent stores memories, its backend goes down, writes are still
 * acknowledged, the agent is killed with SIGKILL, `memwal replay` recovers,
 * `memwal fsck` shows everything consistent, and every acknowledged memory
 * is read back.
 */
const self = fileURLToPath(import.meta.url)
const here = path.dirname(self)
// Built, it runs the built CLI and agent; from source (the test runs it through tsx), their sources.
const fromSource = self.endsWith('.ts')
const ext = fromSource ? 'ts' : 'js'
const node = (script: string): string[] => [...(fromSource ? ['--import', 'tsx'] : []), path.join(here, `${script}.${ext}`)]
const cli = node('main')
const keep = process.argv.includes('--keep')
const dir = mkdtempSync(path.join(os.tmpdir(), 'memwal-demo-'))
const say = (s: string): void => void process.stdout.write(`${s}\n`)
const step = (n: number, s: string): void => say(`\n== ${n}. ${s}`)

async function runAgent(ms: number): Promise<{ acked: Map<string, number>; lastLsn: number }> {
  const acked = new Map<string, number>()
  let lastLsn = 0
  const child = spawn(process.execPath, [...node('demo-agent'), dir], { stdio: ['ignore', 'pipe', 'inherit'] })
  let ready!: () => void
  const isReady = new Promise<void>((r) => (ready = r))
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'ready') ready()
    const m = /^ack (\d+) (\S+)$/.exec(line)
    if (m) {
      lastLsn = Number(m[1])
      acked.set(m[2] as string, lastLsn)
    }
  })
  const exited = new Promise<void>((r) => child.on('exit', () => r()))
  await isReady
  await new Promise((r) => setTimeout(r, ms))
  child.kill('SIGKILL')
  await exited
  return { acked, lastLsn }
}

function cliRun(args: string[]): number {
  const r = spawnSync(process.execPath, [...cli, ...args], { stdio: 'inherit' })
  return r.status ?? -1
}

try {
  say(`memwal demo: data directory ${dir}`)
  step(1, 'An agent process opens memwal and stores memories. Its backend (LevelDB) is DOWN: every apply fails.')
  say('   Each write is acknowledged only after it is durable in the write-ahead log, so the outage does not stop the agent.')
  const { acked, lastLsn } = await runAgent(1500)
  say(`   The agent had ${acked.size} memories acknowledged (last LSN ${lastLsn}) while the backend was down.`)
  step(2, 'The agent was killed with SIGKILL: no shutdown, no flush. None of those memories reached the backend.')
  step(3, '`memwal replay`: recover the log and apply everything unapplied to the backend and the index.')
  const replayCode = cliRun(['replay', dir])
  say(`   exit code ${replayCode}`)
  step(4, '`memwal fsck`: prove that the log, the backend and the index agree.')
  const fsckCode = cliRun(['fsck', dir])
  say(`   exit code ${fsckCode} (0 = clean)`)
  step(5, 'Read back every memory the agent was told was stored.')
  const db = await MemWAL.open({ dir })
  let missing = 0
  // Read as the agent wrote it: in its namespace, with the value it was acknowledged with (demo-agent.ts's memoryOf).
  for (const [key, lsn] of acked) {
    const entry = await db.getEntry(key, { namespace: AGENT_NAMESPACE })
    if (entry === undefined || entry.version !== lsn || JSON.stringify(entry.value) !== JSON.stringify(memoryOf(indexOf(key)))) missing++
  }
  let inNamespace = 0
  for await (const _ of db.query({ namespace: AGENT_NAMESPACE, limit: QUERY_RESULTS_MAX })) inNamespace++
  await db.close()
  say(`   ${acked.size - missing} of ${acked.size} acknowledged memories read back; ${missing} missing. A query for namespace ${AGENT_NAMESPACE} finds ${inNamespace}.`)
  const ok = missing === 0 && replayCode <= 1 && fsckCode === 0
  say(ok ? '\nResult: no acknowledged write was lost across a backend outage and a kill -9.' : '\nResult: FAILED: see above.')
  process.exitCode = ok ? 0 : 1
} finally {
  if (keep) say(`(kept ${dir})`)
  else rmSync(dir, { recursive: true, force: true })
}
