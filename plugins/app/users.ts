// Provides `fastify.users`: accounts in PostgreSQL, argon2id password hashing, and every
// change that must revoke a user's tokens (role, disable, delete, password).
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import argon2 from 'argon2'
import type { PoolClient } from 'pg'
import type { Role, User } from '../../schemas/users.js'
import { BadCredentials, Conflict, Forbidden, NotFound } from '../../lib/errors.js'
import { decodeCursor, encodeCursor } from '../../lib/cursor.js'
import type { RevocationService, RevocationSet } from './revocation/index.js'
import { epochUs, fromEpochUs } from '../external/db.js'
import type { RevocationDb } from './revocation/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    users: UserService
  }
}

export interface HashOptions {
  memoryCost: number
  timeCost: number
  parallelism: number
}

/** A row of users as the login path needs it. */
interface Account extends User {
  passwordHash: string
}

const COLUMNS = 'id, username, role, disabled, created_at'
const NOW_US = epochUs('clock_timestamp()')
const REVOKED_AFTER_US = epochUs('revoked_after')

function toUser (row: any): User {
  return { id: row.id, username: row.username, role: row.role, disabled: row.disabled, createdAt: row.created_at.toISOString() }
}

export class UserService {
  private dummyHash = ''

  constructor (
    private readonly db: RevocationDb,
    private readonly revocation: RevocationService,
    readonly hashOptions: HashOptions
  ) {}

  async init (): Promise<void> {
    // Login verifies this hash for an unknown user, so that "no such user" costs the
    // same argon2 work as "wrong password" and timing does not reveal which it was.
    this.dummyHash = await this.hash(randomBytes(16).toString('hex'))
  }

  hash (password: string): Promise<string> {
    return argon2.hash(password, { type: argon2.argon2id, ...this.hashOptions })
  }

  async register (username: string, password: string, role: Role = 'user'): Promise<User> {
    const passwordHash = await this.hash(password)
    try {
      const { rows } = await this.db.query(
        `INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`,
        [username, passwordHash, role])
      return toUser(rows[0])
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new Conflict('Username is already taken')
      throw err
    }
  }

  /** The first admin, from ADMIN_USERNAME/ADMIN_PASSWORD; an existing user is left as is. */
  async ensureAdmin (username: string, password: string): Promise<boolean> {
    const passwordHash = await this.hash(password)
    const { rows } = await this.db.query(
      `INSERT INTO users (username, password_hash, role) VALUES ($1, $2, 'admin')
       ON CONFLICT ((lower(username))) DO NOTHING RETURNING id`, [username, passwordHash])
    return rows.length > 0
  }

  /**
   * Checks a username and password. Unknown user, wrong password and disabled user all
   * throw the same BadCredentials after the same argon2 work; `onFailure` learns which.
   */
  async verifyLogin (username: string, password: string,
    onFailure: (reason: 'unknown_user' | 'bad_password' | 'disabled', user: User | null) => Promise<void>): Promise<User> {
    const { rows } = await this.db.query(
      `SELECT ${COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)`, [username])
    const account: Account | null = rows.length === 0 ? null : { ...toUser(rows[0]), passwordHash: rows[0].password_hash }
    const ok = await argon2.verify(account?.passwordHash ?? this.dummyHash, password)
    if (account === null || !ok || account.disabled) {
      const reason = account === null ? 'unknown_user' : !ok ? 'bad_password' : 'disabled'
      await onFailure(reason, account)
      throw new BadCredentials()
    }
    if (argon2.needsRehash(account.passwordHash, this.hashOptions)) {
      // Parameters were raised since this hash was made: upgrade it now that we have the password.
      const upgraded = await this.hash(password)
      await this.db.query('UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = $3',
        [account.id, upgraded, account.passwordHash])
    }
    const { passwordHash: _, ...user } = account
    return user
  }

