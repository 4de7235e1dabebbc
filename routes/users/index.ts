// /users: the admin API over accounts. Every change that removes power revokes at once.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { bearer, errors, IdParams, PageQuery, ref } from '../../schemas/common.js'
import { PatchUserBody, User, UserPage } from '../../schemas/users.js'
import { CreateUserBody, SetPasswordBody } from '../../schemas/auth.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { users, recovery, mfa, authenticate, requireRole } = fastify
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

  fastify.post('', {
    schema: {
      tags: ['admin'],
      operationId: 'createUser',
      summary: 'Create an account, with the role given (default user)',
      description: 'The username and password follow the rules of registration; an email starts unverified and, with mail configured, gets a verification mail. The admin\'s authority is checked when the account is written: an admin demoted, or whose session ended, while the request waited creates nothing. Audited as `user_created`.',
      security,
      body: ref(CreateUserBody),
      response: {
        201: ref(User, 'The new account'),
        ...errors(400, 401, 403, [409, 'The username is taken (in any case), or the email is another account\'s', { message: 'Username is already taken' }], 413, 415, 503)
      }
    }
  }, async function (request, reply) {
    const { username, password, role, email } = request.body
    const user = await users.create(username, password, role ?? 'user', email ?? null, auditContext(request))
    // As at registration: the verification mail goes after this answer (none without SMTP_URL).
    recovery.sendVerification(user)
    return reply.code(201).send(user)
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

  fastify.post('/:id/password', {
    schema: {
      tags: ['admin'],
      operationId: 'setUserPassword',
      summary: 'Set a temporary password; every session of the user ends, and the user must change it at the next login',
      description: 'The password follows the rules of registration. Signing in with it answers 403 `AUTH_PASSWORD_CHANGE_REQUIRED` with a `reset_token` for `POST /auth/password/reset`, instead of a session, until the user has chosen a new one. Audited as `password_set`.',
      security,
      params: IdParams,
      body: ref(SetPasswordBody),
      response: {
        204: Type.Null({ description: 'Set: the user\'s tokens stop working at once' }),
        ...errors(400, 401, 403, 404, 413, 415, 503)
      }
    }
  }, async function (request, reply) {
    await users.setTemporaryPassword({ id: request.params.id }, request.body.password, auditContext(request))
    return reply.code(204).send(null)
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
    await users.clearLockout({ id: request.params.id }, auditContext(request))
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
