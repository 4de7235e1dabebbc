// /users: the admin API over accounts. Every change that removes power revokes at once.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { bearer, errors, IdParams, PageQuery, ref } from '../../schemas/common.js'
import { PatchUserBody, User, UserPage } from '../../schemas/users.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { users, mfa, authenticate, requireRole } = fastify
  fastify.addHook('onRequest', authenticate)
  fastify.addHook('onRequest', requireRole('admin'))
  const security = bearer

  fastify.get('', {
    schema: {
      tags: ['admin'],
      operationId: 'listUsers',
      summary: 'Users, oldest first, cursor-paginated',
      security,
      querystring: PageQuery,
      response: { 200: ref(UserPage), ...errors(400, 401, 403, 503) }
    }
  }, async function (request) {
    return await users.list(request.query)
  })

  fastify.get('/:id', {
    schema: {
      tags: ['admin'],
      operationId: 'getUser',
      summary: 'One user',
      security,
      params: IdParams,
      response: { 200: ref(User), ...errors(400, 401, 403, 404, 503) }
    }
  }, async function (request) {
    return await users.getById(request.params.id)
  })

  fastify.patch('/:id', {
    schema: {
      tags: ['admin'],
      operationId: 'updateUser',
      summary: 'Change role and/or disable; revokes the user\'s tokens when power is removed or changed',
      security,
      params: IdParams,
      body: ref(PatchUserBody),
      response: { 200: ref(User), ...errors(400, 401, 403, 404, [409, 'Demoting or disabling the last admin', { message: 'The last admin cannot be demoted, disabled or deleted' }], 413, 415, 503) }
    }
  }, async function (request) {
    return await users.update({ id: request.params.id }, request.body, auditContext(request))
  })

  fastify.delete('/:id/lockout', {
    schema: {
      tags: ['admin'],
      operationId: 'clearLockout',
      summary: 'Clear the failed-login lockout of a user\'s username, for every client',
      description: 'Forgets the failed logins counted against the username and lifts its locks, the one across clients included. Audited as `lockout_cleared`.',
      security,
      params: IdParams,
      response: { 204: Type.Null({ description: 'Cleared: the user may sign in at once from anywhere' }), ...errors(400, 401, 403, 404, 503) }
    }
  }, async function (request, reply) {
    await users.clearLockout(request.params.id, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.delete('/:id/mfa', {
    schema: {
      tags: ['admin'],
      operationId: 'resetUserMfa',
      summary: 'Remove a user\'s second factors (and recovery codes); every session of the user ends',
      description: 'For a user who lost their authenticator and recovery codes: afterwards the password alone signs in, and the ' +
        'user may enrol again. Audited as `mfa_reset`.',
      security,
      params: IdParams,
      response: {
        204: Type.Null({ description: 'Removed: the user\'s sessions have ended' }),
        ...errors(400, 401, 403, [404, 'No such user, or the user has no second factor'], 503)
      }
    }
  }, async function (request, reply) {
    await mfa.reset(request.params.id, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.delete('/:id', {
    schema: {
      tags: ['admin'],
      operationId: 'deleteUser',
      summary: 'Delete a user; its tokens stop working at once',
      security,
      params: IdParams,
      response: { 204: Type.Null({ description: 'No content' }), ...errors(400, 401, 403, 404, [409, 'Deleting the last admin', { message: 'The last admin cannot be demoted, disabled or deleted' }], 503) }
    }
  }, async function (request, reply) {
    await users.delete(request.params.id, auditContext(request))
    return reply.code(204).send(null)
  })
}

export default routes
