/**
 * `memwal status` (and a dry-run fsck: the same view) stopped part-way
 * leaves no private copy of the store under TMPDIR for good, with real
 * processes: SIGINT or SIGTERM removes its copy before the signal ends it; a
 * SIGKILL cannot, and the next view's close removes the copy of a process
 * gone, while it leaves a live process's copy, another host's and names it
 * does not know.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { systemLockHost } from '../../engine/testing.js'
import { spawnChild, type Child } from '../support/child-process.js'
import { CLI_ENTRY, runCli } from '../support/cli-run.js'
import { fortyMbStore } from '../support/big-store.js'
import { tmpDir } from '../support/tmp-dir.js'
import { waitFor } from '../support/wait-for.js'

function bigStore(t: Parameters<typeof tmpDir>[0]): Promise<string> {
  return fortyMbStore(t, 'memwal-view-kill9-')
}

function views(tmp: string): string[] {
  return fs.readdirSync(tmp).filter((f) => f.startsWith('memwal-view-')).sort()
}

/** `memwal status` in a child with TMPDIR `tmp`, sent `signal` as soon as its copy of the store exists. */
async function statusStopped(dir: string, tmp: string, signal: NodeJS.Signals): Promise<{ child: Child; end: Awaited<Child['ended']> }> {
  const child = spawnChild(CLI_ENTRY, ['status', dir], { env: { TMPDIR: tmp } })
  await waitFor(() => views(tmp).length > 0 || child.proc.exitCode !== null, 'the private copy of the store', 60_000)
  t.equal(child.proc.exitCode, null, `status is still running when ${signal} is sent`)
  child.proc.kill(signal)
  return { child, end: await child.ended }
}

t.test('a SIGKILLed status leaves its copy; the next view removes it, not a live process\'s, another host\'s nor other names', async (t) => {
  const dir = await bigStore(t)
  const tmp = tmpDir(t)
  const { child, end } = await statusStopped(dir, tmp, 'SIGKILL')
  t.equal(end.signal, 'SIGKILL')
  const left = views(tmp)
  t.equal(left.length, 1, `the killed status's copy is there: ${left.join(', ')}`)
  t.match(left[0], new RegExp(`^memwal-view-[0-9a-f]{8}-${child.pid}-\\d+-`), 'named by its process')
  const host = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8)
  const start = systemLockHost.processStart(process.pid) ?? 'x'
  const live = `memwal-view-${host}-${process.pid}-${start}-AbCd12`
  const others = ['memwal-view-Xy12zW', `memwal-view-0badc0de-999999999-1-AbCd12`]
  // This very PID with another start time: an earlier process given it (left), unlike the live one above.
  const earlier = `memwal-view-${host}-${process.pid}-1-AbCd12`
  for (const name of [live, earlier, ...others]) fs.mkdirSync(path.join(tmp, name))
  const r = await runCli(['status', dir, '--json'], { env: { TMPDIR: tmp } })
  t.equal(r.code, 0, r.stderr)
  t.strictSame(views(tmp), [live, ...others].sort(), 'the killed status\'s copy and the earlier process\'s removed; the live one, another host\'s and other names left')
})

t.test('SIGTERM or SIGINT during status: its copy removed, the process ended by the signal', async (t) => {
  const dir = await bigStore(t)
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const tmp = tmpDir(t)
    const { child, end } = await statusStopped(dir, tmp, signal)
    t.strictSame(end, { code: null, signal }, `${signal}: ended by the signal`)
    t.match(child.stderr(), new RegExp(`^memwal status: interrupted by ${signal} \\(its private copy of the store removed\\)\\n$`), `${signal}: one line saying so`)
    t.strictSame(views(tmp), [], `${signal}: no copy left`, { left: views(tmp).map((v) => fs.readdirSync(path.join(tmp, v))) })
  }
})
