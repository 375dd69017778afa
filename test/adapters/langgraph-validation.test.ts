/**
 * LangGraph's official checkpoint-saver conformance suite
 * (@langchain/langgraph-checkpoint-validation, pinned to 1.1.1 in
 * package.json) runs against MemwalSaver: every one of its tests must run and
 * pass. The suite is written for vitest (it needs vitest's globals), so it runs
 * as a child and reports through vitest's JSON reporter.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { tmpDir } from '../support/tmp-dir.js'
import { childEnv } from '../support/child-env.js'

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const VITEST = path.join(REPO_DIR, 'node_modules', 'vitest', 'vitest.mjs')
const CONFIG = path.join(REPO_DIR, 'test', 'adapters', 'vitest', 'vitest.config.ts')
/** How many tests version 1.1.1 of the suite defines (its own count; a different number means a different suite). */
const SUITE_TESTS = 718

interface VitestReport {
  numTotalTests: number
  numPassedTests: number
  numFailedTests: number
  numPendingTests: number
  numTodoTests: number
  testResults: { assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[]
}

t.test('MemwalSaver passes the whole LangGraph checkpoint validation suite', async (t) => {
  const out = path.join(tmpDir(t, 'memwal-lg-vitest-'), 'report.json')
  const code = await new Promise<number | null>((resolve, reject) => {
    const proc = spawn(process.execPath, [VITEST, 'run', '--config', CONFIG, '--reporter=json', '--outputFile', out], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-20_000)))
    proc.on('error', reject)
    proc.on('close', (c) => {
      if (c !== 0) t.comment(stderr)
      resolve(c)
    })
  })
  const report = JSON.parse(fs.readFileSync(out, 'utf8')) as VitestReport
  const failed = report.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === 'failed').map((a) => `${a.fullName}: ${a.failureMessages[0]?.slice(0, 300) ?? ''}`))
  t.same(failed, [], 'no test of the suite failed')
  t.equal(report.numTotalTests, SUITE_TESTS, `the suite defines ${SUITE_TESTS} tests`)
  t.equal(report.numPassedTests, SUITE_TESTS, 'every one of them ran and passed (none skipped)')
  t.equal(code, 0, 'vitest exits 0')
  t.comment(`LangGraph checkpoint validation: ${report.numPassedTests} of ${report.numTotalTests} passed`)
})
