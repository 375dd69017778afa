/**
 * `npm run demo:langgraph` tells its story and checks it: a LangGraph graph
 * SIGKILLed once a checkpoint is durable resumes from that checkpoint, nothing
 * lost, nothing redone. Runs the demo from source through tsx.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { childEnv } from '../support/child-env.js'

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

t.test('the LangGraph demo resumes after SIGKILL with nothing lost', async (t) => {
  const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_DIR, 'cli', 'demo-langgraph.ts')], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    proc.on('error', reject)
    proc.on('close', (c) => resolve({ code: c, stdout }))
  })
  t.match(stdout, /graph process killed by SIGKILL/, 'the first run was killed')
  t.match(stdout, /resumed from step (\d+): nothing lost/, 'the second run resumed from the last durable checkpoint')
  t.match(stdout, /every step exactly once, in order: yes/, 'the final state holds every step once')
  t.equal(code, 0, 'the demo exits 0')
})
