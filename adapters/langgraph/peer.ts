import type * as Lg from '@langchain/langgraph-checkpoint'
import { importPeer } from '../peer.js'

export { openOwned } from '../open.js'

/** `@langchain/langgraph-checkpoint`, loaded once per process when memwal/langgraph is imported (an optional peer). */
export const langgraph = await importPeer<typeof Lg>('@langchain/langgraph-checkpoint', 'memwal/langgraph', '@langchain/langgraph-checkpoint @langchain/core')

/** What LangGraph's serializer returns: a type tag and the bytes (null for a marker with no value). */
export type Serialized = readonly [string, Uint8Array | null]
