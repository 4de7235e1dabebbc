// Second factors: TOTP enrolment and removal, recovery codes, and the logins that wait for
// a second factor after the password (the `mfa_token`). Completing such a login is the
// sessions service's (completeLogin), which asks this one to check the factor.
import { createHash, randomBytes } from 'node:crypto'
import { inBatches } from '../../../lib/periodic.js'
import { Conflict, InvalidCode, NotFound } from '../../../lib/errors.js'
import { base32Encode, matchTotp, newTotpSecret, otpauthUri } from '../../../lib/totp.js'
import type { SecretBox } from '../../../lib/secret-box.js'
import type { MfaMethod } from '../../../schemas/mfa.js'
import type { Queryable } from '../../external/db.js'
import type { RevocationService, RevocationSet } from '../revocation/revocation-service.js'
import type { AuditContext, AuditService } from '../audit/audit-service.js'
import type { UserService } from '../users/users-service.js'
import type { SessionsRepository } from '../sessions/sessions-repository.js'
import type { MfaRepository } from './mfa-repository.js'

/** How long an `mfa_token` can complete its login (the contract: at most 5 minutes). */
export const MFA_TOKEN_TTL_S = 300
/** Wrong codes one `mfa_token` takes before it is void (the lockout counts them too). */
export const MFA_TOKEN_MAX_FAILURES = 5
/** Logins waiting for a second factor kept per user: a new one voids the oldest. */
const PENDING_PER_USER = 5
const RECOVERY_CODES = 10
/** Expired waiting logins deleted per statement by the purge. */
const PURGE_BATCH = 5000

/** A login the password step left waiting for its second factor. */
export interface PendingLogin {
  mfaToken: string
  methods: MfaMethod[]
}

/**
 * Checks a second factor for the user of a waiting login, inside the transaction that
 * completes it (the login's row and its user's are locked): the `amr` values it proves
 * (and, for a passkey, which one: the session remembers it), or null when it is wrong.
 * May write (a code's step, a recovery code used up, a passkey's counter).
 */
export type FactorCheck = (userId: string, client: Queryable) => Promise<string[] | { amr: string[], credentialId: string } | null>

/**
 * A waiting login's `mfa_token`, or its hash: a passkey ceremony started with the token
 * keeps only the hash with its challenge, as this module keeps only hashes.
 */
export type MfaTokenRef = string | { hash: Buffer }

/** How an `mfa_token` is stored and looked up: its SHA-256. */
export function mfaTokenHash (ref: MfaTokenRef): Buffer {
  return typeof ref === 'string' ? sha256(ref) : ref.hash
}

function sha256 (value: string | Buffer): Buffer {
  return createHash('sha256').update(value).digest()
}

/** A recovery code: 80 random bits as 16 base32 characters in four groups (`k7d2-m4qp-x3vb-n6ta`). */
function newRecoveryCode (): string {
  return base32Encode(randomBytes(10)).toLowerCase().match(/.{4}/g)?.join('-') as string
}

/** How a recovery code is stored and looked up: SHA-256 of its characters, case and dashes aside. */
function hashRecoveryCode (code: string): Buffer {
  return sha256(code.toLowerCase().replace(/[^a-z2-7]/g, ''))
}

export class MfaService {
  /** The clock TOTP codes are checked against (ms since the epoch); tests set their own. */
  now: () => number = Date.now

  constructor (
    /** Second factors in PostgreSQL; a test may wrap a method to hold a request mid-way. */
    readonly repository: MfaRepository,
    private readonly sessions: SessionsRepository,
    private readonly revocation: RevocationService,
    private readonly users: UserService,
    private readonly audit: AuditService,
    private readonly box: SecretBox,
    /** The issuer an authenticator app shows beside the account (JWT_ISSUER). */
    private readonly issuer: string
  ) {}

  /**
   * After a right password: a waiting login when the user has a second factor, else null
   * (the password alone signs in). `passwordHash`: the hash the password was checked
   * against; the login completes only while it is still the user's.
   */
  async challenge (userId: string, passwordHash: string): Promise<PendingLogin | null> {
    // 256 random bits, stored only as SHA-256 (as refresh tokens are).
    const mfaToken = randomBytes(32).toString('base64url')
    const methods = await this.repository.createChallenge(userId, sha256(mfaToken), sha256(passwordHash), ['pwd'],
      MFA_TOKEN_TTL_S, PENDING_PER_USER)
    return methods.length === 0 ? null : { mfaToken, methods }
  }

