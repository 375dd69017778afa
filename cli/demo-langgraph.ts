import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

/**
 * `npm run demo:langgraph`: a LangGraph graph keeps its checkpoints in memwal
 * (MemwalSaver), is killed with SIGKILL in the middle of its run, and is
 * started again: it resumes from its last durable checkpoint, and no step
 * whose checkpoint was acknowledged is lost or done twice. Exits 1 if that
 * does not hold. Takes ~10 s.
 */
const self = fileURLToPath(import.meta.url)
// Built, it runs the built agent; from source (the test runs it through tsx), the agent's source.
const fromSource = self.endsWith('.ts')
const agent = path.join(path.dirname(self), `demo-langgraph-agent.${fromSource ? 'ts' : 'js'}`)
const STEPS = 30
const KILL_AFTER_STEP = 8
const keep = process.argv.includes('--keep')
const dir = mkdtempSync(path.join(os.tmpdir(), 'memwal-demo-langgraph-'))
const say = (s: string): void => void process.stdout.write(`${s}\n`)

interface Run {
  durable: number[]
  start?: { resuming: boolean; done: number[] }
  final?: number[]
}

/** Runs the graph process; with `killAfter`, SIGKILLs it as soon as that step's checkpoint is durable. */
function run(killAfter?: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const out: Run = { durable: [] }
    const child = spawn(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), agent, dir, String(STEPS)], { stdio: ['ignore', 'pipe', 'inherit'] })
    // The child's one-line protocol, split into lines by node:readline.
    createInterface({ input: child.stdout }).on('line', (line) => {
      const [word, rest = ''] = [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)]
      if (word === 'durable') {
        const step = Number(rest)
        out.durable.push(step)
        say(`   checkpoint of step ${step} is durable`)
        if (killAfter !== undefined && step >= killAfter) child.kill('SIGKILL')
      } else if (word === 'start') out.start = JSON.parse(rest) as NonNullable<Run['start']>
      else if (word === 'final') out.final = JSON.parse(rest) as number[]
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      say(`   (graph process ${signal ? `killed by ${signal}` : `exited ${code}`})`)
      if (killAfter === undefined && code !== 0) reject(new Error(`graph process exited ${code}`))
      else resolve(out)
    })
  })
}

let ok = false
try {
  say(`memwal LangGraph demo: a ${STEPS}-step graph, checkpoints in ${dir}`)
  say(`\n== 1. Run the graph; SIGKILL it once step ${KILL_AFTER_STEP}'s checkpoint is durable.`)
  const first = await run(KILL_AFTER_STEP)
  const lastDurable = Math.max(...first.durable)
  say(`\n== 2. Start it again. It loads its last checkpoint from memwal and resumes from there.`)
  const second = await run()
  const resumedWith = second.start?.done ?? []
  say(`   resumed with done = [${resumedWith.join(', ')}] (${resumedWith.length} steps already done)`)
  say(`\n== 3. Check.`)
  const expected = Array.from({ length: STEPS }, (_, i) => i)
  // Step s's checkpoint holds the work of s nodes (step -1 is the input, step 0 the loop before any node ran).
  const lost = resumedWith.length < lastDurable
  const exact = JSON.stringify(second.final) === JSON.stringify(expected)
  say(`   last checkpoint acknowledged before the kill: step ${lastDurable}; resumed from step ${resumedWith.length}: ${lost ? 'LOST WORK' : 'nothing lost'}`)
  say(`   final done has every step exactly once, in order: ${exact ? 'yes' : `NO: ${JSON.stringify(second.final)}`}`)
  ok = second.start?.resuming === true && !lost && exact
  say(ok ? '\nOK: the graph resumed from its last durable checkpoint; nothing acknowledged was lost or redone.' : '\nFAILED')
} finally {
  if (keep) say(`(kept ${dir})`)
  else rmSync(dir, { recursive: true, force: true })
}
process.exitCode = ok ? 0 : 1
