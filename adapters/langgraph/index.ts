/**
 * memwal/langgraph: a LangGraph checkpoint saver and long-term store on memwal.
 * Needs the optional peers `@langchain/langgraph-checkpoint` and `@langchain/core`.
 */
export { MemwalSaver, type MemwalSaverOptions } from './saver.js'
export { MemwalStore } from './store.js'
