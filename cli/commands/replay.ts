import { describeFinding } from '../../engine/index.js'
import { ExitCode } from '../exit-codes.js'
import { openStore } from '../open-store.js'
import type { Output } from '../output.js'
import type { PgFlags } from '../pg-options.js'

export interface ReplayOptions extends PgFlags {
  readonly timeoutMs: number
}

/**
 * `memwal replay <dir>`: recover the log and apply everything the sinks have
 * not applied, then exit. Opening the engine is recovery; `flush` is replay.
 * A PostgreSQL-backed store (`--pg URL --writer-id ID`) is replayed into
 * PostgreSQL, by the apply rule every writer's applies follow.
 */
export async function replay(dir: string, o: ReplayOptions, out: Output): Promise<number> {
  const started = performance.now()
  const engine = await openStore(dir, o, { existing: true })
  try {
    const opened = performance.now()
    const h0 = engine.health()
    const from = Math.min(h0.sinks.backend?.checkpoint ?? 0, h0.sinks.index?.checkpoint ?? 0)
    const total = h0.wal.lastLsn - from
    const bar = out.progress(total, 'replay')
    const timer = setInterval(() => {
      const h = engine.health()
      bar.update(Math.min(h.sinks.backend?.checkpoint ?? 0, h.sinks.index?.checkpoint ?? 0) - from)
    }, 100)
    try {
      await engine.flush({ timeoutMs: o.timeoutMs })
    } finally {
      clearInterval(timer)
      bar.update(total)
      bar.stop()
    }
    const done = performance.now()
    const r = engine.recovery
    const result = {
      dir: engine.dir,
      recovery: { records: r.records, lastLsn: r.lastLsn, segments: r.segments, bytesScanned: r.bytesScanned, findings: r.findings },
      replayed: total,
      checkpoints: { backend: engine.health().sinks.backend?.checkpoint, index: engine.health().sinks.index?.checkpoint },
      openMs: Math.round(opened - started),
      replayMs: Math.round(done - opened),
      recordsPerSecond: total > 0 ? Math.round(total / ((done - opened) / 1000)) : 0,
    }
    if (out.json) out.document(result)
    else {
      out.line(`recovered ${r.records} records in ${r.segments} segments (last LSN ${r.lastLsn}) in ${result.openMs} ms`)
      for (const f of r.findings) out.line(`  ${describeFinding(f)}`)
      out.line(`replayed ${total} unapplied records into the backend and the index in ${result.replayMs} ms (${result.recordsPerSecond} records/s)`)
      out.line(`checkpoints: backend ${result.checkpoints.backend}, index ${result.checkpoints.index}`)
    }
    return r.findings.length > 0 ? ExitCode.CORRECTED : ExitCode.CLEAN
  } finally {
    await engine.close()
  }
}
