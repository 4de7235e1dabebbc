// What PostgreSQL, the truth, says about one token's user and session.
import type { Db } from '../../external/db.js'
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
}
