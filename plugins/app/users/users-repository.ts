// Accounts in PostgreSQL: rows of users as User objects. Every method runs on the pool,
// or on the client of a transaction when it is given one.
import type { Role, User } from '../../../schemas/users.js'
import type { Db, Queryable } from '../../external/db.js'
import { epochUs, fromEpochUs } from '../../../lib/sql.js'

/** A user with its password hash, as the login path needs it. */
export interface Account extends User {
  passwordHash: string
  /** The password is a temporary one an admin set (migrations/008): it must be changed. */
  temporaryPassword: boolean
}

/** Where a page of users starts: the (created_at in µs, id) of the last user before it. */
export type UserKey = [createdUs: string, id: string]

const COLUMNS = 'id, username, role, disabled, email, email_verified, mfa, created_at'
const REVOKED_AFTER_US = epochUs('revoked_after')

function toUser (row: any): User {
  return {
    id: row.id,
    username: row.username,
    role: row.role,
    disabled: row.disabled,
    email: row.email,
    emailVerified: row.email_verified,
    mfaEnabled: row.mfa,
    createdAt: row.created_at.toISOString()
  }
}

/** Which unique value a write collided with. */
export type Taken = 'username_taken' | 'email_taken'

/** The unique index a unique_violation names (the email's, or else the username's); rethrows anything else. */
function taken (err: unknown): Taken {
  const { code, constraint } = err as { code?: string, constraint?: string }
  if (code !== '23505') throw err // not a unique_violation
  return constraint === 'users_email_lower_key' ? 'email_taken' : 'username_taken'
}

export class UsersRepository {
  constructor (private readonly db: Db) {}

