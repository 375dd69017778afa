/**
 * The parts of @claude-flow/memory 3.0.0-alpha.25's `types.d.ts` that its
 * IMemoryBackend interface uses, written out here: the interface is types
 * only, so memwal/claude-flow needs nothing of claude-flow at run time, and
 * this package does not install claude-flow's ~311 MB of dependencies to
 * build. TypeScript's structural typing makes a MemwalMemoryBackend
 * assignable to claude-flow's own IMemoryBackend as long as these match.
 */
export type MemoryType = 'episodic' | 'semantic' | 'procedural' | 'working' | 'cache'
export type AccessLevel = 'private' | 'team' | 'swarm' | 'public' | 'system'
export type DistanceMetric = 'cosine' | 'euclidean' | 'dot' | 'manhattan'
export type QueryType = 'semantic' | 'exact' | 'prefix' | 'tag' | 'hybrid'

export interface MemoryEntry {
  id: string
  key: string
  content: string
  embedding?: Float32Array
  type: MemoryType
  namespace: string
  tags: string[]
  metadata: Record<string, unknown>
  ownerId?: string
  accessLevel: AccessLevel
  createdAt: number
  updatedAt: number
  expiresAt?: number
  version: number
  references: string[]
  accessCount: number
  lastAccessedAt: number
}

export interface MemoryEntryUpdate {
  content?: string
  tags?: string[]
  metadata?: Record<string, unknown>
  accessLevel?: AccessLevel
  expiresAt?: number
  references?: string[]
}

export interface MemoryQuery {
  type: QueryType
  content?: string
  embedding?: Float32Array
  key?: string
  keyPrefix?: string
  namespace?: string
  tags?: string[]
  memoryType?: MemoryType
  accessLevel?: AccessLevel
  ownerId?: string
  metadata?: Record<string, unknown>
  createdAfter?: number
  createdBefore?: number
  updatedAfter?: number
  updatedBefore?: number
  limit: number
  offset?: number
  threshold?: number
  includeExpired?: boolean
  distanceMetric?: DistanceMetric
}

export interface SearchResult {
  entry: MemoryEntry
  score: number
  distance: number
}

export interface SearchOptions {
  k: number
  ef?: number
  threshold?: number
  metric?: DistanceMetric
  filters?: MemoryQuery
}

export interface ComponentHealth {
  status: 'healthy' | 'degraded' | 'unhealthy'
  latency: number
  message?: string
}

export interface HealthCheckResult {
  status: 'healthy' | 'degraded' | 'unhealthy'
  components: { storage: ComponentHealth; index: ComponentHealth; cache: ComponentHealth }
  timestamp: number
  issues: string[]
  recommendations: string[]
}

export interface BackendStats {
  totalEntries: number
  entriesByNamespace: Record<string, number>
  entriesByType: Record<MemoryType, number>
  memoryUsage: number
  avgQueryTime: number
  avgSearchTime: number
}

export interface IMemoryBackend {
  initialize(): Promise<void>
  shutdown(): Promise<void>
  store(entry: MemoryEntry): Promise<void>
  get(id: string): Promise<MemoryEntry | null>
  getByKey(namespace: string, key: string): Promise<MemoryEntry | null>
  update(id: string, update: MemoryEntryUpdate): Promise<MemoryEntry | null>
  delete(id: string): Promise<boolean>
  query(query: MemoryQuery): Promise<MemoryEntry[]>
  search(embedding: Float32Array, options: SearchOptions): Promise<SearchResult[]>
  bulkInsert(entries: MemoryEntry[]): Promise<void>
  bulkDelete(ids: string[]): Promise<number>
  count(namespace?: string): Promise<number>
  listNamespaces(): Promise<string[]>
  clearNamespace(namespace: string): Promise<number>
  getStats(): Promise<BackendStats>
  healthCheck(): Promise<HealthCheckResult>
}
