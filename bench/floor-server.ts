// Yardstick 2: the floor of GET /auth/me. It does the two things the hot path cannot
// avoid: verify the access token with the service's own lib/tokens.ts, configured as
// plugins/app/auth.ts configures it (header syntax, pinned HS256, iss/aud, required claims,
// claim shape, the verified-token cache), and one Redis HMGET of the same hash. No logging,
// no hooks, no request-id header.
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { createTokens, type AccessClaims } from '../lib/tokens.js'

const env = process.env
const tokens = createTokens({
  secret: String(env.JWT_SECRET),
  issuer: env.JWT_ISSUER ?? 'auth-service',
  audience: env.JWT_AUDIENCE ?? 'auth-service',
  accessTtl: 900
})
// The same client option as plugins/external/redis.ts, so the floor stays a floor.
const redis = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { keyPrefix: env.REDIS_KEY_PREFIX ?? '', enableAutoPipelining: true })

const app = Fastify()

const Me = {
  type: 'object',
  properties: { id: { type: 'string' }, username: { type: 'string' }, role: { type: 'string' } }
} as const

const Denied = { type: 'object', properties: { statusCode: { type: 'integer' } } } as const
const denied = { statusCode: 401 }

app.get('/me', { schema: { response: { 200: Me, 401: Denied } } }, async function (request, reply) {
  const header = request.headers.authorization
  if (header === undefined) return await reply.code(401).send(denied)
  let claims: AccessClaims
  try {
    claims = tokens.verifyBearer(header)
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
