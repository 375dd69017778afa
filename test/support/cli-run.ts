/**
 * Runs the `memwal` CLI as a subprocess, the way a user does: the TypeScript
 * entry through tsx (`node --import tsx cli/main.ts ...`), so the tests never
 * depend on a stale dist/. Also copies data-directory fixtures into a temp
 * dir, and holds a data directory's lock from a child process:
 *
 *   node --import tsx test/support/cli-run.ts --hold <dir>
 *
 * opens MemWAL on <dir>, prints `ready <pid>`, and keeps the directory open
 * until its stdin closes (then closes the engine and exits 0).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import type { Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { MemWAL } from '../../engine/index.js'
import { tmpDir } from './tmp-dir.js'
import { childEnv } from './child-env.js'
import { exitWithError, exitWithUsage, isMainModule, REPO_DIR, spawnChild, writeLine } from './child-process.js'
import type { Op } from '../../engine/testing.js'

const SELF = fileURLToPath(import.meta.url)
export { REPO_DIR }
export const CLI_ENTRY = path.join(REPO_DIR, 'cli', 'main.ts')
export const DATADIRS = path.join(REPO_DIR, 'fixtures', 'datadirs')

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export { childEnv }

export interface RunOptions {
  /** Run as this user and group (root only): how EACCES is reached when the tests run as root. */
  readonly uid?: number
  readonly gid?: number
  readonly timeoutMs?: number
  /**
   * A JavaScript entry to run with plain node instead of the TypeScript one
   * through tsx: a child running as another user needs a copy it can read
   * (see world-readable-cli.ts).
   */
  readonly entry?: string
  /** Variables set for the child over the test's own (undefined: removed). */
  readonly env?: NodeJS.ProcessEnv
}

/** `memwal <args...>`; resolves when it exits, with everything it wrote. */
export function runCli(args: readonly string[], o: RunOptions = {}): Promise<CliResult> {
  const options: SpawnOptions = { cwd: o.entry !== undefined ? path.dirname(o.entry) : REPO_DIR, env: childEnv(o.env), stdio: ['ignore', 'pipe', 'pipe'], ...(o.uid !== undefined ? { uid: o.uid } : {}), ...(o.gid !== undefined ? { gid: o.gid } : {}) }
  const node = o.entry !== undefined ? [process.execPath, o.entry, ...args] : [process.execPath, '--import', 'tsx', CLI_ENTRY, ...args]
  // The test runner's process tracking re-adds its hooks to every child (they write under .tap/, which another
  // user may not): a child running as another user goes through env(1), which drops them before node starts.
  const proc = o.uid !== undefined ? spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', ...node], options) : spawn(node[0] as string, node.slice(1), options)
  let stdout = ''
  let stderr = ''
  proc.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  proc.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const timer = setTimeout(() => proc.kill('SIGKILL'), o.timeoutMs ?? 120_000)
  return new Promise((resolve, reject) => {
    proc.on('error', reject)
    proc.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/**
 * The one JSON document a `--json` command printed: stdout must be exactly
 * one JSON value followed by a newline (JSON.parse refuses two documents,
 * and anything else around it).
 */
export function oneJson<T = Record<string, unknown>>(r: CliResult): T {
  if (!r.stdout.endsWith('\n')) throw new Error(`stdout does not end with a newline: ${JSON.stringify(r.stdout.slice(-200))}`)
  try {
    return JSON.parse(r.stdout) as T
  } catch (err) {
    throw new Error(`stdout is not one JSON document (${(err as Error).message}): ${JSON.stringify(r.stdout.slice(0, 500))}; stderr: ${r.stderr}`)
  }
}

/** One finding in `memwal fsck --json` (the shape the CLI prints). */
/** What `memwal dump --json` prints: each entry in log order (a record, a damaged range, a gap) with its place. */
export interface DumpDoc {
  entries: { kind: string; lsn?: number; segment: string; offset: number; end?: number; detail?: string; lsnFirst?: number; lsnLast?: number; declared?: boolean; record?: { type: number; op?: Op; ops?: Op[] } }[]
  records: number
  damaged: number
}

export interface FsckFinding {
  kind: string
  sink?: string
  segment?: string
  offset?: number
  key?: string
  lsnFirst?: number
  lsnLast?: number
  alreadyApplied?: boolean
  detail: string
  repaired: boolean
}

/** `memwal fsck --json`'s document. */
export interface FsckReport {
  clean: boolean
  repaired: number
  unrepaired: number
  notices: number
  counts: Record<string, number>
  findings: FsckFinding[]
  segments: number
  records: number
  bytesScanned: number
  lastLsn: number
  checkpoints: { backend: number; index: number }
  elapsedMs: number
  exitCode: number
}

/** fsck's JSON document, checked to carry the exit code the process ended with. */
export function fsckReport(t: Test, r: CliResult, label = 'fsck'): FsckReport {
  const doc = oneJson<FsckReport>(r)
  t.equal(doc.exitCode, r.code, `${label}: the document's exitCode is the process's`)
  return doc
}

/** stderr's lines, without the final newline's empty string. */
export function stderrLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l, i, all) => !(i === all.length - 1 && l === ''))
}

/** A private copy of fixtures/datadirs/<name>, removed when the test ends. */
export function copyFixture(t: { teardown(fn: () => unknown): void }, name: string): string {
  const dir = path.join(tmpDir(t, `memwal-cli-${name}-`), name)
  fs.cpSync(path.join(DATADIRS, name), dir, { recursive: true })
  return dir
}

/** A child process holding `dir` open (and so its lock); `release()` closes it and waits for its exit. */
export interface Holder {
  readonly pid: number
  readonly proc: ChildProcess
  release(): Promise<number | null>
}

export async function holdDir(dir: string): Promise<Holder> {
  const child = spawnChild(SELF, ['--hold', dir], { stdin: true })
  const ready = await child.waitFor((line) => /^ready \d+$/.test(line))
  return {
    pid: Number(ready.slice('ready '.length)),
    proc: child.proc,
    release: async () => {
      child.closeStdin()
      return (await child.ended).code
    },
  }
}

async function hold(dir: string): Promise<void> {
  const engine = await MemWAL.open({ dir })
  writeLine(`ready ${process.pid}`)
  process.stdin.resume()
  await new Promise<void>((resolve) => process.stdin.on('end', resolve))
  await engine.close()
}

if (isMainModule(import.meta.url)) {
  if (process.argv[2] !== '--hold' || !process.argv[3]) exitWithUsage('cli-run.ts --hold <dir>')
  hold(process.argv[3]).catch(exitWithError)
}
