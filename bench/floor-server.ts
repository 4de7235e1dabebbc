// Yardstick 2: the floor of GET /auth/me. It does the two things the hot path cannot
// avoid: verify the access token with @fastify/jwt configured as plugins/app/auth.ts does
// (HS256 pinned, iss/aud and required claims checked, the same verified-token cache),
// and one Redis HMGET of the same hash. No logging, no hooks, no request-id header.
import Fastify from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { Redis } from 'ioredis'
import { cachedVerifier } from '../lib/token-cache.js'

interface Claims {
  sub: string
  sid: string
  sca: number
  role: string
  preferred_username: string
  exp: number
}

const env = process.env
const issuer = env.JWT_ISSUER ?? 'auth-service'
const audience = env.JWT_AUDIENCE ?? 'auth-service'
// The same client option as plugins/external/redis.ts, so the floor stays a floor.
const redis = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { keyPrefix: env.REDIS_KEY_PREFIX ?? '', enableAutoPipelining: true })

const app = Fastify()
await app.register(fastifyJwt, {
  secret: String(env.JWT_SECRET),
  verify: {
    algorithms: ['HS256'],
    allowedIss: issuer,
    allowedAud: audience,
    requiredClaims: ['sub', 'sid', 'sca', 'role', 'jti', 'iat', 'exp', 'iss', 'aud'],
    cache: false
  }
})
// The same verified-token cache as plugins/app/auth.ts, keyed as there by the whole header.
const verify = cachedVerifier((header: string) => {
  if (!header.startsWith('Bearer ')) throw new Error('not a bearer token')
  return app.jwt.verify<Claims>(header.slice(7))
})

const Me = {
  type: 'object',
  properties: { id: { type: 'string' }, username: { type: 'string' }, role: { type: 'string' } }
} as const

const Denied = { type: 'object', properties: { statusCode: { type: 'integer' } } } as const
const denied = { statusCode: 401 }

app.get('/me', { schema: { response: { 200: Me, 401: Denied } } }, async function (request, reply) {
  const header = request.headers.authorization
  if (header === undefined) return await reply.code(401).send(denied)
  let claims: Claims
  try {
    claims = verify(header)
  } catch {
    return await reply.code(401).send(denied)
  }
  // The same key and fields as plugins/app/revocation/index.ts reads (prefix + '{sub}', ra, s:<sid>).
  const [ra, s] = await redis.hmget('{' + claims.sub + '}', 'ra', 's:' + claims.sid)
  if (s === 'x' || (ra !== null && claims.sca <= Number(ra))) return await reply.code(401).send(denied)
  return { id: claims.sub, username: claims.preferred_username, role: claims.role }
})
app.addHook('onClose', async () => { await redis.quit() })

await app.listen({ port: Number(env.PORT), host: '127.0.0.1' })
