import { randomBytes } from 'node:crypto'
import { isMemwalError } from './errors.js'
import { backendMismatch, checkBackendRecord, describeBackend, readBackendRecord, removeBackendRecord, writeBackendRecord, type BackendKind } from './log/backend-record.js'
import type { FileSystem } from './io/fs.js'
import type { Logger } from './io/logger.js'
import type { LevelStore } from './sinks/level-store.js'
import type { DataDirBinding } from './sinks/sink.js'

/**
 * The engine's side of the data directory's backend record
 * (log/backend-record.ts), at open and under the lock:
 *
 * - a record naming another backend than the one given: BACKEND_MISMATCH,
 *   before the store is opened or anything written;
 * - a directory this open creates: the given backend is recorded before
 *   anything else is written in it;
 * - a directory from before records (or a crash before the record's rename):
 *   recorded at this open, once its local store was looked at. A default
 *   (LevelDB) open is what a forgotten `backend` option looks like, so it is
 *   refused where the store shows records applied (an index checkpoint)
 *   but no LevelDB backend checkpoint: that directory was written with
 *   another backend, and recording it as LevelDB would lock its real writer
 *   out. A PgBackend or a backend of one's own is given on purpose: it is
 *   recorded on its word (with a warning when a LevelDB backend had applied
 *   records there too, as an open without the option before records did).
 *
 * A PostgreSQL record also carries the directory's id (`dirId`), made here
 * when the record is first written or, for a record from before ids, added
 * to it at this open: the backend binds its writer id to it (`binding`,
 * given to BackendSink.bindDataDir before the backend opens).
 *
 * A record this open wrote (there was none) is removed again when the
 * backend refuses the directory at open (`openBackend`: a MemwalError not
 * transient, WRITER_IN_USE above all), so the refusal leaves nothing that
 * ties the directory to that backend: it opens with another writer id. The
 * record is written before the backend opens, not after, so that a crash
 * between the two never leaves a writer id bound in PostgreSQL to an id no
 * directory holds; a crash between the refusal and the removal leaves the
 * record (the next open with another writer id: BACKEND_MISMATCH; the
 * directory holds nothing yet, so delete its BACKEND file). A transient
 * failure (PostgreSQL unreachable, a reply lost) keeps it: the claim may
 * have been committed with this id.
 */
export class BackendClaim {
  private constructor(
    private readonly fs: FileSystem,
    private readonly dir: string,
    readonly given: BackendKind,
    private readonly recorded: BackendKind | undefined,
    /** What the record said before this open (DataDirBinding.recorded). */
    private readonly before: DataDirBinding['recorded'],
    /** This open wrote the record where there was none (check, for a new directory; settle otherwise). */
    private wrote: boolean,
  ) {}

  /** Reads the record and refuses a mismatch; a new directory (`fresh`) gets its record here, a PostgreSQL one without an id its id. */
  static async check(fs: FileSystem, dir: string, given: BackendKind, fresh: boolean): Promise<BackendClaim> {
    const recorded = await readBackendRecord(fs, dir)
    checkBackendRecord(dir, recorded, given)
    const dirId = recorded?.kind === 'postgres' ? recorded.dirId : undefined
    const before = recorded === undefined ? 'none' : dirId === undefined ? 'writer' : 'bound'
    if (given.kind === 'postgres') {
      given = { ...given, dirId: dirId ?? newDirId() }
      if (recorded !== undefined && dirId === undefined) {
        await writeBackendRecord(fs, dir, given)
        return new BackendClaim(fs, dir, given, given, before, false)
      }
    }
    if (recorded === undefined && fresh) {
      await writeBackendRecord(fs, dir, given)
      return new BackendClaim(fs, dir, given, given, before, true)
    }
    return new BackendClaim(fs, dir, given, recorded, before, false)
  }

  /** What BackendSink.bindDataDir is given, for a PostgreSQL record; undefined otherwise. */
  async binding(store: LevelStore): Promise<DataDirBinding | undefined> {
    if (this.given.kind !== 'postgres' || this.given.dirId === undefined) return undefined
    return { dirId: this.given.dirId, holdsRecords: (await store.readCheckpoint('index')) > 0, recorded: this.before }
  }

  /** Opens the backend; a refusal (see the header) removes the record this open wrote, then is thrown as it was. */
  async openBackend<T>(open: () => Promise<T>): Promise<T> {
    try {
      return await open()
    } catch (err) {
      if (this.wrote && isMemwalError(err) && !err.transient) {
        await removeBackendRecord(this.fs, this.dir).catch(() => undefined) // the refusal is what the caller must see
        this.wrote = false
      }
      throw err
    }
  }

  /** For a directory without a record: judged by its store (see the header), then recorded. */
  async settle(store: LevelStore, logger: Logger): Promise<void> {
    if (this.recorded !== undefined) return
    const levelLsn = await store.readCheckpoint('backend')
    const indexLsn = await store.readCheckpoint('index')
    if (this.given.kind === 'leveldb' && indexLsn > 0 && levelLsn === 0) throw backendMismatch(this.dir, undefined, this.given)
    if (this.given.kind !== 'leveldb' && levelLsn > 0) {
      logger.warn({ path: this.dir, levelCheckpoint: levelLsn }, `${this.dir} had no backend record and its local store holds records a LevelDB backend applied (through ${levelLsn}); recording ${describeBackend(this.given)} as given`)
    }
    await writeBackendRecord(this.fs, this.dir, this.given)
    this.wrote = true
  }
}

/**
 * 128 random bits, hex: a directory's id. From the system's generator, not the
 * injected `random`: two directories opened with the same seed must still
 * get ids of their own, or the binding would not tell them apart.
 */
function newDirId(): string {
  return randomBytes(16).toString('hex')
}
