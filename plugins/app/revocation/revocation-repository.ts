// What PostgreSQL, the truth, says about one token's user and session.
import type { Db, Queryable } from '../../external/db.js'
import { epochUs } from '../../../lib/sql.js'

/** The user's revoked_after (µs) and whether the session is live; null without the user. */
export interface TokenState {
  ra: string
  live: boolean
}

const STATE_SQL = `
SELECT ${epochUs('u.revoked_after')} AS ra,
       (s.id IS NOT NULL AND s.revoked_at IS NULL AND s.expires_at > now()) AS live
  FROM users u
  LEFT JOIN sessions s ON s.id = $2 AND s.user_id = u.id
 WHERE u.id = $1`

export class RevocationRepository {
  constructor (private readonly db: Db) {}

  async readState (userId: string, sid: string): Promise<TokenState | null> {
    const { rows } = await this.db.query(STATE_SQL, [userId, sid])
    return rows.length === 0 ? null : { ra: rows[0].ra as string, live: rows[0].live as boolean }
  }

  /**
   * Inside a transaction: whether the session is live, with the user's row and the
   * session's locked until COMMIT (`lock`), or read as they are (the caller holds the
   * user's row already, see RevocationService.requireLiveSession).
   */
  async sessionLive (userId: string, sid: string, client: Queryable, lock: boolean): Promise<boolean> {
    const { rows } = await client.query(
      `SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id = $2 AND s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > clock_timestamp()
          AND s.created_at > u.revoked_after AND NOT u.disabled
          ${lock ? 'FOR NO KEY UPDATE' : ''}`, [userId, sid])
    return rows.length > 0
  }

  /** Inside a transaction: a share of the user's row until COMMIT (RevocationService.holdUser). */
  async holdUser (userId: string, client: Queryable): Promise<void> {
    await client.query('SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE', [userId])
  }
}
