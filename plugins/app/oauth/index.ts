// Provides `fastify.oauth`: token introspection (RFC 7662) and revocation (RFC 7009) for
// other services (oauth-service.ts); the routes are routes/oauth/.
import fp from 'fastify-plugin'
import { SessionsRepository } from '../sessions/sessions-repository.js'
import { OAuthService, type OAuthOptions } from './oauth-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    oauth: OAuthService
  }
}

export default fp<OAuthOptions>(async function oauthPlugin (fastify, opts) {
  const { tokens, revocation, sessions, audit, db } = fastify
  fastify.decorate('oauth', new OAuthService(tokens, revocation, sessions, new SessionsRepository(db), audit, opts))
}, { name: 'oauth', dependencies: ['auth', 'revocation', 'sessions', 'audit', 'db'] })
