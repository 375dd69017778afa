import { spawn } from 'node:child_process'
import { REPO_DIR } from './child-process.js'
import { childEnv } from './child-env.js'

/** Runs a bench script (`bench/<name>.ts`) under tsx from the repository: its exit code and what it printed. */
export async function runBench(script: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: REPO_DIR, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve))
  return { code, stdout, stderr }
}
