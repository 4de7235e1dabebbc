// Second factors in PostgreSQL: TOTP secrets (sealed), recovery codes (hashed), the logins
// waiting for their second factor (mfa_challenges), and users.mfa, which says whether a user
// has any factor. Every method runs on the pool, or on the client of a transaction.
import type { Db, Queryable } from '../../external/db.js'
import type { MfaMethod } from '../../../schemas/mfa.js'

/**
 * The factors a user can have, each an SQL condition on `$1` (the user id). A module that
 * adds one (passkeys) adds its line here and its method to MFA_METHODS (schemas/mfa.ts),
 * and calls syncFlag() in every transaction that adds or removes one.
 */
const FACTORS: Array<{ method: MfaMethod, sql: string }> = [
  { method: 'totp', sql: 'EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL)' },
  { method: 'webauthn', sql: 'EXISTS (SELECT 1 FROM webauthn_credentials WHERE user_id = $1)' }
]
const ANY_FACTOR = FACTORS.map((f) => f.sql).join(' OR ')
// Recovery codes stand in for a factor the user has; alone they are none.
const METHODS = `array_remove(ARRAY[${FACTORS.map((f) => `CASE WHEN ${f.sql} THEN '${f.method}' END`).join(', ')},
  CASE WHEN (${ANY_FACTOR}) AND EXISTS (SELECT 1 FROM mfa_recovery_codes WHERE user_id = $1) THEN 'recovery_code' END], NULL)`

/** A login waiting for its second factor, locked for completing it. */
export interface LockedChallenge {
  userId: string
  /** The methods already used (the password's `pwd`). */
  amr: string[]
  attempts: number
  /** Not expired. */
  live: boolean
  /** The user is not disabled and its password is still the one the login checked. */
  current: boolean
}

export class MfaRepository {
  constructor (private readonly db: Db) {}

  /** Sets users.mfa from the factor tables; whether the user now has a factor. */
  async syncFlag (userId: string, client: Queryable): Promise<boolean> {
    const { rows } = await client.query(`UPDATE users SET mfa = (${ANY_FACTOR}) WHERE id = $1 RETURNING mfa`, [userId])
    return rows[0]?.mfa === true
  }

  /**
   * Records a login waiting for its second factor, if the user has one, keeping at most
   * `keep` per user (the oldest go): the methods that complete it ([] when the user has
   * no factor, and then nothing is recorded). One statement.
   */
  async createChallenge (userId: string, tokenHash: Buffer, passwordDigest: Buffer, amr: string[], ttlSeconds: number,
    keep: number, client: Queryable = this.db): Promise<MfaMethod[]> {
    const { rows } = await client.query(
      `WITH m AS (SELECT ${METHODS} AS methods
       ), c AS (
         INSERT INTO mfa_challenges (token_hash, user_id, password_digest, amr, expires_at)
         SELECT $2, $1, $3, $4, clock_timestamp() + make_interval(secs => $5) FROM m WHERE cardinality(m.methods) > 0
       ), d AS (
         DELETE FROM mfa_challenges WHERE token_hash IN (
           SELECT token_hash FROM mfa_challenges WHERE user_id = $1 ORDER BY created_at DESC OFFSET $6)
       )
       SELECT methods FROM m`, [userId, tokenHash, passwordDigest, amr, ttlSeconds, keep - 1])
    return rows[0].methods
  }

  /** The user of a login waiting for its second factor (unexpired); null otherwise. */
  async findChallenge (tokenHash: Buffer, client: Queryable = this.db): Promise<{ userId: string, username: string } | null> {
    const { rows } = await client.query(
      `SELECT c.user_id, u.username FROM mfa_challenges c JOIN users u ON u.id = c.user_id
        WHERE c.token_hash = $1 AND c.expires_at > clock_timestamp()`, [tokenHash])
    return rows.length === 0 ? null : { userId: rows[0].user_id, username: rows[0].username }
  }

  /**
   * Locks a waiting login (and shares its user's row until COMMIT, so that no password
   * change, disable or factor change commits before the session it leads to); null when
   * there is none (unknown, used, or deleted after too many wrong codes).
   */
  async lockChallenge (tokenHash: Buffer, client: Queryable): Promise<LockedChallenge | null> {
    const { rows } = await client.query(
      `SELECT c.user_id, c.amr, c.attempts, c.expires_at > clock_timestamp() AS live,
              NOT u.disabled AND sha256(convert_to(u.password_hash, 'UTF8')) = c.password_digest AS current
         FROM mfa_challenges c JOIN users u ON u.id = c.user_id
        WHERE c.token_hash = $1 FOR UPDATE OF c FOR SHARE OF u`, [tokenHash])
    if (rows.length === 0) return null
    const r = rows[0]
    return { userId: r.user_id, amr: r.amr, attempts: r.attempts, live: r.live === true, current: r.current === true }
  }

