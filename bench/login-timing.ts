// Measures how long a failed login takes for an unknown user, a wrong password and a
// disabled user (the contract: medians within 40 %), at the service's default argon2id
// parameters. Run: npx tsx bench/login-timing.ts   (against the local PostgreSQL/Redis)
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import pg from 'pg'
import { Redis } from 'ioredis'
import app, { serverOptions } from '../app.js'
import { loadConfig } from '../plugins/external/config.js'

const ROUNDS = Number(process.env.ROUNDS ?? 40)
const tag = randomBytes(3).toString('hex')
const base = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/auth_bench')
const config = loadConfig({
  DATABASE_URL: base.toString(),
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  REDIS_KEY_PREFIX: `bench-timing:${tag}:`,
  JWT_SECRET: randomBytes(48).toString('base64'),
  LOG_LEVEL: 'silent',
  LOGIN_RATE_LIMIT: 1_000_000,
  LOCKOUT_THRESHOLD: 1_000_000
})
const server = Fastify(serverOptions(config))
await server.register(app, { config, purgeIntervalMs: 0 })
await server.ready()

const password = 'correct horse battery'
const alice = `alice_${tag}`
const dora = `dora_${tag}`
await server.users.register(alice, password)
const disabled = await server.users.register(dora, password)
await server.db.query('UPDATE users SET disabled = true WHERE id = $1', [disabled.id])

const kinds: Record<string, { username: string, password: string }> = {
  'unknown user': { username: `nobody_${tag}`, password },
  'wrong password': { username: alice, password: 'not the password' },
  'disabled user': { username: dora, password }
}
const times: Record<string, number[]> = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]))
const bodies = new Set<string>()
for (let i = 0; i < ROUNDS; i++) {
  // Interleaved, so drift on a noisy machine hits every kind alike.
  for (const [kind, payload] of Object.entries(kinds)) {
    const started = process.hrtime.bigint()
    const res = await server.inject({ method: 'POST', url: '/auth/login', payload })
    times[kind].push(Number(process.hrtime.bigint() - started) / 1e6)
    if (res.statusCode !== 401) throw new Error(`${kind}: expected 401, got ${res.statusCode}`)
    bodies.add(res.body)
  }
}
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }
const medians = Object.fromEntries(Object.entries(times).map(([k, xs]) => [k, median(xs)]))
const lo = Math.min(...Object.values(medians))
const hi = Math.max(...Object.values(medians))
console.log(`argon2id m=${config.ARGON2_MEMORY_COST} t=${config.ARGON2_TIME_COST} p=${config.ARGON2_PARALLELISM}, ${ROUNDS} rounds each`)
for (const [k, m] of Object.entries(medians)) console.log(`${k.padEnd(16)} median ${m.toFixed(1)} ms`)
console.log(`spread ${(100 * (hi - lo) / lo).toFixed(1)} % (contract: within 40 %); distinct response bodies: ${bodies.size}`)

const client = new pg.Client({ connectionString: base.toString() })
await client.connect()
const { rows } = await client.query('DELETE FROM users WHERE username LIKE $1 RETURNING id', [`%\\_${tag}`])
await client.query('DELETE FROM audit_events WHERE subject_id = ANY($1) OR detail->>\'username\' LIKE $2', [rows.map((r) => r.id), `%\\_${tag}`])
await client.end()
// Only this run's keys (by prefix): never the rest of a shared Redis.
const redis = new Redis(config.REDIS_URL)
for (let cursor = '0', first = true; first || cursor !== '0'; first = false) {
  const [next, keys] = await redis.scan(cursor, 'MATCH', `${config.REDIS_KEY_PREFIX}*`, 'COUNT', 500)
  cursor = next
  if (keys.length > 0) await redis.del(...keys)
}
redis.disconnect()
await server.close()
