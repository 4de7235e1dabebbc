// Provides `fastify.mfa`: second factors (TOTP with recovery codes), the logins waiting for
// one after the password, and the periodic clean-up of those that expired.
import fp from 'fastify-plugin'
import { periodic } from '../../../lib/periodic.js'
import { SecretBox } from '../../../lib/secret-box.js'
import { SessionsRepository } from '../sessions/sessions-repository.js'
import { MfaRepository } from './mfa-repository.js'
import { MfaService } from './mfa-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    mfa: MfaService
  }
}

export interface MfaOptions {
  /** MFA_ENCRYPTION_KEY (or the key derived outside production): seals TOTP secrets. */
  encryptionKey: Buffer
  /** The name authenticator apps show beside the account (JWT_ISSUER). */
  issuer: string
  /** How often expired waiting logins are purged (ms); 0 turns it off. */
  purgeIntervalMs?: number
}

export default fp<MfaOptions>(async function mfaPlugin (fastify, opts) {
  const { db, revocation, users, audit } = fastify
  const mfa = new MfaService(new MfaRepository(db), new SessionsRepository(db), revocation, users, audit,
    new SecretBox(opts.encryptionKey), opts.issuer)
  fastify.decorate('mfa', mfa)

  // Every instance may run it: batches skip the rows another one is deleting.
  const every = opts.purgeIntervalMs ?? 60_000
  if (every > 0) {
    const stop = periodic(every, async () => { await mfa.purgeExpired() },
      (err) => fastify.log.warn({ err: { message: err.message } }, 'purge of expired MFA logins failed'))
    fastify.addHook('onClose', async () => await stop())
  }
}, { name: 'mfa', dependencies: ['db', 'revocation', 'users', 'audit'] })
