/**
 * Runs vitest on one config as a child process and reads its JSON report:
 * for the suites written for vitest (LangGraph's conformance suite needs its
 * globals; the fake-timers test needs its fakes), run from tap.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { tmpDir } from './tmp-dir.js'
import { childEnv } from './child-env.js'

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const VITEST = path.join(REPO_DIR, 'node_modules', 'vitest', 'vitest.mjs')

export interface VitestReport {
  numTotalTests: number
  numPassedTests: number
  numFailedTests: number
  numPendingTests: number
  numTodoTests: number
  testResults: { assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[]
}

/** vitest's exit code and report for `config` (a path under test/adapters/vitest/); its stderr goes to the test's comments when it fails. */
export async function runVitest(t: Test, config: string): Promise<{ code: number | null; report: VitestReport; failed: string[] }> {
  const out = path.join(tmpDir(t, 'memwal-vitest-'), 'report.json')
  const code = await new Promise<number | null>((resolve, reject) => {
    const proc = spawn(process.execPath, [VITEST, 'run', '--config', path.join(REPO_DIR, config), '--reporter=json', '--outputFile', out], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
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
  return { code, report, failed }
}
