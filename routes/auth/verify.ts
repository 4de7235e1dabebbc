// GET /auth/verify: the check a gateway makes before it forwards a request (nginx
// auth_request, Traefik forwardAuth, Caddy forward_auth, Envoy ext_authz over HTTP).
// The same decision as GET /auth/me (the signature, then one Redis read), answered as
// status and headers: the gateway copies the identity headers onto the request it forwards.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { bearer, errors } from '../../schemas/common.js'
import type { Role } from '../../schemas/users.js'
import { Forbidden, MfaRequired } from '../../lib/errors.js'
import { hasSecondFactor } from '../../lib/tokens.js'

/** The headers a gateway copies onto the forwarded request, and only those. */
export const IDENTITY_HEADERS = ['x-auth-user-id', 'x-auth-username', 'x-auth-role', 'x-auth-session-id'] as const

// What `?amr=` may ask for: RFC 8176 values this service issues, and `mfa` for any second factor.
const AMR_VALUES = ['pwd', 'otp', 'hwk', 'swk', 'mfa'] as const

// `?role=user` admits any signed-in user, `?role=admin` only admins.
const RANK: Record<Role, number> = { user: 0, admin: 1 }

const VerifyQuery = Type.Object({
  role: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('admin')], {
    description: 'The least role the token must carry (`admin` for an admin-only location)'
  })),
  amr: Type.Optional(Type.Union(AMR_VALUES.map((v) => Type.Literal(v)), {
    description: 'How the token\'s login must have been authenticated (RFC 8176): `otp` a TOTP or recovery code, `hwk`/`swk` ' +
      'a passkey, `pwd` a password; `mfa` any second factor'
  }))
})

const identityHeaders = {
  'x-auth-user-id': { type: 'string', format: 'uuid', description: 'The user\'s id (`sub`)' },
  'x-auth-username': { type: 'string', description: 'The username as registered' },
  'x-auth-role': { type: 'string', enum: ['user', 'admin'], description: 'The role, current: a role change revokes the token' },
  'x-auth-session-id': { type: 'string', format: 'uuid', description: 'The session (`sid`), e.g. for per-session logs' },
  'cache-control': { type: 'string', enum: ['no-store'], description: 'A decision is never cached: the next request may find the token revoked' }
}

// Every answer, the 401s included: a cache between the gateway and this service must not
// keep a decision that the next revocation changes.
function noStore (_request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  reply.header('cache-control', 'no-store')
  done()
}

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { authenticate } = fastify

  function identify (request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const { sub, preferred_username: username, role, sid } = request.user
    return reply.headers({
      'x-auth-user-id': sub,
      'x-auth-username': username,
      'x-auth-role': role,
      'x-auth-session-id': sid
    }).send()
  }

  fastify.get('/verify', {
    onRequest: [noStore, authenticate],
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'verifyToken',
      summary: 'Gateway check of the forwarded bearer token: 200 with identity headers, 401 or 403',
      description: 'For nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth` and Envoy `ext_authz` (HTTP): ' +
        'the gateway forwards the client\'s `Authorization` header here and, on `200`, copies the `X-Auth-*` headers onto ' +
        'the request it passes on (after removing any the client sent). The same decision as `GET /auth/me`: a token ' +
        'revoked at this service is refused on the next request through the gateway. Envoy appends the original path: ' +
        '`/auth/verify/<path>` answers like this route without a role (Envoy checks the role on `X-Auth-Role`). ' +
        '`?amr=otp` (or `mfa`, any second factor) admits only tokens whose login used it (RFC 8176 `amr`): 403 `AUTH_MFA_REQUIRED` otherwise. ' +
        'Configurations: `examples/`.',
      querystring: VerifyQuery,
      response: {
        200: {
          type: 'null',
          description: 'The token is live (and has the role asked for): no body, the identity in the headers',
          headers: identityHeaders
        },
        ...errors(
          [400, 'An unknown `role`'],
          401,
          [403, 'The token\'s role is lower than `role` asks (`AUTH_FORBIDDEN`), or its login lacks the `amr` asked for (`AUTH_MFA_REQUIRED`)', { message: 'Requires role admin' }],
          503)
      }
    }
  }, async function (request, reply) {
    const { role: wanted, amr } = request.query
    if (wanted !== undefined && RANK[request.user.role] < RANK[wanted]) throw new Forbidden(`Requires role ${wanted}`)
    if (amr !== undefined && !(amr === 'mfa' ? hasSecondFactor(request.user) : request.user.amr?.includes(amr) === true)) {
      throw new MfaRequired(`Requires a sign-in with ${amr === 'mfa' ? 'a second factor' : `amr ${amr}`}`)
    }
    return identify(request, reply)
  })

  // Envoy's HTTP ext_authz sends the original method and appends the original path (and
  // query) to its path prefix: any method and any tail answer as above, role aside. The
  // client's query is deliberately not read, so a client cannot choose what is checked.
  fastify.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    url: '/verify/*',
    onRequest: [noStore, authenticate],
    schema: { hide: true },
    handler: async function (request, reply) {
      return identify(request, reply)
    }
  })
}

export default routes
