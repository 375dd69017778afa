/**
 * An application's tests often fake the timers (vi.useFakeTimers, Jest's
 * fake timers, @sinonjs/fake-timers) while a store is open on a real
 * directory. The engine schedules on the host's own timers
 * (engine/io/host-timers.ts), so puts, flush and close go on as without
 * fakes: before, every put hung under a faked queueMicrotask (Jest's
 * defaults). Run by test/adapters/fake-timers.test.ts with vitest (its
 * fakes, not a copy of them): `npx vitest run --config test/adapters/vitest/fake-timers.config.ts`.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { MemWAL } from '../../../engine/index.js'

/** Everything @sinonjs/fake-timers can fake in Node, as Jest's defaults do (vitest's leave nextTick and queueMicrotask real). */
const EVERYTHING = ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'setInterval', 'clearInterval', 'Date', 'queueMicrotask', 'nextTick', 'performance', 'hrtime']

describe('a store under fake timers', () => {
  let dir: string
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memwal-fake-timers-'))
  })
  afterEach(() => {
    vi.useRealTimers()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  for (const [name, toFake] of [['vitest\'s defaults', undefined], ['every timer faked (Jest\'s defaults)', EVERYTHING]] as const) {
    it(`writes, reads, flushes and closes with ${name}`, async () => {
      vi.useFakeTimers(toFake ? { toFake: toFake as never } : undefined)
      const db = await MemWAL.open({ dir })
      // Awaited puts, far longer than the writer's 5 ms hold (it then waits for the event loop's turn), then 256 at once.
      const started = Date.now()
      const awaited = 1000
      for (let i = 0; i < awaited; i++) await db.put(`a${i}`, { i }, { namespace: 'agents/1', tags: ['t'], ttlMs: 60_000 })
      await Promise.all(Array.from({ length: 256 }, (_, i) => db.put(`c${i}`, i)))
      await db.flush()
      expect(await db.get('a7', { namespace: 'agents/1' })).toEqual({ i: 7 })
      expect(await db.count({ namespace: 'agents/1', tags: { all: ['t'] } })).toBe(awaited)
      // The store's group sync runs on its cadence (100 ms): the checkpoints retention trusts become durable.
      // No deadline of the test's own (a loaded machine may take longer than any guess): a sync stopped by the
      // fakes never gets there, and vitest's testTimeout (fake-timers.config.ts) fails the case.
      while (db.health().sinks.backend?.durableCheckpoint !== db.health().wal.lastLsn) await sleep(20)
      expect(db.health().sinks.backend?.durableCheckpoint).toBe(db.health().wal.lastLsn)
      expect(Date.now()).toBe(started) // the fakes were in force throughout (sleep is node:timers/promises', which they do not reach)
      await db.close()
      vi.useRealTimers()
      const again = await MemWAL.open({ dir })
      expect(await again.count({})).toBe(awaited + 256)
      await again.close()
    })
  }
})
