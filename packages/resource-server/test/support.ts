// What the plugin's tests need around it: tokens signed as the auth service signs them, a
// stand-in for the auth service's JWKS and introspection endpoints (counting its calls),
// the revocation hash written as the service writes it, a Redis of the test's own, a TCP
// proxy that can black-hole, and a downstream app using the plugin.
import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { createSigner } from 'fast-jwt'
import { Redis } from 'ioredis'
import resourceServer, { type ResourceServerOptions } from '@auth-service/fastify-resource-server'
import { PROTOCOL_KEY, PROTOCOL_VERSION, userKey } from '@auth-service/fastify-resource-server/protocol'

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const SECRET = 'package-test-secret-0123456789-abcdefghijklmnop'
export const CLIENT = { clientId: 'AAAAAAAAAAAAAAAAAAAAAA', clientSecret: 's3cret with spaces & symbols' }

interface Teardown { teardown: (fn: () => unknown) => void }

export interface Identity {
  sub: string
  sid: string
  /** Session creation, µs since the epoch. */
  sca: number
  role: 'user' | 'admin'
  username: string
}

export function identity (role: 'user' | 'admin' = 'user'): Identity {
  return { sub: randomUUID(), sid: randomUUID(), sca: Date.now() * 1000, role, username: `u${randomBytes(3).toString('hex')}` }
}

/** `amr`: how the login was authenticated (RFC 8176); absent, as in tokens from before second factors. */
export function hs256 (who: Identity, opts: { secret?: string, expiresIn?: number, amr?: unknown } = {}): string {
  const sign = createSigner({ key: opts.secret ?? SECRET, algorithm: 'HS256', iss: 'auth-service', aud: 'auth-service', expiresIn: opts.expiresIn ?? 900_000 })
  return sign({ sub: who.sub, preferred_username: who.username, role: who.role, sid: who.sid, sca: who.sca, jti: randomUUID(), ...(opts.amr === undefined ? {} : { amr: opts.amr }) })
}

export interface SigningKey {
  kid: string
  privateKey: KeyObject
  jwk: Record<string, unknown>
}

export function ed25519 (kid = randomBytes(8).toString('base64url')): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' } }
}

export function eddsa (who: Identity, key: SigningKey): string {
  const sign = createSigner({ key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), algorithm: 'EdDSA', kid: key.kid, iss: 'auth-service', aud: 'auth-service', expiresIn: 900_000 })
  return sign({ sub: who.sub, preferred_username: who.username, role: who.role, sid: who.sid, sca: who.sca, jti: randomUUID() })
}

/** A stand-in for the auth service: its JWKS, and introspection answering from a table. */
export interface FakeAuth {
  url: string
  app: FastifyInstance
  keys: SigningKey[]
  /** token → answer; a token not in it is inactive. */
  answers: Map<string, Record<string, unknown>>
  calls: { jwks: number, introspect: number }
  /** What the last introspection request carried. */
  last: { authorization?: string, contentType?: string, body?: Record<string, string> }
  /** Answer every introspection with this status instead (e.g. 500). */
  failWith?: number
  close: () => Promise<void>
}

export async function fakeAuth (t: Teardown, keys: SigningKey[] = []): Promise<FakeAuth> {
  const app = Fastify()
  await app.register(import('@fastify/formbody'))
  const fake = { app, keys, answers: new Map(), calls: { jwks: 0, introspect: 0 }, last: {} } as unknown as FakeAuth
  app.get('/.well-known/jwks.json', async () => {
    fake.calls.jwks++
    return { keys: fake.keys.map((k) => k.jwk) }
  })
  app.post('/oauth/introspect', async (request, reply) => {
    fake.calls.introspect++
    fake.last = { authorization: request.headers.authorization, contentType: request.headers['content-type'], body: { ...(request.body as Record<string, string>) } }
    if (fake.failWith !== undefined) return reply.code(fake.failWith).send({ error: 'no' })
    return fake.answers.get((request.body as { token: string }).token) ?? { active: false }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  fake.url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  fake.close = () => app.close()
  t.teardown(() => app.close())
  return fake
}

/** The introspection answer the auth service gives for a live access token. */
export function active (who: Identity): Record<string, unknown> {
  return { active: true, sub: who.sub, sid: who.sid, role: who.role, username: who.username, token_type: 'access_token' }
}

/** Writes revocation state as the auth service does (protocol version 1). */
export class Writer {
  constructor (readonly redis: Redis, readonly prefix: string) {}

  async marker (value: string | null = PROTOCOL_VERSION): Promise<void> {
    if (value === null) await this.redis.del(this.prefix + PROTOCOL_KEY)
    else await this.redis.set(this.prefix + PROTOCOL_KEY, value)
  }

  async live (who: Identity, ra = 0): Promise<void> {
    await this.redis.hset(this.prefix + userKey(who.sub), 'ra', String(ra), 's:' + who.sid, 'ok')
  }

  async dead (who: Identity): Promise<void> {
    await this.redis.hset(this.prefix + userKey(who.sub), 's:' + who.sid, 'x')
  }

  async revokeAll (who: Identity): Promise<void> {
    await this.redis.hset(this.prefix + userKey(who.sub), 'ra', String(who.sca))
  }
}

/** A Redis client and a key prefix of the test's own; its keys removed at teardown. */
export async function redisPrefix (t: Teardown, url = REDIS_URL): Promise<Writer> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 })
  const prefix = `rs-test:${randomBytes(4).toString('hex')}:`
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`).catch(() => [])
    if (keys.length > 0) await redis.del(...keys).catch(() => {})
    redis.disconnect()
  })
  return new Writer(redis, prefix)
}

// The repository's own test tools (these tests run in the repository, never from the package).
export { freePort } from '../../../lib/free-port.js'
export { redisServer as privateRedis } from '../../../test/support/redis-server.js'

/** A TCP proxy in front of a port: forwards, or (black-holed) accepts and forwards nothing. */
export async function proxy (t: Teardown, port: number): Promise<{ url: string, blackhole: (on: boolean) => void }> {
  let holed = false
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    const up = connect(port, '127.0.0.1')
    sockets.add(up)
    up.on('close', () => sockets.delete(up))
    up.on('error', () => client.destroy())
    client.on('data', (chunk) => { if (!holed) up.write(chunk) })
    up.on('data', (chunk) => { if (!holed) client.write(chunk) })
    client.on('close', () => up.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return { url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`, blackhole: (on) => { holed = on } }
}

/**
 * A downstream service using the plugin: GET /me for anyone signed in, GET /admin for
 * admins, GET /secure for a sign-in with a second factor.
 */
export async function downstream (t: Teardown, opts: Partial<ResourceServerOptions> & Pick<ResourceServerOptions, 'redis'>): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(resourceServer, { clientId: CLIENT.clientId, clientSecret: CLIENT.clientSecret, keyPrefix: 'unused:', ...opts })
  app.get('/me', { onRequest: [app.authenticate] }, async (request) => ({ sub: request.user.sub, role: request.user.role, sid: request.user.sid }))
  app.get('/admin', { onRequest: [app.authenticate, app.requireRole('admin')] }, async () => ({ ok: true }))
  app.get('/secure', { onRequest: [app.authenticate, app.requireMfa] }, async () => ({ ok: true }))
  t.teardown(() => app.close())
  await app.ready()
  return app
}
