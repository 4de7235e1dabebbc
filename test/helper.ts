// Builds the real app against the machine's PostgreSQL and Redis, with configuration
// passed as options (never through process.env), and cleans up after the test file.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import pg from 'pg'
import { Redis } from 'ioredis'
import app from '../app.js'
import { serverOptions } from '../lib/server-options.js'
import { runningServer } from './setup/embedded-postgres.js'
import { redisServer } from './support/redis-server.js'
import { loadConfig } from '../plugins/external/config.js'

// Without TEST_DATABASE_URL: the machine's PostgreSQL, or the embedded one tap's `before`
// script started because there is none (test/setup/).
export const BASE_DATABASE_URL = process.env.TEST_DATABASE_URL ?? runningServer()?.url ?? 'postgres://postgres@127.0.0.1:5432/auth_test'
export const BASE_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const JWT_SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz'
export const PASSWORD = 'correct horse battery'

interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestContext {
  /** Unique tag of this test file's run: usernames and Redis keys carry it. */
  tag: string
  databaseUrl: string
  redisKeyPrefix: string
  username: (label?: string) => string
  /** A user the test deleted through the API: its audit events are removed at teardown too. */
  forget: (userId: string) => void
}

let counter = 0

/**
 * One per test file: a tag for usernames, a Redis key prefix of its own, and (with
 * ownDatabase) a database of its own for tests whose assertions span all users (the
 * last admin, listing users). Everything is removed at teardown.
 */
