/**
 * What one group commit costs on the device right now, measured beside an
 * engine: a child process that overwrites 4 KiB of a preallocated file opened
 * with O_DSYNC (what a log group write is) every PERIOD_MS, and keeps the
 * latencies per phase. Its own process, so neither the engine's event loop nor
 * its thread pool can delay it, and its CPU is not the engine's.
 *
 * Parent side: `startDeviceProbe(dir)`, then `phase(name)` as the run moves on
 * and `stop()` for each phase's latencies (ms). Child side: this file run with
 * the probe file's path, driven over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const BLOCK = 4096
const FILE_BYTES = 1 << 20
const PERIOD_MS = 2

type ToProbe = { readonly phase: string } | { readonly stop: true }
type FromProbe = { readonly ready: true } | { readonly latencies: Record<string, number[]> }

export interface DeviceProbe {
  phase(name: string): void
  /** Ends the probe: each phase's write latencies in ms. */
  stop(): Promise<Record<string, number[]>>
  /** Ends it at once, if it still runs (a round that failed): no latencies. */
  kill(): void
}

export async function startDeviceProbe(dir: string): Promise<DeviceProbe> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [path.join(dir, 'device-probe.bin')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const next = (): Promise<FromProbe> =>
    new Promise((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        child.off('exit', onExit)
        resolve(m as FromProbe)
      }
      const onExit = (code: number | null): void => {
        child.off('message', onMessage)
        reject(new Error(`device probe exited (${String(code)}) before answering`))
      }
      child.once('message', onMessage)
      child.once('exit', onExit)
    })
  await next()
  return {
    phase: (name) => child.send({ phase: name } satisfies ToProbe),
    stop: async () => {
      const answer = next()
      child.send({ stop: true } satisfies ToProbe)
      const m = await answer
      if (!('latencies' in m)) throw new Error('device probe answered without latencies')
      return m.latencies
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
  }
}

function runProbe(file: string): void {
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DSYNC, 0o600)
  // Written and synced once: later writes overwrite allocated blocks, as the log's do in a preallocated segment.
  fs.writeSync(fd, Buffer.alloc(FILE_BYTES), 0, FILE_BYTES, 0)
  fs.fsyncSync(fd)
  const block = Buffer.alloc(BLOCK, 1)
  const latencies: Record<string, number[]> = {}
  let phase = 'start'
  let offset = 0
  const timer = setInterval(() => {
    const t = performance.now()
    fs.writeSync(fd, block, 0, BLOCK, offset)
    ;(latencies[phase] ??= []).push(performance.now() - t)
    offset = (offset + BLOCK) % FILE_BYTES
  }, PERIOD_MS)
  process.on('message', (m: ToProbe) => {
    if ('phase' in m) phase = m.phase
    else {
      clearInterval(timer)
      fs.closeSync(fd)
      fs.rmSync(file, { force: true })
      process.send?.({ latencies } satisfies FromProbe, () => process.exit(0))
    }
  })
  // The parent gone (it failed, or was killed), the probe goes too, rather than writing every 2 ms forever.
  process.on('disconnect', () => process.exit(0))
  process.send?.({ ready: true } satisfies FromProbe)
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] !== undefined) runProbe(process.argv[2])
