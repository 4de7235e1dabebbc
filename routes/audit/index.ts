// /audit: security events, newest first (admin).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { bearer, errors, ref } from '../../schemas/common.js'
import { AuditPage, AuditQuery } from '../../schemas/audit.js'

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { audit, authenticate, requireRole } = fastify

  fastify.get('', {
    onRequest: [authenticate, requireRole('admin')],
    schema: {
      tags: ['admin'],
      operationId: 'listAuditEvents',
      summary: 'Security events, newest first; userId matches the actor or the subject',
      security: bearer,
      querystring: AuditQuery,
      response: { 200: ref(AuditPage), ...errors(400, 401, 403, 503) }
    }
  }, async function (request) {
    return await audit.list(request.query)
  })
}

export default routes
