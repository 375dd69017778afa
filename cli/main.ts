#!/usr/bin/env node
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import { asReported, describeError, exitCodeFor, ExitCode } from './exit-codes.js'
import { createOutput, type Output } from './output.js'
import { PG_COMMANDS, PG_URL_ENV, pgOptions, type PgFlags } from './pg-options.js'
import { backup, restore } from './commands/backup.js'
import { get, namespaces, query, stats, watch } from './commands/data.js'
import { top } from './commands/top.js'
import { deadletter, type DeadLetterAction } from './commands/deadletter.js'
import { dump } from './commands/dump.js'
import { exportStore, importStore } from './commands/export.js'
import { fsck } from './commands/fsck.js'
import { replay } from './commands/replay.js'
import { status } from './commands/status.js'
import { removingViewsOnSignal } from './view-cleanup.js'

/**
 * The `memwal` command. Every command takes --json (one JSON document on
 * stdout; progress and logs on stderr). Exit codes follow e2fsck: 0 clean,
 * 1 errors corrected, 4 errors left uncorrected, 8 operational error, 16 usage.
 */
export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command()
  program
    .name('memwal')
    .description('memwal: a write-ahead-log storage engine; tools for its data directories')
    .version(packageVersion(), '-V, --version', 'print the version of memwal')
    .exitOverride()
    .addHelpText('after', `\nA PostgreSQL-backed store (PgBackend) is opened with --pg URL --writer-id ID [--schema S]: ${PG_COMMANDS.join(', ')} take them (deadletter for retry and drop). ${PG_URL_ENV}=URL in the environment stands for --pg URL (out of ps and the shell's history). fsck and backup work on LevelDB-backed stores only.`)
  const run = (name: string, json: boolean, fn: () => Promise<number>): Promise<void> =>
    fn().then(setExit, (raw: unknown) => {
      const err = asReported(raw, name)
      const code = exitCodeFor(err)
      process.stderr.write(`memwal ${name}: ${describeError(err)}\n`)
      if (json) process.stdout.write(`${JSON.stringify({ error: { code: (err as { code?: string })?.code ?? 'ERROR', message: (err as Error)?.message ?? String(err) }, exitCode: code })}\n`)
      setExit(code)
    })
  /**
   * A command on a data directory whose options (but --json, added last)
   * go to `fn` as commander parsed them: `options` adds the command's own,
   * and the PostgreSQL backend's (pg-options.ts) are added to every one.
   */
  const dirCommand = <O extends object>(name: string, description: string, options: (c: Command) => Command, fn: (dir: string, o: O & PgFlags, out: Output) => Promise<number>): void => {
    // Each opens the store through the engine, so each takes the PostgreSQL backend's options.
    pgOptions(options(program.command(`${name} <dir>`).description(description)))
      .option('--json', 'one JSON document on stdout')
      .action((dir: string, o: O & PgFlags & { json?: boolean }) => {
        const { json, ...rest } = o
        return run(name, json === true, () => fn(dir, rest as O & PgFlags, createOutput(json === true)))
      })
  }

  pgOptions(program
    .command('replay <dir>')
    .description('recover the log and apply everything unapplied to every sink, then exit (a PostgreSQL-backed store: with --pg, --writer-id)')
    .option('--json', 'one JSON document on stdout')
    .option('--timeout <ms>', 'give up waiting for the sinks after this long', positiveInt, 600_000))
    .action((dir: string, o: { json?: boolean; timeout: number } & PgFlags) => {
      const { json, timeout, ...flags } = o
      return run('replay', json === true, () => replay(dir, { timeoutMs: timeout, ...flags }, createOutput(json === true)))
    })

  program
    .command('fsck <dir>')
    .description('verify segments, frames, checkpoints, backend, index; --repair fixes what it can (LevelDB-backed stores only: it compares the log with the local backend)')
    .option('--repair', 'repair: keep every verified frame and drop only damage (evidence to quarantine/), replay, re-apply, rebuild the index')
    .option('--ack-gaps', 'acknowledge the gaps memwal declared (LSNs it dropped): they are no longer reported')
    .option('--json', 'one JSON document on stdout')
    .action((dir: string, o: { json?: boolean; repair?: boolean; ackGaps?: boolean }) => run('fsck', o.json === true, () => removingViewsOnSignal('fsck', () => fsck(dir, { repair: o.repair === true, ackGaps: o.ackGaps === true }, createOutput(o.json === true)))))

  program
    .command('dump <dir>')
    .description('print the records of the log with their places')
    .option('--from <lsn>', 'first LSN', positiveInt)
    .option('--to <lsn>', 'last LSN', positiveInt)
    .option('--key <key>', 'only records touching this key')
    .option('--json', 'one JSON document on stdout')
    .action((dir: string, o: { json?: boolean; from?: number; to?: number; key?: string }, cmd: Command) => {
      // An empty range is a mistake in the command line, not a clean empty answer.
      if (o.from !== undefined && o.to !== undefined && o.from > o.to) cmd.error(`error: --from ${o.from} is after --to ${o.to}: the range is empty`, { exitCode: ExitCode.USAGE, code: 'memwal.usage' })
      return run('dump', o.json === true, () => dump(dir, { ...(o.from !== undefined ? { from: o.from } : {}), ...(o.to !== undefined ? { to: o.to } : {}), ...(o.key !== undefined ? { key: o.key } : {}) }, createOutput(o.json === true)))
    })

  pgOptions(program
    .command('status <dir>')
    .description('the recorded backend, segments, last LSN, checkpoints, backlog, lock holder (a PostgreSQL-backed store\'s backend checkpoint and backlog: with --pg, --writer-id; read, never written)')
    .option('--json', 'one JSON document on stdout'))
    .action((dir: string, o: { json?: boolean } & PgFlags) => {
      const { json, ...flags } = o
      return run('status', json === true, () => removingViewsOnSignal('status', () => status(dir, flags, createOutput(json === true))))
    })

  pgOptions(program
    .command('deadletter <dir> <action>')
    .description('records a sink rejected for good: list them, retry them (written again through the log) or drop them (recorded); retry and drop open the store (a PostgreSQL-backed one: with --pg, --writer-id)')
    .option('--lsn <lsn>', 'retry or drop the dead letter of this LSN', positiveInt)
    .option('--all', 'retry or drop every open dead letter')
    .option('--timeout <ms>', 'retry: give up waiting for the sinks after this long', positiveInt, 600_000)
    .option('--json', 'one JSON document on stdout'))
    .action((dir: string, action: string, o: { json?: boolean; lsn?: number; all?: boolean; timeout: number } & PgFlags, cmd: Command) => {
      if (action !== 'list' && action !== 'retry' && action !== 'drop') cmd.error(`error: the action is list, retry or drop, not ${JSON.stringify(action)}`, { exitCode: ExitCode.USAGE, code: 'memwal.usage' })
      const which = o.all === true ? 'all' : o.lsn
      if (action !== 'list' && (which === undefined || (o.all === true && o.lsn !== undefined))) cmd.error(`error: ${action} takes one of --lsn N or --all`, { exitCode: ExitCode.USAGE, code: 'memwal.usage' })
      const { json, lsn: _lsn, all: _all, timeout, ...flags } = o
      return run('deadletter', json === true, () => deadletter(dir, action as DeadLetterAction, { timeoutMs: timeout, ...(which !== undefined ? { which } : {}), ...flags }, createOutput(json === true)))
    })

  pgOptions(program
    .command('get <dir> <key>')
    .description('the entry stored under a key, with its metadata (exit 4 when there is none)')
    .option('--namespace <ns>', 'the namespace (default: default)')
    .option('--json', 'one JSON document on stdout'))
    .action((dir: string, key: string, o: { json?: boolean; namespace?: string } & PgFlags) => {
      const { json, ...rest } = o
      return run('get', json === true, () => get(dir, key, rest, createOutput(json === true)))
    })

  dirCommand('query', 'entries matching every filter given, in (namespace, key) order, one page; prints the cursor of the next page', (c) => c
    .option('--namespace <ns>', 'exactly this namespace')
    .option('--namespace-prefix <ns>', 'this namespace and those under it (ns/...)')
    .option('--prefix <prefix>', 'keys starting with this')
    .option('--gt <key>', 'keys after this')
    .option('--gte <key>', 'keys from this on')
    .option('--lt <key>', 'keys before this')
    .option('--lte <key>', 'keys up to this')
    .option('--tag <tag>', 'entries carrying this tag (repeat: every one of them)', collect, [])
    .option('--any-tag <tag>', 'entries carrying at least one of these tags (repeat)', collect, [])
    .option('--since <time>', 'written at or after: ms since the epoch or an ISO date', instant)
    .option('--until <time>', 'written before: ms since the epoch or an ISO date', instant)
    .option('--reverse', 'in descending order')
    .option('--limit <n>', 'at most this many (a page; default 1000)', positiveInt)
    .option('--cursor <cursor>', 'continue after the page that printed this cursor (same filters)')
    .option('--count', 'print how many entries match instead of them'), (dir, o: Omit<QueryFlags, 'json'> & PgFlags, out) => {
    const { tag, anyTag, namespacePrefix, ...rest } = o
    const tags = { ...(tag.length > 0 ? { all: tag } : {}), ...(anyTag.length > 0 ? { any: anyTag } : {}) }
    return query(dir, { ...rest, ...(namespacePrefix !== undefined ? { namespacePrefix } : {}), ...(Object.keys(tags).length > 0 ? { tags } : {}) }, out)
  })

  dirCommand('namespaces', 'the namespaces holding entries, with how many each', (c) => c
    .option('--prefix <ns>', 'only this namespace and those under it (ns/...)')
    .option('--limit <n>', 'at most this many', positiveInt), namespaces)

  dirCommand('stats', 'entries and bytes (of the values, as stored) per namespace, and in all', (c) => c
    .option('--prefix <ns>', 'only this namespace and those under it (ns/...)')
    .option('--limit <n>', 'at most this many namespaces listed (the totals count every one)', positiveInt), stats)

  program
    .command('watch <dir>')
    .description('print changes as they are committed, until interrupted (SIGINT, SIGTERM) or --count')
    .option('--from <version>', 'start after this version (default: with the next change)', nonNegativeInt)
    .option('--namespace <ns>', 'only this namespace')
    .option('--prefix <prefix>', 'only keys starting with this')
    .option('--count <n>', 'stop after this many changes', nonNegativeInt)
    .option('--all-writers', 'every writer\'s changes as they reach PostgreSQL, each with its writer and resume token (needs --pg)')
    .option('--pg <url>', 'with --all-writers: the PostgreSQL the writers share')
    .option('--schema <name>', 'with --all-writers: their schema (default memwal)')
    .option('--resume <token>', 'with --all-writers: continue after the change that carried this token')
    .option('--json', 'one JSON object per change, one per line')
    .action((dir: string, o: { json?: boolean; from?: number; namespace?: string; prefix?: string; count?: number; allWriters?: boolean; pg?: string; schema?: string; resume?: string }) => {
      const { json, from, resume, ...rest } = o
      return run('watch', json === true, () => watch(dir, { ...rest, ...(from !== undefined ? { fromVersion: from } : {}), ...(resume !== undefined ? { resumeToken: resume } : {}) }, createOutput(json === true)))
    })

  program
    .command('top <url>')
    .description("a live view of a running engine from its health endpoint (MemWAL.open({ metricsPort })), e.g. http://127.0.0.1:9464")
    .option('--interval <ms>', 'ms between looks', positiveInt, 1000)
    .option('--count <n>', 'stop after this many looks', positiveInt)
    .option('--json', 'one JSON object per look, one per line')
    .action((url: string, o: { json?: boolean; interval: number; count?: number }, cmd: Command) => {
      if (!/^https?:\/\//.test(url)) cmd.error(`error: top takes the URL of a health endpoint (http://host:port), not ${JSON.stringify(url)}`, { exitCode: ExitCode.USAGE, code: 'memwal.usage' })
      return run('top', o.json === true, () => top(url, { intervalMs: o.interval, ...(o.count !== undefined ? { count: o.count } : {}) }, createOutput(o.json === true)))
    })

  program
    .command('backup <dir> <target>')
    .description('a consistent copy of the store into a new or empty directory (a data directory fsck checks)')
    .option('--json', 'one JSON document on stdout')
    .action((dir: string, target: string, o: { json?: boolean }) => run('backup', o.json === true, () => backup(dir, target, createOutput(o.json === true))))

  program
    .command('restore <backup> <dir>')
    .description('copy a backup into a new or empty directory, ready to open')
    .option('--json', 'one JSON document on stdout')
    .action((from: string, dir: string, o: { json?: boolean }) => run('restore', o.json === true, () => restore(from, dir, createOutput(o.json === true))))

  pgOptions(program
    .command('export <dir>')
    .description('the entries of a store (or of one namespace) as of one version, to stdout or a file (a PostgreSQL-backed store: its rows, every writer\'s)')
    .option('--namespace <ns>', 'only this namespace (exactly)')
    .addOption(new Option('--format <format>', 'ndjson (one JSON object per line) or msgpack (checksummed frames)').choices(['ndjson', 'msgpack']).default('ndjson'))
    .option('--out <file>', 'write this file (whole or not at all) instead of stdout')
    .option('--json', 'with --out: one JSON document on stdout'))
    .action((dir: string, o: { json?: boolean; namespace?: string; format: 'ndjson' | 'msgpack'; out?: string } & PgFlags) => {
      const { json, ...rest } = o
      return run('export', json === true, () => exportStore(dir, rest, createOutput(json === true)))
    })

  pgOptions(program
    .command('import <dir> <file>')
    .description('write an export (a file, or - for stdin) into a store through the log, in atomic batches (a new store takes the backend --pg asks for)')
    .option('--batch-ops <n>', 'puts per batch (each batch is one atomic record)', positiveInt)
    .option('--json', 'one JSON document on stdout'))
    .action((dir: string, file: string, o: { json?: boolean; batchOps?: number } & PgFlags) => {
      const { json, ...rest } = o
      return run('import', json === true, () => importStore(dir, file, rest, createOutput(json === true)))
    })

  program
    .command('bench')
    .description('run the benchmark harness (options are passed to it, e.g. --quick, --json)')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action((args: string[]) => run('bench', false, () => runBench(args)))

  return program
}

