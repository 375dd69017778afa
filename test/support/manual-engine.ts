/**
 * An engine on a manual clock, for tests that move time by hand (the health
 * loop, the metrics, the disk watch): the simulated filesystem and an
 * in-memory LevelDB (kept in a world, so a test can close and reopen on the
 * same ones), small segments, a short close grace and quick resilience.
 */
import { MemoryLevel } from 'memory-level'
import type { LevelDatabase, MemwalOptions } from '../../engine/index.js'
import { ManualClock, SeededRandom, SimulatedFileSystem } from '../../engine/testing.js'

export interface ManualWorld {
  readonly sim: SimulatedFileSystem
  readonly db: MemoryLevel<string, Uint8Array>
  readonly clock: ManualClock
  /** Seeds the filesystem's random source; the engine's is `seed + 1`. */
  readonly seed: number
}

export function manualWorld(seed: number): ManualWorld {
  return { sim: new SimulatedFileSystem(new SeededRandom(seed)), db: new MemoryLevel<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' }), clock: new ManualClock(), seed }
}

/** Breaker after 3 failures, half-open after 500 ms, retries of 10-100 ms, the apply timeout at 5 s: all on the manual clock. */
export const manualResilience = Object.freeze({ retryDelayMsMin: 10, retryDelayMsMax: 100, breakerThreshold: 3, breakerHalfOpenMs: 500, applyTimeoutMs: 5000 })

/** Options for an engine in `/data` of the world; `extra` overrides any of them. */
export function manualOptions(w: ManualWorld, extra: Partial<MemwalOptions> = {}): MemwalOptions {
  return {
    dir: '/data', fs: w.sim, level: w.db as unknown as LevelDatabase, clock: w.clock, random: new SeededRandom(w.seed + 1),
    segmentBytes: 64 * 1024, closeGraceMs: 1000, resilience: manualResilience,
    ...extra,
  }
}
