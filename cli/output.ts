import cliProgress from 'cli-progress'

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
    progress(total, label) {
      if (!stderr.isTTY) return { update() {}, stop() {} }
      const bar = new cliProgress.SingleBar({ stream: stderr, format: `${label} [{bar}] {percentage}% {value}/{total} {eta_formatted}`, hideCursor: true }, cliProgress.Presets.shades_classic)
      bar.start(Math.max(1, total), 0)
      return {
        update: (done, t) => {
          if (t !== undefined) bar.setTotal(Math.max(1, t))
          bar.update(done)
        },
        stop: () => bar.stop(),
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

function jsonSafe(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('base64') }
  if (v instanceof Error) return { name: v.name, message: v.message, ...((v as { code?: string }).code ? { code: (v as { code?: string }).code } : {}) }
  return v
}
