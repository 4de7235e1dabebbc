// /.well-known/jwks.json: the public keys that verify access tokens (asymmetric signing
// only), so other services can check tokens without holding a secret.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ref } from '../../schemas/common.js'
import { Jwks } from '../../schemas/well-known.js'

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const keys = fastify.config.signingKeys
  if (keys === undefined) return
  const body = { keys: keys.publicKeys.map((k) => k.jwk) }

  fastify.get('/.well-known/jwks.json', {
    schema: {
      tags: ['auth'],
      operationId: 'jwks',
      summary: 'Public keys that verify access tokens (current first, then previous ones still valid)',
      response: { 200: ref(Jwks) }
    }
  }, async function (_request, reply) {
    // Verifiers may cache it briefly; a rotation adds the new key before it signs anything.
    reply.header('cache-control', 'public, max-age=300')
    return body
  })
}

export default routes
