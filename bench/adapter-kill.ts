/**
 * SIGKILL in the middle of claude-flow memory writes, MemwalMemoryBackend
 * and claude-flow's SqlJsBackend side by side (issue 13 item 2; the harness
 * runs it as `cf-memwal/kill9` and `cf-sqljs/kill9`). A writer process
 * stores entries, 8 in flight, printing each id once its store() resolved;
 * it is killed with SIGKILL after each of KILL_AFTER_MS, then the store is
 * opened again and every acknowledged id read back. SqlJsBackend runs as
 * claude-flow ships it (a file database, rewritten whole every 5 s).
 *
 * The same file is the writer: `adapter-kill <system> <dir> <prefix>`.
 */
import { spawn } from 'node:child_process'
import { posix as path } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { IMemoryBackend } from '../adapters/claude-flow/index.js'
import { newSqlJsBackend } from './peers/claude-flow-sqljs.js'

export type KillSystem = 'cf-memwal' | 'cf-sqljs'
/** When each writer is killed: issue 13 measured SqlJsBackend with these. */
export const KILL_AFTER_MS = [1_500, 3_000, 7_000] as const
const WRITERS = 8

const SELF = fileURLToPath(import.meta.url)

async function openBackend(system: KillSystem, dir: string): Promise<IMemoryBackend> {
  const b: IMemoryBackend = system === 'cf-memwal'
    ? new (await import('../adapters/claude-flow/index.js')).MemwalMemoryBackend({ dir })
    : await newSqlJsBackend({ databasePath: path.join(dir, 'memory.db') })
  await b.initialize()
  return b
}

/** The writer: stores until killed, `ack <id>` on stdout after each store resolved. */
async function writer(system: KillSystem, dir: string, prefix: string): Promise<void> {
  const b = await openBackend(system, dir)
  process.stdout.write('ready\n')
  let next = 0
  const loop = async (): Promise<never> => {
    for (;;) {
      const id = `${prefix}-${next++}`
      const now = Date.now()
      await b.store({ id, key: id, content: `content of ${id}`, type: 'episodic', namespace: prefix, tags: ['t'], metadata: {}, accessLevel: 'private', createdAt: now, updatedAt: now, version: 1, references: [], accessCount: 0, lastAccessedAt: now, embedding: Float32Array.from([next, 1, 2]) })
      process.stdout.write(`ack ${id}\n`)
      // A turn of the event loop between stores, as an agent doing anything else gives: SqlJsBackend's store never leaves the
      // microtask queue, so a loop without one would starve its persist timer and lose everything (measured here: 974 of 974).
      await new Promise((r) => setImmediate(r))
    }
  }
  await Promise.all(Array.from({ length: WRITERS }, loop))
}

/** When to kill a writer: so long after it is ready, or once it has acknowledged so many stores. */
export type KillWhen = { readonly afterMs: number } | { readonly afterAcks: number }

/** Runs a writer, kills it with SIGKILL `when` says, returns the ids it acknowledged (their content is `content of <id>`). */
export function runAndKill(system: KillSystem, dir: string, prefix: string, when: KillWhen, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const flags = SELF.endsWith('.ts') ? ['--import', 'tsx'] : []
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, SELF, system, dir, prefix], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    const acked: string[] = []
    let buf = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      buf += s
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (line === 'ready' && 'afterMs' in when) setTimeout(() => child.kill('SIGKILL'), when.afterMs)
        else if (line.startsWith('ack ')) acked.push(line.slice(4))
        if ('afterAcks' in when && acked.length >= when.afterAcks) child.kill('SIGKILL')
      }
    })
    child.on('error', reject)
    child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve(acked) : reject(new Error(`${system} writer exited without being killed`))))
  })
}

/** Acknowledged stores and how many of them a reopen did not find, over the kills. */
export async function killTrial(system: KillSystem, dir: string): Promise<{ acked: number; lost: number; writeMs: number }> {
  let acked = 0
  let lost = 0
  for (const [k, ms] of KILL_AFTER_MS.entries()) {
    const ids = await runAndKill(system, dir, `run${k}`, { afterMs: ms })
    const b = await openBackend(system, dir)
    for (const id of ids) if ((await b.get(id))?.id !== id) lost++
    await b.shutdown()
    acked += ids.length
  }
  return { acked, lost, writeMs: KILL_AFTER_MS.reduce((a, b) => a + b, 0) }
}

const [system, dir, prefix] = process.argv.slice(2)
if (process.argv[1] === SELF && (system === 'cf-memwal' || system === 'cf-sqljs') && dir && prefix) await writer(system, dir, prefix)
