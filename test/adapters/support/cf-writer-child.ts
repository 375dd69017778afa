/**
 * A claude-flow memory writer for the SIGKILL test: stores entries through
 * MemwalMemoryBackend, 8 in flight, and prints `ack <id>` once each store has
 * resolved. Runs until killed. Usage: cf-writer-child <dir> <idPrefix>
 */
import { MemwalMemoryBackend } from '../../../adapters/claude-flow/index.js'

const [dir, prefix] = process.argv.slice(2)
if (!dir || !prefix) throw new Error('usage: cf-writer-child <dir> <idPrefix>')
const namespace: string = prefix
const backend = new MemwalMemoryBackend({ dir })
await backend.initialize()
process.stdout.write('ready\n')
let next = 0
async function writer(): Promise<void> {
  for (;;) {
    const i = next++
    const id = `${prefix}-${i}`
    const now = Date.now()
    await backend.store({ id, key: id, content: `content of ${id}`, type: 'episodic', namespace, tags: ['t'], metadata: { i }, accessLevel: 'private', createdAt: now, updatedAt: now, version: 1, references: [], accessCount: 0, lastAccessedAt: now, embedding: Float32Array.from([i, 1, 2]) })
    process.stdout.write(`ack ${id}\n`)
  }
}
await Promise.all(Array.from({ length: 8 }, writer))