function nonNegativeInt(v: string): number {
  const n = Number(v)
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be an integer >= 0')
  return n
}

interface QueryFlags {
  json?: boolean
  namespace?: string
  namespacePrefix?: string
  prefix?: string
  gt?: string
  gte?: string
  lt?: string
  lte?: string
  tag: string[]
  anyTag: string[]
  since?: number
  until?: number
  reverse?: boolean
  limit?: number
  cursor?: string
  count?: boolean
}

/** A repeated flag's values, in order. */
function collect(v: string, prev: string[]): string[] {
  return [...prev, v]
}

/** An instant: ms since the epoch, or a date string Date parses (ISO 8601). */
function instant(v: string): number {
  const ms = /^\d+$/.test(v.trim()) ? Number(v) : Date.parse(v)
  if (!Number.isSafeInteger(ms) || ms < 0) throw new InvalidArgumentError('must be ms since the epoch or an ISO date')
  return ms
}

function positiveInt(v: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer')
  return n
}

/** The version in memwal's package.json: two levels up from dist/cli/main.js, one from cli/main.ts. */
function packageVersion(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)), i = 0; i < 3; dir = path.dirname(dir), i++) {
    try {
      const pkg: unknown = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
      if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && pkg.name === 'memwal' && 'version' in pkg && typeof pkg.version === 'string') return pkg.version
    } catch {
      // Not here: one level up.
    }
  }
  return 'unknown'
}

