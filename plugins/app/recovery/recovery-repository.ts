// Single-use recovery tokens in PostgreSQL (migrations/006): rows of recovery_tokens,
// looked up by the token's SHA-256.
import type { Queryable } from '../../external/db.js'

export type RecoveryPurpose = 'password_reset' | 'email_verify'

/** What a live token stands for. */
export interface TokenHolder {
  userId: string
  username: string
  /** The address a verification token was mailed to (null for a reset token). */
  email: string | null
}

// A token is live while it has not expired, and a reset token only if it was issued after
// the user's password last changed: it dies with any later password change (both instants
// from the database's clock). A verification token dies with a change of the email instead.
const LIVE = `t.expires_at > clock_timestamp()
  AND (t.purpose <> 'password_reset' OR t.created_at > u.password_changed_at)`

export class RecoveryRepository {
  constructor (private readonly db: Queryable) {}

  /**
   * A new token for the user, valid `ttlSeconds`; the user's older tokens of the same
   * purpose are deleted (only the latest mail works, and a user holds one of each at most).
   */
  async insert (hash: Buffer, userId: string, purpose: RecoveryPurpose, email: string | null, ttlSeconds: number, client: Queryable = this.db): Promise<void> {
    await client.query('DELETE FROM recovery_tokens WHERE user_id = $1 AND purpose = $2', [userId, purpose])
    await client.query(
      `INSERT INTO recovery_tokens (token_hash, user_id, purpose, email, expires_at)
       VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5))`,
      [hash, userId, purpose, email, ttlSeconds])
  }

  /** The holder of a live token, without using it up (a check before the slow work). */
  async find (hash: Buffer, purpose: RecoveryPurpose, client: Queryable = this.db): Promise<TokenHolder | null> {
    const { rows } = await client.query(
      `SELECT t.user_id, u.username, t.email FROM recovery_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_hash = $1 AND t.purpose = $2 AND ${LIVE}`, [hash, purpose])
    return rows.length === 0 ? null : { userId: rows[0].user_id, username: rows[0].username, email: rows[0].email }
  }

  /**
   * Inside a transaction: uses the token up if it is live, with its user's row locked until
   * COMMIT (the user first, then the token: the order every change to a user follows, so a
   * concurrent password change either commits first and kills the token, or waits for us).
   * Of two requests with one token, one gets the holder and the other null.
   */
  async take (hash: Buffer, purpose: RecoveryPurpose, client: Queryable): Promise<TokenHolder | null> {
    const { rows: owner } = await client.query('SELECT user_id FROM recovery_tokens WHERE token_hash = $1 AND purpose = $2', [hash, purpose])
    if (owner.length === 0) return null
    await client.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [owner[0].user_id])
    const { rows } = await client.query(
      `DELETE FROM recovery_tokens t USING users u
        WHERE t.token_hash = $1 AND t.purpose = $2 AND u.id = t.user_id AND ${LIVE}
       RETURNING t.user_id, u.username, t.email`, [hash, purpose])
    return rows.length === 0 ? null : { userId: rows[0].user_id, username: rows[0].username, email: rows[0].email }
  }

  /** Deletes up to `limit` expired tokens; how many. */
  async deleteExpired (limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM recovery_tokens WHERE token_hash IN (
         SELECT token_hash FROM recovery_tokens WHERE expires_at <= clock_timestamp() LIMIT $1 FOR UPDATE SKIP LOCKED)`, [limit])
    return rowCount ?? 0
  }
}
