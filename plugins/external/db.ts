// Provides `fastify.db`: the PostgreSQL pool (via @fastify/postgres), after creating the
// database if it is missing and applying the versioned migrations in migrations/.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fp from 'fastify-plugin'
import fastifyPostgres, { type PostgresDb } from '@fastify/postgres'
import pg from 'pg'
import Postgrator from 'postgrator'
import { addressOf, StartupError, waitFor, type WaitOptions } from '../../lib/startup.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: PostgresDb & Record<string, PostgresDb>
  }
}

/** What the domain needs of PostgreSQL: `fastify.db` is one. */
export interface Db {
  query: (text: string, values?: unknown[]) => Promise<{ rows: any[], rowCount: number | null }>
  /** Runs `fn` in a transaction: COMMIT when it resolves, ROLLBACK when it throws. */
  transact: <T>(fn: (client: Queryable) => Promise<T>) => Promise<T>
}

/** Where a repository's query runs: the pool, or the client of a transaction. */
export type Queryable = Pick<Db, 'query'>

// Bounded waits: a request must fail fast with 503 rather than hang when PostgreSQL is gone.
// The connect timeout also bounds the wait for a free pooled connection. The statement
// timeout is enforced by the server; query_timeout, a little longer, by the client, for a
// server that no longer answers at all. The token check on the request path has its own,
// shorter bound (plugins/app/revocation/revocation-service.ts).
const CONNECT_TIMEOUT_MS = 2000
const STATEMENT_TIMEOUT_MS = 5000
// Arbitrary constant that names "auth-service migrations" in pg_advisory_lock.
const MIGRATION_LOCK_ID = 7_241_337

function migrationsDir (): string {
  // Works from the sources (tsx, tap) and from dist/ after `npm run build`.
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 3; i++) {
    dir = dirname(dir)
    if (existsSync(join(dir, 'migrations'))) return join(dir, 'migrations')
  }
  throw new Error('migrations/ directory not found')
}

/**
 * Creates the database named in the URL when it does not exist (and the role may create it).
 * An unreachable server is tried again for `wait.timeoutMs` (lib/startup.ts).
 */
export async function ensureDatabase (databaseUrl: string, wait: WaitOptions = { timeoutMs: 0 }): Promise<void> {
  const url = new URL(databaseUrl)
  const name = decodeURIComponent(url.pathname.slice(1))
  const target = { variable: 'DATABASE_URL', what: 'PostgreSQL', address: addressOf(databaseUrl, 5432) }
  const missing = await waitFor(target, wait, async (timeoutMs) => {
    const probe = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: timeoutMs })
    try {
      await probe.connect()
      return false
    } catch (err) {
      if ((err as { code?: string }).code === '3D000') return true // invalid_catalog_name
      throw err
    } finally {
      await probe.end().catch(() => {})
    }
  })
  if (!missing) return
  url.pathname = '/postgres'
  const admin = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: CONNECT_TIMEOUT_MS })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  } catch (err) {
    // Another instance starting at the same moment may have created it first.
    const code = (err as { code?: string }).code
    if (code === '42501') { // insufficient_privilege
      throw new StartupError(`DATABASE_URL: database "${name}" does not exist at ${target.address} and the role may not create it`)
    }
    if (code !== '42P04' && code !== '23505') throw err
  } finally {
    await admin.end().catch(() => {})
  }
}

/**
 * Applies pending migrations. A session-level advisory lock serialises instances that
 * start at the same time; the second one finds nothing left to do.
 */
export async function migrate (databaseUrl: string, dir = migrationsDir()): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS })
  await client.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID])
    const postgrator = new Postgrator({
      migrationPattern: join(dir, '*.sql'),
      driver: 'pg',
      schemaTable: 'schema_version',
      execQuery: async (query) => await client.query(query)
    })
    const applied = await postgrator.migrate()
    return applied.map((m) => m.filename)
  } finally {
    await client.end().catch(() => {})
  }
}

export interface DbOptions {
  databaseUrl: string
  poolSize: number
  /** How long start-up waits for PostgreSQL to answer (ms). */
  startupTimeoutMs?: number
}

export default fp<DbOptions>(async function dbPlugin (fastify, opts) {
  await ensureDatabase(opts.databaseUrl, {
    timeoutMs: opts.startupTimeoutMs ?? 0,
    onWait: (cause) => fastify.log.warn(`PostgreSQL at ${addressOf(opts.databaseUrl, 5432)} is not answering (${cause}): trying again for up to ${Math.round((opts.startupTimeoutMs ?? 0) / 1000)} s`)
  })
  const applied = await migrate(opts.databaseUrl)
  if (applied.length > 0) fastify.log.info({ applied }, 'database migrations applied')

  await fastify.register(fastifyPostgres, {
    connectionString: opts.databaseUrl,
    max: opts.poolSize,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    query_timeout: STATEMENT_TIMEOUT_MS + 1000,
    idleTimeoutMillis: 30_000,
    // TCP keepalive notices a PostgreSQL host that vanished without closing its sockets
    // (a crash, a partition), so an idle pooled connection is dropped, not reused and hung on.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000
  })
  const { pool } = fastify.pg
  // A broken connection must not take the process down; the next query reconnects.
  // (pg emits 'error' on idle clients when the server goes away.)
  pool.on('error', (err) => fastify.log.warn({ err: { message: err.message } }, 'idle PostgreSQL client error'))
  fastify.decorate('db', fastify.pg)

  const { metrics } = fastify
  metrics.gauge('pg_pool_total_connections', 'PostgreSQL connections open in the pool', () => pool.totalCount)
  metrics.gauge('pg_pool_idle_connections', 'PostgreSQL connections idle in the pool', () => pool.idleCount)
  metrics.gauge('pg_pool_waiting_clients', 'Queries waiting for a PostgreSQL connection', () => pool.waitingCount)
}, { name: 'db', dependencies: ['metrics'] })
