/**
 * The sink contract (test/support/sink-contract.ts) against every sink:
 * LevelBackend and IndexSink on a real LevelDB store, CacheSink, and
 * PgBackend when PostgreSQL answers (MEMWAL_PG_URL; see test/support/pg.ts:
 * a failure under CI, a visible skip elsewhere).
 */
import path from 'node:path'
import pg from 'pg'
import t from 'tap'
import { IndexSink } from '../../engine/sinks/index-sink.js'
import { createPackr, packValue } from '../../engine/format/value-codec.js'
import { LevelBackend } from '../../engine/sinks/level-backend.js'
import { LevelStore } from '../../engine/sinks/level-store.js'
import { CacheSink } from '../../engine/sinks/cache-sink.js'
import { PgBackend } from '../../engine/sinks/pg/pg-backend.js'
import type { Sink, StoredEntry } from '../../engine/index.js'
import { dropSchema, PG_URL, requirePg, testSchemaName } from '../support/pg.js'
import { runSinkContract, type ContractTest, type Held, type SinkFixture, type SinkKind } from '../support/sink-contract.js'
import { tmpDir } from '../support/tmp-dir.js'

const CACHE_BYTES = 1024 * 1024

/** The whole entry, as a backend returns it (PostgreSQL's extra columns left out). */
/** What every sink keeps of an entry; createdAt/updatedAt are tested with the engine (test/unit/entry-metadata.test.ts). */
const wholeEntry = (e: StoredEntry): Held => ({ value: e.value, lsn: e.lsn, namespace: e.namespace, key: e.key, ...(e.tags !== undefined ? { tags: e.tags } : {}) })
/** The packer the stores use, to size a value as the index records it. */
const contractPackr = createPackr()

/**
 * A LevelDB store under a temp dir, opened anew for each sink (a reopen is a
 * new store on the same files). Its next write can be made to fail: the
 * database's batch hook throws once, before anything is written.
 */
function levelFixture(t: ContractTest, make: (store: LevelStore) => Sink, read: (sink: Sink, key: string) => Promise<Held | undefined>): SinkFixture {
  const location = path.join(tmpDir(t, 'memwal-sink-contract-'), 'store')
  const stores = new Map<Sink, LevelStore>()
  let failNext = false
  return {
    open: async () => {
      const store = await LevelStore.open(location)
      const db = store.db as unknown as { _batch(...args: unknown[]): Promise<void> }
      const batchHook = db._batch.bind(db)
      db._batch = async (...args) => {
        if (failNext) {
          failNext = false
          throw new Error('injected write failure')
        }
        return batchHook(...args)
      }
      const sink = make(store)
      stores.set(sink, store)
      await sink.open()
      return sink
    },
    close: async (sink) => {
      await sink.close()
      await stores.get(sink)?.close()
      stores.delete(sink)
    },
    read,
    failNextWrite: async () => {
      failNext = true
    },
  }
}

const levelBackend: SinkKind = {
  name: 'LevelBackend',
  durable: true,
  project: wholeEntry,
  fixture: async (t) =>
    levelFixture(t, (store) => new LevelBackend(store), async (sink, key) => {
      const e = await (sink as LevelBackend).get(key)
      return e === undefined ? undefined : wholeEntry(e)
    }),
}

const indexSink: SinkKind = {
  name: 'IndexSink',
  durable: true,
  // The index keeps what queries select by, and the value's size as stored (for stats()), not values.
  project: (e) => ({ namespace: e.namespace, ...(e.tags !== undefined ? { tags: e.tags } : {}), valueBytes: packValue(contractPackr, e.value).length }) as Held,
  fixture: async (t) =>
    levelFixture(
      t,
      (store) => new IndexSink(store),
      async (sink, key) => {
        // The write time it keeps (layout 3) is the record's, which these records do not set: queries test it (query-model.test.ts).
        for await (const [k, { updatedAt: _at, ...e }] of (sink as IndexSink).keys({})) if (k === key) return { ...e }
        return undefined
      },
    ),
}

const cacheSink: SinkKind = {
  name: 'CacheSink',
  durable: false,
  project: wholeEntry,
  fixture: async () => {
    // Storage is the process's memory: a reopen is a new cache, starting at the log's head (here 0).
    return {
      open: async () => {
        const sink = new CacheSink(CACHE_BYTES, () => 0)
        await sink.open()
        return sink
      },
      close: (sink) => sink.close(),
      // No failNextWrite: it has no storage write that can fail, the in-memory apply is its only step.
      read: async (sink, key) => {
        const e = (sink as CacheSink).get(key)
        return e === undefined ? undefined : wholeEntry(e)
      },
    }
  },
}

const pgBackend: SinkKind = {
  name: 'PgBackend',
  durable: true,
  project: wholeEntry,
  fixture: async (t) => {
    const schema = testSchemaName('contract')
    t.teardown(() => dropSchema(schema))
    return {
      open: async () => {
        const sink = new PgBackend({ connectionString: PG_URL, writerId: 'contract', schema })
        await sink.open()
        return sink
      },
      close: (sink) => sink.close(),
      read: async (sink, key) => {
        const e = await (sink as PgBackend).get(key)
        return e === undefined ? undefined : wholeEntry(e)
      },
      failNextWrite: () => failNextPgWrite(schema),
    }
  },
}

/**
 * Makes the next write of a checkpoint row in `schema` raise, which fails the
 * statement that carries it (the data with it, if they are one statement). A
 * sequence counts the writes, since it is not rolled back with the statement
 * that failed, and the trigger raises at the count armed here.
 */
async function failNextPgWrite(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL })
  await c.connect()
  try {
    const s = `"${schema}"`
    await c.query(`CREATE SEQUENCE IF NOT EXISTS ${s}.checkpoint_writes`)
    await c.query(`CREATE TABLE IF NOT EXISTS ${s}.fail_at (n bigint)`)
    await c.query(`DELETE FROM ${s}.fail_at`)
    await c.query(`INSERT INTO ${s}.fail_at SELECT nextval('${s}.checkpoint_writes') + 1`)
    await c.query(`CREATE OR REPLACE FUNCTION ${s}.fail_armed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('${s}.checkpoint_writes') = (SELECT n FROM ${s}.fail_at) THEN RAISE EXCEPTION 'injected write failure'; END IF; RETURN NEW; END $$`)
    await c.query(`CREATE OR REPLACE TRIGGER fail_armed BEFORE INSERT OR UPDATE ON ${s}.checkpoints FOR EACH ROW EXECUTE FUNCTION ${s}.fail_armed()`)
  } finally {
    await c.end()
  }
}

for (const kind of [levelBackend, indexSink, cacheSink]) await t.test(kind.name, (t) => runSinkContract(t, kind))

await t.test('PgBackend', async (t) => {
  if (!(await requirePg(t))) return
  await runSinkContract(t, pgBackend)
})
