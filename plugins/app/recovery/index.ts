// Provides `fastify.recovery`: single-use tokens for a password reset and for proving an
// email address, the flows that mail them (forgot password, email change), and the
// periodic deletion of expired tokens.
import fp from 'fastify-plugin'
import { purgeEvery } from '../../../lib/periodic.js'
import { UsersRepository } from '../users/users-repository.js'
import { RecoveryRepository } from './recovery-repository.js'
import { RecoveryService, type RecoverySettings } from './recovery-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    recovery: RecoveryService
  }
}

export interface RecoveryOptions extends RecoverySettings {
  /** How often expired tokens are purged (ms); 0 turns it off. */
  purgeIntervalMs?: number
}

export default fp<RecoveryOptions>(async function recoveryPlugin (fastify, opts) {
  const { db, users, revocation, audit, lockout, mail, redis, events } = fastify
  const { purgeIntervalMs, ...settings } = opts
  const recovery = new RecoveryService(db, new RecoveryRepository(db), new UsersRepository(db), users, revocation, audit,
    lockout, mail, redis, fastify.log, settings, events)
  fastify.decorate('recovery', recovery)
  // A login with a temporary password an admin set answers with a reset token of ours.
  users.useResetTokens({ issue: async (userId) => await recovery.issueReset(userId) })

  purgeEvery(fastify, purgeIntervalMs ?? 10 * 60 * 1000, 'expired recovery tokens', async () => await recovery.purgeExpired())
}, { name: 'recovery', dependencies: ['db', 'redis', 'mail', 'users', 'revocation', 'audit', 'lockout', 'events'] })
