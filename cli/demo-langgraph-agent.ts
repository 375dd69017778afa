import { Annotation, END, START, StateGraph } from '@langchain/langgraph'
import type { RunnableConfig } from '@langchain/core/runnables'
import type { Checkpoint, CheckpointMetadata, ChannelVersions } from '@langchain/langgraph-checkpoint'
import { MemwalSaver } from '../adapters/langgraph/index.js'

/**
 * The graph process of `npm run demo:langgraph`: a small LangGraph graph with
 * deterministic nodes (no model calls) whose checkpoints go to MemwalSaver.
 * Each step appends its number to `done` and takes ~STEP_MS of "work".
 * It prints `durable <step>` once a checkpoint's put has resolved (that is,
 * once it is on disk), and at the end `final <json>`.
 *
 * Usage: demo-langgraph-agent <dir> <steps>
 */
const [dir, stepsArg] = process.argv.slice(2)
if (!dir || !stepsArg) throw new Error('usage: demo-langgraph-agent <dir> <steps>')
const STEPS = Number(stepsArg)
const STEP_MS = 120
const say = (s: string): void => void process.stdout.write(`${s}\n`)

const State = Annotation.Root({
  next: Annotation<number>({ reducer: (_, b) => b, default: () => 0 }),
  done: Annotation<number[]>({ reducer: (a, b) => [...a, ...b], default: () => [] }),
})

/** Reports each checkpoint once it is durable. */
class ReportingSaver extends MemwalSaver {
  override async put(config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, newVersions: ChannelVersions): Promise<RunnableConfig> {
    const stored = await super.put(config, checkpoint, metadata, newVersions)
    say(`durable ${metadata.step}`)
    return stored
  }
}

const graph = new StateGraph(State)
  .addNode('work', async (s) => {
    await new Promise((r) => setTimeout(r, STEP_MS))
    return { next: s.next + 1, done: [s.next] }
  })
  .addEdge(START, 'work')
  .addConditionalEdges('work', (s) => (s.next < STEPS ? 'work' : END))

const saver = new ReportingSaver((await MemwalSaver.open({ dir })).db)
const app = graph.compile({ checkpointer: saver })
const config = { configurable: { thread_id: 'demo-thread' }, recursionLimit: STEPS + 10, durability: 'sync' as const }

const before = await app.getState(config)
const resuming = before.next.length > 0
say(`start ${JSON.stringify({ resuming, done: (before.values as { done?: number[] }).done ?? [] })}`)
// A resumed run passes null: LangGraph continues from the last checkpoint instead of starting over.
for await (const _ of await app.stream(resuming ? null : { next: 0 }, config)) {
  // the steps report themselves through the saver
}
const after = await app.getState(config)
say(`final ${JSON.stringify((after.values as { done: number[] }).done)}`)
await saver.db.close()
