/** The options of the one-shot benchmarks (feed.ts, query.ts): `[--records N] [--reps R] [--json]`. */
export interface RunOptions {
  readonly records: number
  readonly reps: number
  readonly json: boolean
}

/** Parses argv; an unknown option or a bad number prints the usage and exits 16 (a usage error, as the CLI's). */
export function parseRunArgs(name: string, argv: readonly string[], defaults: { readonly records: number; readonly reps: number }): RunOptions {
  let { records, reps } = defaults
  let json = false
  const usage = (message: string): never => {
    process.stderr.write(`bench/${name}: ${message}\nusage: ${name} [--records N] [--reps R] [--json]\n`)
    process.exit(16)
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const num = (): number => {
      const n = Number(argv[++i])
      if (!Number.isSafeInteger(n) || n < 1) usage(`${a} takes a positive integer`)
      return n
    }
    if (a === '--records') records = num()
    else if (a === '--reps') reps = num()
    else if (a === '--json') json = true
    else usage(`unknown option ${String(a)}`)
  }
  return { records, reps, json }
}
