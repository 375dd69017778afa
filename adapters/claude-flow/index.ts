/**
 * memwal/claude-flow: claude-flow's IMemoryBackend (@claude-flow/memory) on memwal.
 * IMemoryBackend is an interface only, so nothing of claude-flow is loaded at run time.
 */
export { MemwalMemoryBackend, type MemwalMemoryBackendOptions } from './backend.js'
export type * from './types.js'
