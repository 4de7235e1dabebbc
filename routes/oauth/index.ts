// /oauth: token introspection (RFC 7662) for registered clients, and token revocation
// (RFC 7009) for the holder of a token. docs/integration.md says when a service should
// introspect rather than use the gateway check or the resource-server plugin.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { TSchema } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { errors, ref } from '../../schemas/common.js'
import { Introspection, IntrospectionRequest, RevocationRequest, RevocationResult } from '../../schemas/oauth.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'
import { InvalidClient } from '../../lib/errors.js'

const noStore = { 'cache-control': { type: 'string', enum: ['no-store'], description: 'Never cached: the next request may find the token revoked' } }

// Both body types, each validated: a content type without a schema would reach the
// handler unvalidated.
const formOrJson = (schema: TSchema) => ({
  content: {
    'application/x-www-form-urlencoded': { schema: ref(schema) },
    'application/json': { schema: ref(schema) }
  }
})

const invalidClient = {
  ...errors([401, 'Missing or wrong client credentials', { code: 'AUTH_INVALID_CLIENT', message: 'Client authentication failed' }])[401],
  headers: { 'www-authenticate': { type: 'string', description: 'RFC 7617 challenge: `Basic realm="auth", charset="UTF-8"`' } }
}

// Every answer, refusals included: an introspection answer must never be reused.
function noStoreHook (_request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  reply.header('cache-control', 'no-store')
  done()
}

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { clients, oauth } = fastify

  fastify.post('/introspect', {
    onRequest: noStoreHook,
    schema: {
      tags: ['oauth'],
      security: [{ basicAuth: [] }],
      operationId: 'introspectToken',
      summary: 'Is this token live? For registered clients (RFC 7662)',
      description: 'A registered client (`POST /clients`) authenticates with HTTP Basic `clientId:clientSecret` and asks about an ' +
        'access or a refresh token. A live token gets `active: true` and its claims; a revoked, expired, malformed or unknown ' +
        'one gets `{ "active": false }` and nothing else. An access token is decided as every request here is (its signature, ' +
        'then one Redis read): revoked at this service, it is inactive on the very next introspection.',
      body: formOrJson(IntrospectionRequest),
      response: {
        200: { ...ref(Introspection, 'Whether the token is live, and if so what it says'), headers: noStore },
        ...errors(400, 413, 415, 503),
        401: invalidClient
      }
    }
  }, async function (request) {
    const { token } = request.body as IntrospectionRequest
    // The client check and an access token's check are both started here, before either
    // is awaited: their two Redis commands leave in one write (one round trip).
    const client = clients.authenticateBasic(request.headers.authorization)
    const access = oauth.introspectAccess(token)
    // Awaited below only for a known client; until then its failure is not this request's.
    access?.catch(() => {})
    // RFC 6749 §5.2 (invalid_client): answered with a Basic challenge (lib/errors.ts).
    if (await client === null) throw new InvalidClient()
    // A refresh token costs a PostgreSQL read: only for a known client.
    return await (access ?? oauth.introspectRefresh(token))
  })

  fastify.post('/revoke', {
    onRequest: noStoreHook,
    schema: {
      tags: ['oauth'],
      operationId: 'revokeToken',
      summary: 'End the session of an access or refresh token (RFC 7009)',
      description: 'For the token\'s holder: no client authentication. The session the token belongs to ends, exactly as ' +
        'with `POST /auth/logout` (its access and refresh tokens stop working on the next request, here and at every service ' +
        'that checks tokens). An unknown, expired or already revoked token is answered the same way and changes nothing.',
      body: formOrJson(RevocationRequest),
      response: {
        200: { ...ref(RevocationResult, 'Done: the token, if it was live, no longer works'), headers: noStore },
        ...errors(400, 413, 415, 503)
      }
    }
  }, async function (request) {
    await oauth.revoke((request.body as RevocationRequest).token, auditContext(request))
    return {}
  })
}

export default routes
