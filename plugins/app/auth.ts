// Provides `fastify.authenticate` (verify the bearer token, then ask the revocation
// cache), `fastify.requireRole(role)`, `fastify.tokens` (sign access tokens) and
// `request.user`. The tokens themselves are lib/tokens.ts.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestAsyncHookHandler, onRequestHookHandler } from 'fastify'
import { createTokens, TokenError, type AccessClaims, type TokenOptions, type Tokens } from '../../lib/tokens.js'
import type { Role } from '../../schemas/users.js'
import { Forbidden, InvalidToken, MissingToken } from '../../lib/errors.js'

export type { AccessClaims }
export type AuthOptions = TokenOptions

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: onRequestHookHandler
    requireRole: (role: Role) => onRequestAsyncHookHandler
    tokens: Tokens
  }
  interface FastifyRequest {
    /** The verified claims of the request's access token, set by `authenticate`. */
    user: AccessClaims
  }
}

export default fp<AuthOptions>(async function authPlugin (fastify, opts) {
  const { revocation } = fastify
  const tokens = createTokens(opts)
  fastify.decorate('tokens', tokens)
  fastify.decorateRequest('user')

  // Callback-style, like every hook on the hot path: the HMGET's promise is the only one.
  fastify.decorate('authenticate', function authenticate (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    const header = request.headers.authorization
    if (header === undefined) {
      done(new MissingToken())
      return
    }
    let claims: AccessClaims
    try {
      claims = tokens.verifyBearer(header)
    } catch (err) {
      done(err instanceof TokenError ? new InvalidToken(err.message) : err as Error)
      return
    }
    revocation.isLive(claims.sub, claims.sid, claims.sca, claims.exp).then((live) => {
      if (!live) return done(new InvalidToken('Access token has been revoked'))
      request.user = claims
      // What a signed-in caller gets back is theirs alone: no cache, shared or private, keeps it.
      reply.header('cache-control', 'no-store')
      done()
    }, done)
  })

  fastify.decorate('requireRole', function requireRole (role: Role) {
    return async function (request: FastifyRequest) {
      // The role in a live token is current: changing a role revokes the user's tokens.
      if (request.user.role !== role) throw new Forbidden(`Requires role ${role}`)
    }
  })
}, { name: 'auth', dependencies: ['revocation'] })