  /** The user a waiting login is for (unexpired), without using it up; null otherwise. */
  async pending (mfaToken: MfaTokenRef): Promise<{ userId: string, username: string } | null> {
    return await this.repository.findChallenge(mfaTokenHash(mfaToken))
  }

  /**
   * Inside the transaction that completes a waiting login: locks it, checks the factor,
   * and uses it up when right. A wrong factor is counted (the login is void after
   * MFA_TOKEN_MAX_FAILURES): the caller commits that and answers 401.
   */
  async consume (mfaToken: MfaTokenRef, client: Queryable, check: FactorCheck): Promise<{ userId: string, amr: string[], credentialId?: string } | { failed: string, attempts?: number }> {
    const hash = mfaTokenHash(mfaToken)
    const pending = await this.repository.lockChallenge(hash, client)
    if (pending === null) return { failed: 'unknown' }
    if (!pending.live || !pending.current) {
      // Expired, or the password changed or the user was disabled since: void for good.
      await this.repository.deleteChallenge(hash, client)
      return { failed: pending.live ? 'stale' : 'expired' }
    }
    const proved = await check(pending.userId, client)
    if (proved === null) {
      const attempts = pending.attempts + 1
      if (attempts >= MFA_TOKEN_MAX_FAILURES) await this.repository.deleteChallenge(hash, client)
      else await this.repository.countFailure(hash, client)
      return { failed: 'bad_code', attempts }
    }
    await this.repository.deleteChallenge(hash, client)
    const { amr, credentialId } = Array.isArray(proved) ? { amr: proved, credentialId: undefined } : proved
    return { userId: pending.userId, amr: [...new Set([...pending.amr, ...amr])], credentialId }
  }

  /** A FactorCheck for a TOTP code: right for now (±1 step) and newer than the last one used. */
  totp (code: string): FactorCheck {
    return async (userId, client) => {
      const totp = await this.repository.lockTotp(userId, client)
      if (totp === null || !totp.confirmed) return null
      const step = matchTotp(this.box.open(totp.sealed, userId), code, this.now(), totp.lastStep)
      if (step === null) return null
      await this.repository.acceptStep(userId, step, false, client)
      return ['otp']
    }
  }

  /** A FactorCheck for a recovery code: one of the user's, used up now. */
  recoveryCode (code: string, ctx: AuditContext): FactorCheck {
    return async (userId, client) => {
      const remaining = await this.repository.useRecoveryCode(userId, hashRecoveryCode(code), client)
      if (remaining === null) return null
      await this.audit.record({ ...ctx, actorId: userId, type: 'mfa_recovery_used', subjectId: userId, detail: { remaining } }, client)
      // A recovery code is a one-time password (RFC 8176 `otp`).
      return ['otp']
    }
  }

  /**
   * Starts a TOTP enrolment: a new secret, not a factor until confirmed. Starting again
   * before confirming replaces the secret. 409 when the user has a confirmed one.
   */
  async startTotp (userId: string, username: string, ctx: AuditContext): Promise<{ secret: string, otpauthUri: string }> {
    const secret = newTotpSecret()
    const started = await this.revocation.revoke(async (client) => {
      await this.revocation.requireLiveSession(client, userId, ctx.sessionId)
      return await this.repository.startTotp(userId, this.box.seal(secret, userId), client)
    })
    if (!started) throw new Conflict('TOTP is already active: remove it first to enrol a new one')
    return { secret: base32Encode(secret), otpauthUri: otpauthUri(secret, this.issuer, username) }
  }