function runBench(args: string[]): Promise<number> {
  const script = fileURLToPath(new URL('../bench/harness.js', import.meta.url))
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: 'inherit' })
    child.on('error', reject)
    child.on('exit', (code) => resolve(code ?? ExitCode.OPERATIONAL))
  })
}

export async function main(argv: readonly string[]): Promise<number> {
  let code: number = ExitCode.CLEAN
  const program = buildProgram((c) => (code = c))
  if (argv.length === 0) {
    // Nothing asked: that is a usage error (a script that forgot its arguments must not pass), with the usage to act on.
    process.stderr.write(program.helpInformation())
    return ExitCode.USAGE
  }
  try {
    await program.parseAsync([...argv], { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; anything else commander rejects is a usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.CLEAN
      // Commander printed the one-line error on stderr; under --json stdout still gets its one document.
      if (argv.includes('--json')) process.stdout.write(`${JSON.stringify({ error: { code: 'USAGE', message: err.message }, exitCode: ExitCode.USAGE })}\n`)
      return ExitCode.USAGE
    }
    const reported = asReported(err, argv[0] ?? '')
    process.stderr.write(`memwal: ${describeError(reported)}\n`)
    return exitCodeFor(reported)
  }
  return code
}

if (process.argv[1] && fileURLToPath(import.meta.url) === fs.realpathSync(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2))
}
