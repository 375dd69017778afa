import cliProgress from 'cli-progress'
import { jsonTag } from '../engine/index.js'

/**
 * How a command talks: with --json, exactly one JSON document on stdout and
 * everything else on stderr; otherwise readable lines on stdout. Progress
 * bars go to stderr, and only when stderr is a terminal (cli-progress renders
 * nothing useful into a pipe or a log file).
 */
export interface Output {
  readonly json: boolean
  /** A line for people (stdout, or stderr under --json). */
  line(text: string): void
  /** Progress and logs: always stderr. */
  note(text: string): void
  /** The one JSON document, under --json. */
  document(doc: unknown): void
  /** One JSON object on one line of stdout: a stream of them (memwal watch --json). */
  jsonLine(doc: unknown): void
  progress(total: number, label: string): Progress
}

export interface Progress {
  update(done: number, total?: number): void
  stop(): void
}

export function createOutput(json: boolean, stdout: NodeJS.WriteStream = process.stdout, stderr: NodeJS.WriteStream = process.stderr): Output {
  return {
    json,
    line: (text) => (json ? stderr : stdout).write(`${text}\n`),
    note: (text) => stderr.write(`${text}\n`),
    document: (doc) => stdout.write(`${JSON.stringify(doc, jsonSafe, 2)}\n`),
    jsonLine: (doc) => stdout.write(`${JSON.stringify(doc, jsonSafe)}\n`),
    progress(total, label) {
      if (!stderr.isTTY) return { update() {}, stop() {} }
      // Drawn from the first moment there is work to show: with nothing to do (a replay with
      // nothing unapplied) no bar is left behind reading "0% 0/1" with an endless ETA.
      let bar: cliProgress.SingleBar | undefined
      let known = total
      const draw = (done: number): void => {
        if (!bar) {
          if (known <= 0) return
          bar = new cliProgress.SingleBar({ stream: stderr, format: `${label} [{bar}] {percentage}% {value}/{total} {eta_formatted}`, hideCursor: true }, cliProgress.Presets.shades_classic)
          bar.start(known, 0)
        }
        bar.setTotal(known)
        bar.update(done)
      }
      draw(0)
      return {
        update: (done, t) => {
          if (t !== undefined) known = t
          draw(done)
        },
        stop: () => bar?.stop(),
      }
    },
  }
}

/** Aligned columns for a table of rows. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n')
}

/** A stored value on one line, in the JSON encoding below (for people: `memwal get`, `query`, `watch`). */
export function displayValue(v: unknown): string {
  return JSON.stringify(v, jsonSafe) ?? 'undefined'
}

/**
 * How the CLI writes what JSON cannot say: values read back exactly as the
 * engine stores them (README "Values"), so none is shown as something else.
 * A value JSON has no form for becomes an object with one `$`-named field, in
 * the engine's one JSON encoding of values (engine/format/json-values.ts,
 * `jsonTag`): `{"$bigint":"12"}`, `{"$bytes":"<base64>"}`, `{"$date":"<ISO>"}`, ...
 * `undefined` is as JSON has it (a field left out, null in an array): the
 * documents' optional fields use that. Errors are `{ name, message, code? }`.
 * (Export writes the exact form, with `undefined` and `$`-keyed objects
 * escaped: encodeJsonValue.)
 */
function jsonSafe(this: unknown, key: string, v: unknown): unknown {
  // JSON.stringify has already called toJSON (Date, Buffer): the holder's field is the value itself.
  const raw = this !== null && typeof this === 'object' ? (this as Record<string, unknown>)[key] : v
  if (raw instanceof Error) return { name: raw.name, message: raw.message, ...((raw as { code?: string }).code ? { code: (raw as { code?: string }).code } : {}) }
  return jsonTag(raw) ?? v
}