  async getById (id: string): Promise<User> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id])
    if (rows.length === 0) throw new NotFound('User not found')
    return toUser(rows[0])
  }

  /** Ordered by (created_at, id): a new user lands after every page already read. */
  async list (opts: { limit: number, cursor?: string }): Promise<{ items: User[], nextCursor: string | null }> {
    const after = opts.cursor === undefined
      ? [null, null]
      // The full UUID shape: 36 hex-or-dash characters in any order would reach ::uuid as a 500.
      : decodeCursor(opts.cursor, [/^[0-9]{1,18}$/, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/])
    const { rows } = await this.db.query(
      `SELECT ${COLUMNS}, ${epochUs('created_at')} AS created_us FROM users
        WHERE $1::bigint IS NULL
           OR (created_at, id) > (${fromEpochUs('$1')}, $2::uuid)
        ORDER BY created_at, id LIMIT $3`,
      [after[0], after[1], opts.limit + 1])
    const page = rows.slice(0, opts.limit)
    const last = page[page.length - 1]
    return {
      items: page.map(toUser),
      nextCursor: rows.length > opts.limit ? encodeCursor([String(last.created_us), last.id]) : null
    }
  }

  /**
   * Locks the active admins (in id order, always before the target row, so concurrent
   * changes cannot deadlock), then the target. Two admins demoting each other at once
   * are serialised here, and the second one sees the first one's result.
   */
  private async lockForChange (client: PoolClient, target: { id?: string, username?: string }) {
    const { rows: admins } = await client.query(
      "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE")
    const where = target.id !== undefined ? 'id = $1' : 'lower(username) = lower($1)'
    const { rows } = await client.query(`SELECT ${COLUMNS} FROM users WHERE ${where} FOR UPDATE`,
      [target.id ?? target.username])
    if (rows.length === 0) throw new NotFound('User not found')
    const current = toUser(rows[0])
    return {
      current,
      /** Refuses a change that would leave no active admin. */
      guardLastAdmin () {
        if (admins.length <= 1 && admins.some((r) => r.id === current.id)) {
          throw new Conflict('The last admin cannot be demoted, disabled or deleted')
        }
      }
    }
  }

  /** Applies role/disabled changes; a change that removes power revokes every token at once. */
  async update (target: { id?: string, username?: string }, patch: { role?: Role, disabled?: boolean },
    onChanged?: (before: User, after: User) => Promise<void>): Promise<User> {
    let before: User | undefined
    const after = await this.revocation.revoke(async (client: PoolClient, revoked: RevocationSet) => {
      const { current, guardLastAdmin } = await this.lockForChange(client, target)
      const role = patch.role ?? current.role
      const disabled = patch.disabled ?? current.disabled
      if (role === current.role && disabled === current.disabled) return current // nothing changes, nothing revoked
      if ((current.role === 'admin' && role !== 'admin') || (!current.disabled && disabled)) {
        guardLastAdmin()
      }
      // Enabling a user revokes nothing (its sessions died when it was disabled).
      const revokes = role !== current.role || disabled
      const { rows: updated } = await client.query(
        `UPDATE users SET role = $2, disabled = $3
           ${revokes ? ', revoked_after = clock_timestamp()' : ''}
         WHERE id = $1 RETURNING ${COLUMNS}, ${REVOKED_AFTER_US} AS ra`,
        [current.id, role, disabled])
      if (revokes) revoked.user(current.id, updated[0].ra)
      before = current
      return toUser(updated[0])
    })
    if (before !== undefined && onChanged) await onChanged(before, after)
    return after
  }

  async delete (id: string): Promise<void> {
    await this.revocation.revoke(async (client, revoked) => {
      const { guardLastAdmin } = await this.lockForChange(client, { id })
      guardLastAdmin()
      const { rows: deleted } = await client.query(`DELETE FROM users WHERE id = $1 RETURNING ${NOW_US} AS ra`, [id])
      revoked.user(id, deleted[0].ra)
    })
  }

  /** Checks the current password, sets the new one and ends every session of the user. */
  async changePassword (userId: string, currentPassword: string, newPassword: string): Promise<void> {
    const { rows } = await this.db.query('SELECT password_hash FROM users WHERE id = $1', [userId])
    if (rows.length === 0 || !await argon2.verify(rows[0].password_hash, currentPassword)) {
      throw new Forbidden('Current password is wrong')
    }
    const passwordHash = await this.hash(newPassword)
    await this.revocation.revoke(async (client, revoked) => {
      const { rows: updated } = await client.query(
        `UPDATE users SET password_hash = $2, revoked_after = clock_timestamp() WHERE id = $1
         RETURNING ${REVOKED_AFTER_US} AS ra`, [userId, passwordHash])
      if (updated.length === 0) throw new NotFound('User not found')
      revoked.user(userId, updated[0].ra)
    })
  }
}

export default fp<HashOptions>(async function usersPlugin (fastify, opts) {
  const users = new UserService(fastify.db, fastify.revocation, opts)
  await users.init()
  fastify.decorate('users', users)
}, { name: 'users', dependencies: ['db', 'revocation'] })
