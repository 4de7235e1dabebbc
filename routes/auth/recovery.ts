// /auth, account recovery: forgot and reset a password, verify an email, change one's own
// email. The flows and their guarantees: docs/recovery.md.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { bearer, errors, ref } from '../../schemas/common.js'
import { User } from '../../schemas/users.js'
import { ForgotPasswordAccepted, ForgotPasswordBody, ResetPasswordBody, UpdateMeBody, VerifyEmailBody } from '../../schemas/recovery.js'
import { auditContext } from '../../plugins/app/audit/audit-service.js'

const ACCEPTED = { message: 'If the account exists and has a verified email, a mail with a reset token is on its way' }

const routes: FastifyPluginAsyncTypebox = async function (fastify) {
  const { recovery, authenticate, config } = fastify
  // Per client IP: no one mails a stranger's inbox full, or tries tokens at speed.
  const limited = { rateLimit: { max: config.RECOVERY_RATE_LIMIT, timeWindow: 60_000 } }

  fastify.post('/password/forgot', {
    config: limited,
    schema: {
      tags: ['recovery'],
      operationId: 'forgotPassword',
      summary: 'Ask for a password-reset mail, by username or email',
      description: 'Always 202 with the same body, after the same work, whether or not the account exists: the lookup and the mail happen after the answer (so an outage of PostgreSQL or of the SMTP server shows in the logs and /metrics, not here). The mail goes only to a verified email, and holds a single-use token valid 30 minutes (a newer one replaces it). Rate-limited per client IP and per account name (`RECOVERY_ACCOUNT_LIMIT` an hour).',
      body: ref(ForgotPasswordBody),
      response: {
        202: ref(ForgotPasswordAccepted, 'Accepted: a mail goes out if the account has a verified email'),
        ...errors(400, 413, 415, [429, 'Too many requests from this client, or for this account; see Retry-After'],
          [501, 'No mail configured (SMTP_URL)'])
      }
    }
  }, async function (request, reply) {
    await recovery.forgot(request.body.username ?? request.body.email as string, auditContext(request))
    return reply.code(202).send(ACCEPTED)
  })

  fastify.post('/password/reset', {
    config: limited,
    schema: {
      tags: ['recovery'],
      operationId: 'resetPassword',
      summary: 'Set a new password with a reset token; every session of the user ends',
      description: 'The token (from the mail, or from a login that must change its password) works once, for 30 minutes, and dies with any later password change. The password rules of registration apply; a refused password leaves the token unused. Rate-limited per client IP.',
      body: ref(ResetPasswordBody),
      response: {
        204: Type.Null({ description: 'The password is set and every session has ended: sign in with the new one' }),
        ...errors([400, 'Unknown, used, expired or superseded token (`AUTH_INVALID_RECOVERY_TOKEN`), a weak password (`AUTH_WEAK_PASSWORD`), or invalid input',
          { code: 'AUTH_INVALID_RECOVERY_TOKEN', message: 'Invalid or expired token' }], 413, 415, 429, 503)
      }
    }
  }, async function (request, reply) {
    await recovery.resetPassword(request.body.token, request.body.newPassword, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.post('/email/verify', {
    config: limited,
    schema: {
      tags: ['recovery'],
      operationId: 'verifyEmail',
      summary: 'Confirm an email address with the token mailed to it',
      description: 'The token works once, for 30 minutes, and only while the address is still the user\'s email. A verified email receives password-reset mail and signs in.',
      body: ref(VerifyEmailBody),
      response: {
        204: Type.Null({ description: 'The email is verified (`emailVerified: true`)' }),
        ...errors([400, 'Unknown, used or expired token, or the email changed since (`AUTH_INVALID_RECOVERY_TOKEN`), or invalid input',
          { code: 'AUTH_INVALID_RECOVERY_TOKEN', message: 'Invalid or expired token' }], 413, 415, 429, 503)
      }
    }
  }, async function (request, reply) {
    await recovery.verifyEmail(request.body.token, auditContext(request))
    return reply.code(204).send(null)
  })

  fastify.patch('/me', {
    onRequest: [authenticate],
    config: limited,
    schema: {
      tags: ['auth'],
      security: bearer,
      operationId: 'updateMe',
      summary: 'Change the signed-in user\'s email',
      description: 'A new email starts unverified and gets a verification mail; `null` removes it. Rate-limited per client IP and per account (`RECOVERY_ACCOUNT_LIMIT` mails an hour).',
      body: ref(UpdateMeBody),
      response: {
        200: ref(User, 'The user, with its email as it now is'),
        ...errors(400, 401, [409, 'Another account has this email', { message: 'Email is already in use' }], 413, 415, 429,
          [501, 'A new email needs a verification mail, and no mail is configured (SMTP_URL)'], 503)
      }
    }
  }, async function (request) {
    // (Cache-Control: no-store, as on every signed-in answer: plugins/app/auth.ts.)
    return await recovery.changeEmail(request.user.sub, request.body.email, auditContext(request))
  })
}

export default routes
