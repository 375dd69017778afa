/**
 * The line protocol between a test and a child process it spawns, both sides.
 *
 * A child reports events as lines on stdout, each written synchronously
 * (`writeLine`), so that a line the parent reads is an event that happened
 * before any SIGKILL; a line cut short by a kill was never written whole and
 * is dropped. A child that fails prints `error <code> <message>` and exits 1
 * (`exitWithError`); a usage error exits 16.
 *
 * The parent (`spawnChild`) runs a TypeScript file through tsx with the
 * environment of `childEnv`, splits stdout into lines for `onLine` and for
 * `waitFor`, keeps the first 64 KiB of stderr for messages, and resolves
 * `ended` once the child exited and its stdout was read to the end.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { childEnv } from './child-env.js'

export const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
/** What a child's stderr is kept to: enough for a stack trace, bounded for a chatty child. */
const STDERR_KEPT_BYTES_MAX = 64 * 1024
/** What a failure message quotes of the child's stderr. */
const STDERR_QUOTED_CHARS_MAX = 2000

export interface ChildEnd {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** A running child, seen from the parent. */
export interface Child {
  readonly proc: ChildProcess
  readonly pid: number
  /** Resolves when the child has exited and its stdout has been read to the end. */
  readonly ended: Promise<ChildEnd>
  /** Resolves the first line (seen so far, if lines are kept, or later) that `match` accepts; rejects if the child ends first. */
  waitFor(match: (line: string) => boolean): Promise<string>
  /** Writes `text` to the child's stdin (when spawned with `stdin: true`). */
  send(text: string): void
  /** Closes the child's stdin (when spawned with `stdin: true`). */
  closeStdin(): void
  /** SIGKILLs the child unless it has already ended: for teardowns. */
  killIfRunning(): void
  stderr(): string
}

export interface SpawnOptions {
  /** Sees every complete stdout line, in order. */
  readonly onLine?: (line: string) => void
  /** Keep lines for `waitFor` to find later (default true); a long-running child that prints much turns this off. */
  readonly keepLines?: boolean
  /** Give the child a stdin pipe (default: stdin ignored). */
  readonly stdin?: boolean
  /** Variables added to the child's environment (childEnv's). */
  readonly env?: NodeJS.ProcessEnv
}

/** Runs `node --import tsx <file> <args...>` from the repository's root. */
export function spawnChild(file: string, args: readonly string[], options: SpawnOptions = {}): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    cwd: REPO_DIR,
    env: childEnv(options.env),
    stdio: [options.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  })
  const pid = proc.pid
  if (pid === undefined) throw new Error(`child ${file} did not start`)
  proc.stdin?.on('error', () => undefined) // a child killed while we write to it
  const lines: string[] = []
  const waiters: { match: (line: string) => boolean; resolve: (line: string) => void; reject: (err: Error) => void }[] = []
  let partial = ''
  let err = ''
  let done = false
  const quoteStderr = (): string => err.slice(0, STDERR_QUOTED_CHARS_MAX)
  const see = (line: string): void => {
    options.onLine?.(line)
    if (options.keepLines !== false) lines.push(line)
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]
      if (w?.match(line)) {
        waiters.splice(i, 1)
        w.resolve(line)
      }
    }
  }
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) see(line)
  })
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (err.length < STDERR_KEPT_BYTES_MAX) err += chunk
  })
  const ended = new Promise<ChildEnd>((resolve) => {
    proc.on('close', (code, signal) => {
      done = true
      for (const w of waiters.splice(0)) w.reject(new Error(`child ${pid} ended (${String(code ?? signal)}) before the line awaited; stderr: ${quoteStderr()}`))
      resolve({ code, signal })
    })
  })
  return {
    proc,
    pid,
    ended,
    stderr: () => err,
    send: (text) => void proc.stdin?.write(text),
    closeStdin: () => void proc.stdin?.end(),
    killIfRunning: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    },
    waitFor: (match) => {
      const seen = lines.find(match)
      if (seen !== undefined) return Promise.resolve(seen)
      if (done) return Promise.reject(new Error(`child ${pid} ended before the line awaited; stderr: ${quoteStderr()}`))
      return new Promise((resolve, reject) => waiters.push({ match, resolve, reject }))
    },
  }
}

// ---- child side ----

/** Writes one line to stdout synchronously: once it returns, the parent can read it even if a SIGKILL follows. */
export function writeLine(line: string): void {
  const buf = Buffer.from(`${line}\n`)
  let done = 0
  while (done < buf.length) {
    try {
      done += fs.writeSync(1, buf, done, buf.length - done)
    } catch (err) {
      // stdout is a non-blocking pipe: a full pipe is waited out, nothing is dropped.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
    }
  }
}

/** Prints `error <code> <message>` (the MemwalError or errno code) and exits 1. */
export function exitWithError(err: unknown): never {
  const code = (err as { code?: unknown } | undefined)?.code
  writeLine(`error ${String(code)} ${String((err as Error | undefined)?.message).replace(/\n/g, ' ')}`)
  process.exit(1)
}

/** Prints `error USAGE <usage>` and exits 16. */
export function exitWithUsage(usage: string): never {
  writeLine(`error USAGE ${usage}`)
  process.exit(16)
}

/** True when the module at `moduleUrl` is the program node was started with (not imported by a test). */
export function isMainModule(moduleUrl: string): boolean {
  const main = process.argv[1]
  return main !== undefined && fs.realpathSync(main) === fs.realpathSync(fileURLToPath(moduleUrl))
}