export async function context (t: Teardown, opts: { ownDatabase?: boolean } = {}): Promise<TestContext> {
  const tag = randomBytes(4).toString('hex')
  let databaseUrl = BASE_DATABASE_URL
  if (opts.ownDatabase === true) {
    const url = new URL(BASE_DATABASE_URL)
    url.pathname = `/auth_test_${tag}`
    databaseUrl = url.toString()
  }
  const redisKeyPrefix = `test:${tag}:`
  const forgotten = new Set<string>()
  t.teardown(async () => {
    await deleteKeys(BASE_REDIS_URL, redisKeyPrefix)
    if (opts.ownDatabase === true) {
      await adminQuery(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(`auth_test_${tag}`)} WITH (FORCE)`)
    } else {
      await cleanUsers(databaseUrl, tag, [...forgotten])
    }
  })
  return {
    tag,
    databaseUrl,
    redisKeyPrefix,
    username: (label = 'u') => `${label.slice(0, 10)}_${tag}_${++counter}`,
    forget: (userId: string) => { forgotten.add(userId) }
  }
}

async function adminQuery (sql: string): Promise<void> {
  const url = new URL(BASE_DATABASE_URL)
  url.pathname = '/postgres'
  const client = new pg.Client({ connectionString: url.toString() })
  await client.connect()
  try {
    await client.query(sql)
  } finally {
    await client.end()
  }
}

async function cleanUsers (databaseUrl: string, tag: string, deleted: string[]): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl })
  try {
    await client.connect()
    const { rows } = await client.query('DELETE FROM users WHERE username LIKE $1 RETURNING id', [`%\\_${tag}\\_%`])
    const ids = [...rows.map((r) => r.id), ...deleted]
    // Events of this file's users, and failed logins of its usernames that never existed.
    await client.query(`DELETE FROM audit_events WHERE actor_id = ANY($1) OR subject_id = ANY($1)
      OR detail->>'username' ILIKE $2`, [ids, `%\\_${tag}\\_%`])
  } catch (err) {
    // The database may never have been created if the app failed to start.
    if ((err as { code?: string }).code !== '3D000') throw err
  } finally {
    await client.end().catch(() => {})
  }
}

export async function deleteKeys (redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } catch {
    // A private redis-server may already be gone.
  } finally {
    redis.disconnect()
  }
}

export type Overrides = Record<string, string | number | boolean | undefined>

/**
 * Builds and readies the app; closed at teardown. `withoutRedis`: as server.ts runs it when
 * nothing answers at the default Redis address (a single instance, no Redis at all);
 * `rateLimitClients`: the in-process rate limits' cap (AppOptions).
 */
export async function build (t: Teardown, ctx: TestContext, overrides: Overrides = {},
  opts: { logStream?: { write: (line: string) => void }, withoutRedis?: boolean, rateLimitClients?: number } = {}): Promise<FastifyInstance> {
  const loaded = loadConfig({
    DATABASE_URL: ctx.databaseUrl,
    REDIS_URL: BASE_REDIS_URL,
    REDIS_KEY_PREFIX: ctx.redisKeyPrefix,
    JWT_SECRET,
    LOG_LEVEL: 'silent',
    // A test's unreachable dependency is meant to be: fail at the first attempt.
    STARTUP_TIMEOUT: 0,
    // Cheaper hashes keep the suite fast; test/security/passwords.test.ts checks the real defaults.
    ARGON2_MEMORY_COST: 8192,
    ARGON2_TIME_COST: 1,
    LOGIN_RATE_LIMIT: 10_000,
    REGISTER_RATE_LIMIT: 10_000,
    LOCKOUT_THRESHOLD: 10_000,
    RECOVERY_RATE_LIMIT: 10_000,
    RECOVERY_ACCOUNT_LIMIT: 10_000,
    // No refresh grace unless a test asks for it: a used refresh token presented again is
    // theft at once (test/routes/refresh.test.ts covers the grace).
    REFRESH_REUSE_INTERVAL: 0,
    ...overrides
  })
  const config = { ...loaded, withoutRedis: opts.withoutRedis === true }
  const server = Fastify(serverOptions(config, opts.logStream))
  await server.register(app, { config, purgeIntervalMs: 0, rateLimitClients: opts.rateLimitClients })
  t.teardown(() => server.close())
  await server.ready()
  return server
}

export interface Account {
  id: string
  username: string
  password: string
  access: string
  refresh: string
}

/** Registers a user (as admin through the service when asked) and logs in. */
export async function signUp (server: FastifyInstance, ctx: TestContext, opts: { role?: 'user' | 'admin', label?: string } = {}): Promise<Account> {
  const username = ctx.username(opts.label ?? opts.role ?? 'user')
  const user = opts.role === 'admin'
    ? await server.users.register(username, PASSWORD, 'admin')
    : (await server.inject({ method: 'POST', url: '/auth/register', payload: { username, password: PASSWORD } })).json()
  const tokens = await login(server, username)
  return { id: user.id, username, password: PASSWORD, ...tokens }
}

export async function login (server: FastifyInstance, username: string, password = PASSWORD): Promise<{ access: string, refresh: string }> {
  const res = await server.inject({ method: 'POST', url: '/auth/login', payload: { username, password } })
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  const body = res.json()
  return { access: body.access_token, refresh: body.refresh_token }
}

export function me (server: FastifyInstance, access: string): Promise<LightMyRequestResponse> {
  return server.inject({ method: 'GET', url: '/auth/me', headers: { authorization: `Bearer ${access}` } })
}

export function bearer (access: string): { authorization: string } {
  return { authorization: `Bearer ${access}` }
}

export { freePort } from '../lib/free-port.js'

export interface PrivateRedis {
  url: string
  port: number
  client: Redis
  stop: () => Promise<void>
  start: () => Promise<void>
}

/** A redis-server of the test's own (test/support/redis-server.ts), started, with a client. */
export async function privateRedis (t: Teardown): Promise<PrivateRedis> {
  const server = await redisServer(t)
  await server.start()
  const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 })
  client.on('error', () => {})
  await client.connect()
  t.teardown(() => client.disconnect())
  return { ...server, client }
}

/** Queries of the app's database waiting for a lock: requests queued behind rows a test holds. */
export async function lockWaiters (server: FastifyInstance): Promise<number> {
  const { rows } = await server.db.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
  return rows[0].n
}

/** Waits (5 s at most) until at least `n` queries wait for a lock; how many do. */
export async function untilLockWaiters (server: FastifyInstance, n: number): Promise<number> {
  let seen = await lockWaiters(server)
  for (let i = 0; i < 500 && seen < n; i++) {
    await sleep(10)
    seen = await lockWaiters(server)
  }
  return seen
}

/**
 * Holds the rows `sql` locks in a transaction of the test's own until release() (or the
 * test's end): requests that need those rows queue behind it, past authentication, and
 * a test decides what happens before they go on.
 */
export async function holdRows (t: Teardown, databaseUrl: string, sql: string, params: unknown[] = []): Promise<() => Promise<void>> {
  const blocker = new pg.Client({ connectionString: databaseUrl })
  await blocker.connect()
  let released = false
  const release = async () => {
    if (released) return
    released = true
    await blocker.query('COMMIT').finally(() => blocker.end())
  }
  t.teardown(release)
  await blocker.query('BEGIN')
  await blocker.query(sql, params)
  return release
}

/** One request over a real socket (for tests of listening instances), JSON in and out. */
export async function httpCall (base: string, method: string, path: string, opts: { token?: string, body?: unknown } = {}): Promise<{ status: number, body: any }> {
  const headers: Record<string, string> = {}
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
  if (opts.body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(base + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

/**
 * Holds the next call of `object[method]` until `release()`: `reached` resolves once the
 * call is made; the original runs after the release (`before`, the default) or has run
 * and its result waits (`after`). Later calls go straight through. The tests use it to
 * force another request into that window.
 */
export function holdNext<T extends object, K extends keyof T> (t: Teardown, object: T, method: K,
  when: 'before' | 'after' = 'before'): { reached: Promise<void>, release: () => void } {
  const original = object[method] as (...args: unknown[]) => Promise<unknown>
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  let hit!: () => void
  const reached = new Promise<void>((resolve) => { hit = resolve })
  object[method] = async function (...args: unknown[]) {
    object[method] = original as T[K] // only the first call is held
    if (when === 'after') {
      const result = await original.apply(object, args)
      hit()
      await gate
      return result
    }
    hit()
    await gate
    return await original.apply(object, args)
  } as T[K]
  t.teardown(() => { object[method] = original as T[K] })
  return { reached, release }
}

/**
 * Holds the next read of a token's state from PostgreSQL (a read-through), after the
 * read returned and before the caller goes on to fill Redis, until `release()`: the
 * tests use it to force a revocation and a FLUSHALL into that window.
 */
export function holdStateRead (t: Teardown, app: FastifyInstance): { read: Promise<void>, release: () => void } {
  const { reached, release } = holdNext(t, app.revocation.repository, 'readState', 'after')
  return { read: reached, release }
}

/** The app's Redis client, for a test that reads or writes its keys (an app built with Redis). */
export function redisOf (app: FastifyInstance): Redis {
  if (app.redis === null) throw new Error('this app runs without Redis')
  return app.redis
}

export interface Costs<T> {
  result: T
  /** PostgreSQL connections taken from the pool (every query takes one). */
  pgQueries: number
  /** Redis commands sent, and the socket writes they took (auto-pipelining batches them). */
  redisCommands: number
  redisWrites: number
}

/** What `fn` cost the app in PostgreSQL queries and Redis commands and round trips. */
export async function costs<T> (app: FastifyInstance, fn: () => Promise<T>): Promise<Costs<T>> {
  let pgQueries = 0
  let redisCommands = 0
  let redisWrites = 0
  const onAcquire = () => { pgQueries++ }
  app.db.pool.on('acquire', onAcquire)
  const redis = app.redis
  if (redis === null) {
    // No client to count on: nothing can reach a Redis.
    try {
      return { result: await fn(), pgQueries, redisCommands, redisWrites }
    } finally {
      app.db.pool.off('acquire', onAcquire)
    }
  }
  const send = redis.sendCommand.bind(redis)
  redis.sendCommand = ((...args: Parameters<typeof send>) => { redisCommands++; return send(...args) }) as typeof redis.sendCommand
  const stream = (redis as unknown as { stream: { write: (...args: unknown[]) => boolean } }).stream
  const write = stream.write
  stream.write = function (this: unknown, ...args: unknown[]) { redisWrites++; return write.apply(this, args) }
  try {
    return { result: await fn(), pgQueries, redisCommands, redisWrites }
  } finally {
    app.db.pool.off('acquire', onAcquire)
    redis.sendCommand = send
    stream.write = write
  }
}
