import { checkDataDir, dumpLog, type WalRecord } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import type { Output } from '../output.js'

export interface DumpCommandOptions {
  readonly from?: number
  readonly to?: number
  readonly key?: string
}

/** `memwal dump <dir>`: the records of the log, in LSN order, with their places; damaged ranges too. */
export async function dump(dir: string, o: DumpCommandOptions, out: Output): Promise<number> {
  await checkDataDir(dir)
  let damaged = 0
  let records = 0
  let gaps = 0
  const stream = out.json ? process.stdout : undefined
  stream?.write('{"entries":[')
  for await (const e of dumpLog({ dir, ...(o.from !== undefined ? { fromLsn: o.from } : {}), ...(o.to !== undefined ? { toLsn: o.to } : {}), ...(o.key !== undefined ? { key: o.key } : {}) })) {
    if (e.kind === 'record') records++
    else if (e.kind === 'damage' || !e.declared) damaged++
    else gaps++
    if (stream) {
      stream.write(`${records + damaged + gaps > 1 ? ',' : ''}\n${JSON.stringify(e, (_k, v: unknown) => (v instanceof Uint8Array ? { bytes: Buffer.from(v).toString('base64') } : v))}`)
      continue
    }
    if (e.kind === 'damage') out.line(`!! damage ${e.segment}@${e.offset}-${e.end}: ${e.detail}`)
    else if (e.kind === 'missing') out.line(`${e.declared ? '-- gap' : '!! missing'} LSNs ${e.lsnFirst}-${e.lsnLast} before ${e.segment}: ${e.detail}`)
    else out.line(`${e.lsn}\t${e.segment}@${e.offset}\t${summary(e.record)}`)
  }
  stream?.write(`\n],"records":${records},"damaged":${damaged},"declaredGaps":${gaps}}\n`)
  if (!out.json) out.note(`${records} records, ${damaged} damaged ranges, ${gaps} declared gaps`)
  return damaged > 0 ? ExitCode.UNCORRECTED : ExitCode.CLEAN
}

function summary(r: WalRecord): string {
  return JSON.stringify(r.type === 3 ? { batch: r.ops } : r.op)
}