  async countFailure (tokenHash: Buffer, client: Queryable): Promise<void> {
    await client.query('UPDATE mfa_challenges SET attempts = attempts + 1 WHERE token_hash = $1', [tokenHash])
  }

  async deleteChallenge (tokenHash: Buffer, client: Queryable): Promise<void> {
    await client.query('DELETE FROM mfa_challenges WHERE token_hash = $1', [tokenHash])
  }

  /** Deletes up to `limit` expired waiting logins; how many (SKIP LOCKED: instances purge side by side). */
  async deleteExpired (limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM mfa_challenges WHERE token_hash IN (
         SELECT token_hash FROM mfa_challenges WHERE expires_at < now() LIMIT $1 FOR UPDATE SKIP LOCKED)`, [limit])
    return rowCount ?? 0
  }

  /**
   * Starts (or starts again) a TOTP enrolment with a new sealed secret; false when the
   * user has a confirmed one already (left as it is).
   */
  async startTotp (userId: string, sealed: Buffer, client: Queryable): Promise<boolean> {
    const { rows } = await client.query(
      `INSERT INTO mfa_totp (user_id, secret) VALUES ($1, $2)
       ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, created_at = clock_timestamp(), last_step = NULL
        WHERE mfa_totp.confirmed_at IS NULL
       RETURNING user_id`, [userId, sealed])
    return rows.length > 0
  }

  /** The user's TOTP row, locked until COMMIT; null without one. */
  async lockTotp (userId: string, client: Queryable): Promise<{ sealed: Buffer, confirmed: boolean, lastStep: number | null } | null> {
    const { rows } = await client.query(
      'SELECT secret, confirmed_at IS NOT NULL AS confirmed, last_step FROM mfa_totp WHERE user_id = $1 FOR UPDATE', [userId])
    if (rows.length === 0) return null
    const r = rows[0]
    return { sealed: r.secret, confirmed: r.confirmed === true, lastStep: r.last_step === null ? null : Number(r.last_step) }
  }

  /** Records the step of an accepted code; with `confirm`, the enrolment is confirmed by it. */
  async acceptStep (userId: string, step: number, confirm: boolean, client: Queryable): Promise<void> {
    await client.query(
      `UPDATE mfa_totp SET last_step = $2${confirm ? ', confirmed_at = clock_timestamp()' : ''} WHERE user_id = $1`, [userId, step])
  }

  /** Deletes the user's TOTP, pending or confirmed; whether a confirmed one was deleted. */
  async deleteTotp (userId: string, client: Queryable): Promise<boolean> {
    const { rows } = await client.query('DELETE FROM mfa_totp WHERE user_id = $1 RETURNING confirmed_at IS NOT NULL AS confirmed', [userId])
    return rows[0]?.confirmed === true
  }

  /** Replaces the user's recovery codes with these hashes (the old set is void). */
  async replaceRecoveryCodes (userId: string, hashes: Buffer[], client: Queryable): Promise<void> {
    await client.query('DELETE FROM mfa_recovery_codes WHERE user_id = $1', [userId])
    await client.query('INSERT INTO mfa_recovery_codes (user_id, code_hash) SELECT $1, unnest($2::bytea[])', [userId, hashes])
  }

  /** Uses up one recovery code; how many the user has left, or null when it was not one of theirs. */
  async useRecoveryCode (userId: string, hash: Buffer, client: Queryable): Promise<number | null> {
    const { rows } = await client.query(
      `DELETE FROM mfa_recovery_codes WHERE user_id = $1 AND code_hash = $2
       RETURNING (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1) - 1 AS remaining`, [userId, hash])
    return rows.length === 0 ? null : Number(rows[0].remaining)
  }

  /** Deletes the user's passkeys (an admin's reset); how many (their sessions end with the reset's). */
  async deletePasskeys (userId: string, client: Queryable): Promise<number> {
    const { rowCount } = await client.query('DELETE FROM webauthn_credentials WHERE user_id = $1', [userId])
    return rowCount ?? 0
  }

  async deleteRecoveryCodes (userId: string, client: Queryable): Promise<void> {
    await client.query('DELETE FROM mfa_recovery_codes WHERE user_id = $1', [userId])
  }
}
