/**
 * What the agent of `npm run demo` stores (demo-agent.ts), so that the demo
 * (demo.ts) reads back exactly what was acknowledged: memory i under key
 * keyOf(i), in namespace AGENT_NAMESPACE, tagged with its topic.
 */
export const AGENT_NAMESPACE = 'agent-1'
const TOPICS = ['weather', 'groceries', 'meeting', 'birthday', 'project', 'travel']

export const topicOf = (i: number): string => TOPICS[i % TOPICS.length] ?? 'misc'
export const keyOf = (i: number): string => `memory/${String(i).padStart(6, '0')}`
export const memoryOf = (i: number): { readonly text: string; readonly at: number } => ({ text: `note ${i} about ${topicOf(i)}`, at: i })

/** The i of a key made by keyOf. */
export function indexOf(key: string): number {
  return Number(key.slice('memory/'.length))
}
