// Target: a downstream service's route protected by the resource-server plugin
// (packages/resource-server), as its README sets it up: HS256 with the service's secret,
// the service's Redis, introspection at the service for a miss. It answers what the floor
// server answers (floor-server.ts), so the difference is the plugin's cost over the floor.
import Fastify from 'fastify'
import resourceServer from '@auth-service/fastify-resource-server'

const env = process.env
const app = Fastify()
await app.register(resourceServer, {
  authUrl: String(env.AUTH_URL),
  clientId: String(env.AUTH_CLIENT_ID),
  clientSecret: String(env.AUTH_CLIENT_SECRET),
  secret: String(env.JWT_SECRET),
  redis: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  keyPrefix: env.REDIS_KEY_PREFIX ?? ''
})

const Me = {
  type: 'object',
  properties: { id: { type: 'string' }, username: { type: 'string' }, role: { type: 'string' } }
} as const

app.get('/me', { onRequest: [app.authenticate], schema: { response: { 200: Me } } }, async function (request) {
  return { id: request.user.sub, username: request.user.preferred_username, role: request.user.role }
})

await app.listen({ port: Number(env.PORT), host: '127.0.0.1' })
