// Provides `fastify.webauthn`: passkeys (WebAuthn) registered, used to sign in without a
// password or as a second factor, listed and deleted; and the purge of expired challenges.
import fp from 'fastify-plugin'
import { periodic } from '../../../lib/periodic.js'
import { WebAuthnRepository } from './webauthn-repository.js'
import { WebAuthnService, type WebAuthnSettings } from './webauthn-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    webauthn: WebAuthnService
  }
}

export interface WebAuthnOptions extends WebAuthnSettings {
  /** How often expired challenges are purged (ms); 0 turns it off. */
  purgeIntervalMs?: number
}

export default fp<WebAuthnOptions>(async function webauthnPlugin (fastify, opts) {
  const { db, revocation, sessions, audit, mfa, users } = fastify
  const { purgeIntervalMs, ...settings } = opts
  const webauthn = new WebAuthnService(db, new WebAuthnRepository(db), revocation, sessions, audit, mfa, users, settings)
  fastify.decorate('webauthn', webauthn)

  // Every instance may purge: batches skip the rows another one is deleting.
  const every = purgeIntervalMs ?? 60 * 1000
  if (every > 0) {
    const stop = periodic(every, async () => await webauthn.purgeChallenges(),
      (err) => fastify.log.warn({ err: { message: err.message } }, 'passkey challenge purge failed'))
    fastify.addHook('onClose', stop)
  }
}, { name: 'webauthn', dependencies: ['db', 'revocation', 'sessions', 'audit', 'mfa', 'users'] })
