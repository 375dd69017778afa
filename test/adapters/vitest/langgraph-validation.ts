/**
 * LangGraph's own conformance suite for checkpoint savers
 * (@langchain/langgraph-checkpoint-validation, pinned), against MemwalSaver.
 * Run by test/adapters/langgraph-validation.test.ts through vitest, which the
 * suite is written for: `npx vitest run --globals --config test/adapters/vitest/vitest.config.ts`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { validate } from '@langchain/langgraph-checkpoint-validation'
import { MemwalSaver } from '../../../adapters/langgraph/index.js'

const dirs = new Map<MemwalSaver, string>()

validate({
  checkpointerName: 'memwal MemwalSaver',
  async createCheckpointer() {
    const dir = await mkdtemp(path.join(tmpdir(), 'memwal-lg-validate-'))
    const saver = await MemwalSaver.open({ dir })
    dirs.set(saver, dir)
    return saver
  },
  async destroyCheckpointer(saver: MemwalSaver) {
    await saver.close()
    await rm(dirs.get(saver) as string, { recursive: true, force: true })
    dirs.delete(saver)
  },
})
