import { spawn } from 'node:child_process'
import type { Test } from 'tap'
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

/**
 * What every one-shot bench (bench/run-args.ts) promises, checked on a small
 * run of `script`: `--records N --reps 1 --json` exits 0 (stderr shown when
 * not) with exactly one line on stdout, in which `records` is N and each of
 * `figures` is positive and finite; a bad option exits 16 (a usage error).
 * Speed is never asserted.
 */
export async function checkBenchJson(t: Test, script: string, records: number, figures: readonly string[]): Promise<void> {
  const { code, stdout, stderr } = await runBench(script, ['--records', String(records), '--reps', '1', '--json'])
  t.equal(code, 0, stderr)
  const lines = stdout.trim().split('\n')
  t.equal(lines.length, 1, 'exactly one line on stdout')
  const r = JSON.parse(lines[0] as string) as Record<string, number>
  for (const k of figures) t.ok(Number.isFinite(r[k]) && (r[k] as number) > 0, `${k} = ${r[k]}`)
  t.equal(r['records'], records)
  t.equal((await runBench(script, ['--records', 'many'])).code, 16, 'a bad option is a usage error')
}
