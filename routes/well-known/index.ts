// /.well-known/jwks.json: the public keys that verify access tokens (asymmetric signing
// only) and security events, so other services can check them without holding a secret.
// /.well-known/ssf-configuration: the Shared Signals transmitter's description.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errors, ref } from '../../schemas/common.js'
import { Jwks } from '../../schemas/well-known.js'
import { SsfConfiguration } from '../../schemas/ssf.js'
import { requireEvents } from '../ssf/index.js'

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { events } = fastify
  fastify.get('/.well-known/ssf-configuration', {
    onRequest: requireEvents(events),
    schema: {
      tags: ['events'],
      operationId: 'ssfConfiguration',
      summary: 'Shared Signals transmitter configuration (SSF 1.0 §7)',
      description: 'Where the stream endpoints are, which delivery methods are offered (push, RFC 8935; poll, RFC 8936) and ' +
        'where the keys that sign the events are. `501` when no asymmetric key is configured (`JWT_PRIVATE_KEY` or `SSF_PRIVATE_KEY`).',
      response: { 200: ref(SsfConfiguration), ...errors(501) }
    }
  }, async function (request) {
    return events.configuration(events.base(`${request.protocol}://${request.host}`))
  })

  // Access tokens' keys when they are asymmetric, else the key of the security events alone.
  const keys = fastify.config.signingKeys ?? fastify.config.eventKeys
  if (keys === undefined) return
  const body = { keys: keys.publicKeys.map((k) => k.jwk) }

  fastify.get('/.well-known/jwks.json', {
    schema: {
      tags: ['auth'],
      operationId: 'jwks',
      summary: 'Public keys that verify access tokens and security events (current first, then previous ones still valid)',
      response: { 200: ref(Jwks) }
    }
  }, async function (_request, reply) {
    // Verifiers may cache it briefly; a rotation adds the new key before it signs anything.
    reply.header('cache-control', 'public, max-age=300')
    return body
  })
}

export default routes
