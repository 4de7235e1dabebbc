// What the routes that end in a session share: the token response (RFC 6749 §5.1), its
// OpenAPI description, and the client details a session records.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ref } from '../../schemas/common.js'
import { TokenPair } from '../../schemas/auth.js'
import type { Tokens } from '../../lib/tokens.js'
import type { ClientMeta, IssuedSession } from '../../plugins/app/sessions/sessions-service.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'

/** A token response, documented with the header RFC 6749 §5.1 requires of it. */
export const tokenResponse = (description: string) => ({
  ...ref(TokenPair, description),
  headers: { 'cache-control': { type: 'string', enum: ['no-store'], description: 'Token responses are never cached' } }
})

/** The request a session is started or refreshed by. */
export function clientMeta (request: FastifyRequest): ClientMeta {
  const ua = request.headers['user-agent']
  return { ...auditContext(request), userAgent: typeof ua === 'string' ? ua.slice(0, 256) : null }
}

/** The token pair of a session (RFC 6749 §5.1: never cached). */
export function tokenPair (reply: FastifyReply, tokens: Tokens, s: IssuedSession) {
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
  // The access token ends with its session when that comes sooner (SESSION_MAX_LIFETIME).
  const iat = Math.floor(Date.now() / 1000)
  const ttl = Math.max(1, Math.min(tokens.accessTtl, s.endsAt - iat))
  const claims = { sub: s.userId, username: s.username, role: s.role, sid: s.sid, sca: s.sca, amr: s.amr }
  return {
    access_token: tokens.signAccess(claims, ttl < tokens.accessTtl ? { iat, ttl } : undefined),
    token_type: 'Bearer' as const,
    expires_in: ttl,
    refresh_token: s.refreshToken
  }
}
