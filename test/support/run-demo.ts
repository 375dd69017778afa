import { spawn } from 'node:child_process'
import path from 'node:path'
import { childEnv } from './child-env.js'
import { REPO_DIR } from './child-process.js'

/** Runs one of the CLI's demos from source (`cli/<name>.ts` through tsx), as a user runs it: its stdout and exit code. */
export function runDemo(name: string): Promise<{ readonly code: number | null; readonly stdout: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_DIR, 'cli', `${name}.ts`)], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    proc.on('error', reject)
    proc.on('close', (code) => resolve({ code, stdout }))
  })
}