  /**
   * Confirms the enrolment with a code from the app: TOTP becomes a factor, ten new
   * recovery codes are made (shown this once), and every other session of the user ends.
   * At commit the caller's session is still live (a logout or a disable in between wins).
   */
  async confirmTotp (userId: string, code: string, ctx: AuditContext): Promise<{ recoveryCodes: string[] }> {
    const recoveryCodes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode)
    const outcome = await this.revocation.revoke(async (client, revoked) => {
      await this.revocation.requireLiveSession(client, userId, ctx.sessionId)
      const totp = await this.repository.lockTotp(userId, client)
      if (totp === null) return 'none'
      if (totp.confirmed) return 'active'
      const step = matchTotp(this.box.open(totp.sealed, userId), code, this.now(), null)
      if (step === null) return 'wrong'
      await this.repository.acceptStep(userId, step, true, client)
      await this.repository.replaceRecoveryCodes(userId, recoveryCodes.map(hashRecoveryCode), client)
      await this.repository.syncFlag(userId, client)
      const ended = await this.endOtherSessions(client, revoked, userId, ctx.sessionId)
      await this.audit.record({ ...ctx, type: 'mfa_enabled', subjectId: userId, detail: { method: 'totp', sessionsEnded: ended } }, client)
      return 'confirmed'
    })
    if (outcome === 'none') throw new NotFound('No TOTP enrolment to confirm: POST /auth/mfa/totp first')
    if (outcome === 'active') throw new Conflict('TOTP is already active')
    if (outcome === 'wrong') throw new InvalidCode()
    return { recoveryCodes }
  }

  /** Removes the user's TOTP (and recovery codes) after checking the password; every other session ends. */
  async disableTotp (userId: string, password: string, ctx: AuditContext): Promise<void> {
    await this.users.checkPassword(userId, password, ctx, 'mfa_change_failed')
    const removed = await this.revocation.revoke(async (client, revoked) => {
      await this.revocation.requireLiveSession(client, userId, ctx.sessionId)
      if (!await this.removeTotp(client, userId)) return false
      const ended = await this.endOtherSessions(client, revoked, userId, ctx.sessionId)
      await this.audit.record({ ...ctx, type: 'mfa_disabled', subjectId: userId, detail: { method: 'totp', sessionsEnded: ended } }, client)
      return true
    })
    if (!removed) throw new NotFound('TOTP is not active')
  }

  /** A new set of recovery codes after checking the password; the old set is void. */
  async regenerateRecoveryCodes (userId: string, password: string, ctx: AuditContext): Promise<{ recoveryCodes: string[] }> {
    await this.users.checkPassword(userId, password, ctx, 'mfa_change_failed')
    const recoveryCodes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode)
    const done = await this.revocation.revoke(async (client) => {
      await this.revocation.requireLiveSession(client, userId, ctx.sessionId)
      if (!await this.repository.syncFlag(userId, client)) return false
      await this.repository.replaceRecoveryCodes(userId, recoveryCodes.map(hashRecoveryCode), client)
      await this.audit.record({ ...ctx, type: 'mfa_recovery_regenerated', subjectId: userId }, client)
      return true
    })
    if (!done) throw new Conflict('No second factor is active: recovery codes stand in for one')
    return { recoveryCodes }
  }

  /**
   * An admin removes a user's second factors, TOTP and passkeys (a user who lost them signs
   * in with the password again): every session of the user ends (audited).
   */
  async reset (userId: string, ctx: AuditContext): Promise<void> {
    const removed = await this.users.adminChange({ id: userId }, ctx, async (client, revoked) => {
      const totp = await this.removeTotp(client, userId)
      const passkeys = await this.repository.deletePasskeys(userId, client)
      if (!totp && passkeys === 0) return false
      await this.repository.syncFlag(userId, client)
      const ended = await this.endOtherSessions(client, revoked, userId, null)
      const methods = [...(totp ? ['totp'] : []), ...(passkeys > 0 ? ['webauthn'] : [])]
      await this.audit.record({ ...ctx, type: 'mfa_reset', subjectId: userId, detail: { methods, passkeys, sessionsEnded: ended } }, client)
      return true
    })
    if (!removed) throw new NotFound('The user has no second factor')
  }

  /** Deletes the waiting logins that expired, in batches; how many. */
  async purgeExpired (): Promise<number> {
    return await inBatches(PURGE_BATCH, async (limit) => await this.repository.deleteExpired(limit))
  }

  /** Deletes TOTP and the recovery codes that stood in for it; whether a confirmed TOTP was there. */
  private async removeTotp (client: Queryable, userId: string): Promise<boolean> {
    if (!await this.repository.deleteTotp(userId, client)) return false
    await this.repository.deleteRecoveryCodes(userId, client)
    await this.repository.syncFlag(userId, client)
    return true
  }

  /** Ends every live session of the user but `keepSid`, through the revocation path; how many. */
  private async endOtherSessions (client: Queryable, revoked: RevocationSet, userId: string, keepSid: string | null | undefined): Promise<number> {
    await this.revocation.holdUser(client, userId)
    const sids = await this.sessions.revokeOthers(userId, keepSid ?? null, client)
    for (const sid of sids) revoked.session(userId, sid)
    return sids.length
  }
}
