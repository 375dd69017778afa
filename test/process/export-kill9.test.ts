/**
 * `memwal export --out FILE` stopped part-way leaves no partial file for
 * good, with real processes: SIGINT or SIGTERM ends it with
 * EXPORT_INTERRUPTED (exit 8) and removes its partial file; a SIGKILL cannot,
 * and the next export to the same FILE removes it, while it leaves the
 * partial file of a process still alive and any file of another name.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { spawnChild, type Child } from '../support/child-process.js'
import { CLI_ENTRY, runCli } from '../support/cli-run.js'
import { fortyMbStore } from '../support/big-store.js'
import { tmpDir } from '../support/tmp-dir.js'
import { waitFor } from '../support/wait-for.js'

function bigStore(t: Parameters<typeof tmpDir>[0]): Promise<string> {
  return fortyMbStore(t, 'memwal-export-kill9-')
}

function partials(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.includes('.partial')).sort()
}

/** An export to `file` in a child, stopped by `signal` as soon as its partial file exists. */
async function exportStopped(dir: string, file: string, signal: NodeJS.Signals): Promise<{ child: Child; end: Awaited<Child['ended']> }> {
  const child = spawnChild(CLI_ENTRY, ['export', dir, '--out', file])
  const work = path.dirname(file)
  await waitFor(() => partials(work).length > 0 || child.proc.exitCode !== null, 'the export\'s partial file', 60_000)
  t.equal(child.proc.exitCode, null, `the export is still running when ${signal} is sent (its output not yet whole)`)
  child.proc.kill(signal)
  return { child, end: await child.ended }
}

t.test('a SIGKILLed export leaves its partial file; the next export to the same file removes it, not a live process\'s nor other names', async (t) => {
  const dir = await bigStore(t)
  const work = tmpDir(t)
  const file = path.join(work, 'all.ndjson')
  const { end } = await exportStopped(dir, file, 'SIGKILL')
  t.equal(end.signal, 'SIGKILL')
  const left = partials(work)
  t.equal(left.length, 1, `the killed export's partial file is there: ${left.join(', ')}`)
  t.notOk(fs.existsSync(file), 'and no export file')
  // A partial file of a process that is alive (this one) on this host, and names no export of this memwal writes.
  const host = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8)
  const live = `all.ndjson.partial-${host}-${process.pid}-0123abcd`
  const others = ['all.ndjson.partial-deadbeef', `other.ndjson.partial-${host}-999999999-0123abcd`]
  for (const name of [live, ...others]) fs.writeFileSync(path.join(work, name), 'x')
  const r = await runCli(['export', dir, '--out', file])
  t.equal(r.code, 0, r.stderr)
  t.ok(fs.statSync(file).size > 40_000_000, 'the export is whole')
  t.strictSame(partials(work), [live, ...others].sort(), 'the killed export\'s partial file removed; the live one and other names left')
})

t.test('SIGTERM or SIGINT during an export: EXPORT_INTERRUPTED, exit 8, its partial file removed, no file', async (t) => {
  const dir = await bigStore(t)
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const work = tmpDir(t)
    const file = path.join(work, 'all.ndjson')
    const { child, end } = await exportStopped(dir, file, signal)
    t.strictSame(end, { code: 8, signal: null }, `${signal}: exit 8, not killed by the signal`)
    t.match(child.stderr(), new RegExp(`^memwal export: the export to \\S*all\\.ndjson was interrupted by ${signal}: .*\\[EXPORT_INTERRUPTED\\]\\n$`), `${signal}: one line saying so`)
    t.strictSame(partials(work), [], `${signal}: no partial file left`)
    t.notOk(fs.existsSync(file), `${signal}: no export file`)
  }
})