  /** The new user (its email, if any, unverified), or which value is taken (without regard to case). */
  async insert (username: string, passwordHash: string, role: Role, email: string | null = null, client: Queryable = this.db): Promise<User | Taken> {
    try {
      const { rows } = await client.query(
        `INSERT INTO users (username, password_hash, role, email) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
        [username, passwordHash, role, email])
      return toUser(rows[0])
    } catch (err) {
      return taken(err)
    }
  }

  /** Inserts the user unless the username exists; true when it did. */
  async insertIfMissing (username: string, passwordHash: string, role: Role, client: Queryable = this.db): Promise<boolean> {
    const { rows } = await client.query(
      `INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)
       ON CONFLICT ((lower(username))) DO NOTHING RETURNING id`, [username, passwordHash, role])
    return rows.length > 0
  }

  /**
   * The account of a username, or of a verified email (a name with an `@`, which no
   * username has), matched without regard to case.
   */
  async findAccount (name: string, client: Queryable = this.db): Promise<Account | null> {
    const where = name.includes('@') ? 'lower(email) = lower($1) AND email_verified' : 'lower(username) = lower($1)'
    const { rows } = await client.query(
      `SELECT ${COLUMNS}, password_hash, temporary_password_hash IS NOT DISTINCT FROM password_hash AS temporary
         FROM users WHERE ${where}`, [name])
    if (rows.length === 0) return null
    return { ...toUser(rows[0]), passwordHash: rows[0].password_hash, temporaryPassword: rows[0].temporary }
  }

  /**
   * Sets the email (null: none); it starts unverified unless it is the one the user has,
   * in any case. The user, or 'email_taken'.
   */
  async setEmail (id: string, email: string | null, client: Queryable): Promise<User | Taken> {
    try {
      const { rows } = await client.query(
        `UPDATE users SET email = $2, email_verified = email_verified AND lower(email) IS NOT DISTINCT FROM lower($2)
          WHERE id = $1 RETURNING ${COLUMNS}`, [id, email])
      return toUser(rows[0])
    } catch (err) {
      return taken(err)
    }
  }

  /** Marks the user's email verified if it is still `email` (any case); whether it was. */
  async verifyEmail (id: string, email: string, client: Queryable): Promise<boolean> {
    const { rowCount } = await client.query(
      'UPDATE users SET email_verified = true WHERE id = $1 AND lower(email) = lower($2)', [id, email])
    return rowCount !== 0
  }

  /**
   * Sets a new password and ends every session (revoked_after, database clock): a reset
   * by token, where no current password is checked. The new revoked_after in µs.
   */
  async resetPassword (id: string, passwordHash: string, client: Queryable): Promise<string> {
    const { rows } = await client.query(
      `UPDATE users SET password_hash = $2, revoked_after = clock_timestamp() WHERE id = $1
       RETURNING ${REVOKED_AFTER_US} AS ra`, [id, passwordHash])
    return rows[0].ra
  }

  async findById (id: string, client: Queryable = this.db): Promise<User | null> {
    const { rows } = await client.query(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id])
    return rows.length === 0 ? null : toUser(rows[0])
  }

  /** What checking a user's password needs: the username (the lockout's key) and the hash. */
  async findCredentials (id: string, client: Queryable = this.db): Promise<{ username: string, passwordHash: string } | null> {
    const { rows } = await client.query('SELECT username, password_hash FROM users WHERE id = $1', [id])
    return rows.length === 0 ? null : { username: rows[0].username, passwordHash: rows[0].password_hash }
  }

  /** The addresses the user's sessions (those still kept) came from, newest first. */
  async sessionIps (userId: string, client: Queryable = this.db): Promise<string[]> {
    const { rows } = await client.query(
      'SELECT ip FROM sessions WHERE user_id = $1 AND ip IS NOT NULL ORDER BY created_at DESC LIMIT 100', [userId])
    return rows.map((row) => row.ip)
  }

  /** Replaces the password hash only if it is still `previous` (a concurrent change wins); whether it did. */
  async replacePasswordHash (id: string, previous: string, passwordHash: string, client: Queryable = this.db): Promise<boolean> {
    const { rowCount } = await client.query('UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = $3', [id, passwordHash, previous])
    return rowCount !== 0
  }

  /** Up to `limit` users after `after` (from the first when null) in (created_at, id) order. */
  async list (after: UserKey | null, limit: number, client: Queryable = this.db): Promise<Array<{ user: User, key: UserKey }>> {
    const { rows } = await client.query(
      `SELECT ${COLUMNS}, ${epochUs('created_at')} AS created_us FROM users
        WHERE $1::bigint IS NULL
           OR (created_at, id) > (${fromEpochUs('$1')}, $2::uuid)
        ORDER BY created_at, id LIMIT $3`,
      [after?.[0] ?? null, after?.[1] ?? null, limit])
    return rows.map((row) => ({ user: toUser(row), key: [String(row.created_us), row.id] }))
  }

  /** Locks the active admins' rows, in id order; their ids. */
  async lockActiveAdmins (client: Queryable): Promise<string[]> {
    const { rows } = await client.query("SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE")
    return rows.map((row) => row.id)
  }

  /** Locks one user's row, found by id or by username (without regard to case). */
  async lock (target: { id?: string, username?: string }, client: Queryable): Promise<User | null> {
    const where = target.id !== undefined ? 'id = $1' : 'lower(username) = lower($1)'
    const { rows } = await client.query(`SELECT ${COLUMNS} FROM users WHERE ${where} FOR UPDATE`, [target.id ?? target.username])
    return rows.length === 0 ? null : toUser(rows[0])
  }

  /**
   * Sets role and disabled; with `revoke`, also revoked_after (database clock). The user,
   * and its revoked_after in µs.
   */
  async update (id: string, change: { role: Role, disabled: boolean, revoke: boolean }, client: Queryable = this.db): Promise<{ user: User, revokedAfterUs: string }> {
    const { rows } = await client.query(
      `UPDATE users SET role = $2, disabled = $3
         ${change.revoke ? ', revoked_after = clock_timestamp()' : ''}
       WHERE id = $1 RETURNING ${COLUMNS}, ${REVOKED_AFTER_US} AS ra`,
      [id, change.role, change.disabled])
    return { user: toUser(rows[0]), revokedAfterUs: rows[0].ra }
  }

  /**
   * Sets the password hash and revoked_after, if the hash is still `previous` (the one the
   * current password was checked against); the new revoked_after in µs, or null otherwise.
   */
  async setPassword (id: string, passwordHash: string, previous: string, client: Queryable = this.db): Promise<string | null> {
    const { rows } = await client.query(
      `UPDATE users SET password_hash = $2, revoked_after = clock_timestamp() WHERE id = $1 AND password_hash = $3
       RETURNING ${REVOKED_AFTER_US} AS ra`, [id, passwordHash, previous])
    return rows.length === 0 ? null : rows[0].ra
  }

  /** The user's password is a temporary one an admin set (false for no such user). */
  async hasTemporaryPassword (id: string, client: Queryable = this.db): Promise<boolean> {
    const { rows } = await client.query(
      'SELECT temporary_password_hash IS NOT DISTINCT FROM password_hash AS temporary FROM users WHERE id = $1', [id])
    return rows.length !== 0 && rows[0].temporary === true
  }

  /**
   * Sets a temporary password (an admin's): in force while it is the password, so any later
   * change ends it. Every session ends (revoked_after); its new value in µs.
   */
  async setTemporaryPassword (id: string, passwordHash: string, client: Queryable): Promise<string> {
    const { rows } = await client.query(
      `UPDATE users SET password_hash = $2, temporary_password_hash = $2, revoked_after = clock_timestamp()
        WHERE id = $1 RETURNING ${REVOKED_AFTER_US} AS ra`, [id, passwordHash])
    return rows[0].ra
  }

  /** Ends one session of the user (revoked_at, database clock); false if it had ended already. */
  async endSession (userId: string, sid: string, client: Queryable = this.db): Promise<boolean> {
    const { rowCount } = await client.query(
      'UPDATE sessions SET revoked_at = clock_timestamp() WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL', [userId, sid])
    return rowCount !== 0
  }

  /** Deletes the user; the instant of deletion in µs (database clock), or null without the user. */
  async delete (id: string, client: Queryable = this.db): Promise<string | null> {
    const { rows } = await client.query(`DELETE FROM users WHERE id = $1 RETURNING ${epochUs('clock_timestamp()')} AS ra`, [id])
    return rows.length === 0 ? null : rows[0].ra
  }
}
