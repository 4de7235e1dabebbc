// Accounts: argon2id password hashing, login checks, and every change that must revoke a
// user's tokens (role, disable, delete, password), with the rule that one active admin
// always remains. Each change is recorded in the audit log.
import { randomBytes } from 'node:crypto'
import argon2 from 'argon2'
import type { Role, User } from '../../../schemas/users.js'
import { UUID_PATTERN } from '../../../schemas/common.js'
import { BadCredentials, Conflict, Forbidden, NotFound } from '../../../lib/errors.js'
import { decodeCursor, encodeCursor } from '../../../lib/cursor.js'
import type { Queryable } from '../../external/db.js'
import type { RevocationService } from '../revocation/revocation-service.js'
import type { AuditContext, AuditService } from '../audit/audit-service.js'
import type { LockoutService } from '../lockout/lockout-service.js'
import type { UserKey, UsersRepository } from './users-repository.js'

export interface HashOptions {
  memoryCost: number
  timeCost: number
  parallelism: number
}

/** Which user a change is for: by id (the admin API) or by username (change-role). */
export type UserRef = { id: string, username?: undefined } | { id?: undefined, username: string }

// The full UUID shape: 36 hex-or-dash characters in any order would reach ::uuid as a 500.
const CURSOR_PATTERNS = [/^[0-9]{1,18}$/, new RegExp(UUID_PATTERN)]

export class UserService {
  private dummyHash = ''

  constructor (
    private readonly repository: UsersRepository,
    private readonly revocation: RevocationService,
    private readonly audit: AuditService,
    private readonly lockout: LockoutService,
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

  /** A new account; recorded as a registration when a request (`ctx`) made it. */
  async register (username: string, password: string, role: Role = 'user', ctx?: AuditContext): Promise<User> {
    const user = await this.repository.insert(username, await this.hash(password), role)
    if (user === null) throw new Conflict('Username is already taken')
    if (ctx !== undefined) await this.audit.record({ ...ctx, type: 'register', actorId: user.id, subjectId: user.id })
    return user
  }

  /** The first admin, from ADMIN_USERNAME/ADMIN_PASSWORD; an existing user is left as is. */
  async ensureAdmin (username: string, password: string): Promise<boolean> {
    return await this.repository.insertIfMissing(username, await this.hash(password), 'admin')
  }

  /**
   * Checks a username and password. Unknown user, wrong password and disabled user all
   * throw the same BadCredentials after the same argon2 work; the audit log learns which,
   * and the lockout counts the failure.
   */
  async verifyLogin (username: string, password: string, ctx: AuditContext): Promise<User> {
    const account = await this.repository.findAccount(username)
    const ok = await argon2.verify(account?.passwordHash ?? this.dummyHash, password)
    if (account === null || !ok || account.disabled) {
      const reason = account === null ? 'unknown_user' : !ok ? 'bad_password' : 'disabled'
      const failures = await this.lockout.failed(username)
      await this.audit.record({ ...ctx, type: 'login_failed', subjectId: account?.id ?? null, detail: { username, reason, failures } })
      throw new BadCredentials()
    }
    if (argon2.needsRehash(account.passwordHash, this.hashOptions)) {
      // Parameters were raised since this hash was made: upgrade it now that we have the password.
      await this.repository.replacePasswordHash(account.id, account.passwordHash, await this.hash(password))
    }
    const { passwordHash: _, ...user } = account
    return user
  }

  async getById (id: string): Promise<User> {
    const user = await this.repository.findById(id)
    if (user === null) throw new NotFound('User not found')
    return user
  }

  /** Ordered by (created_at, id): a new user lands after every page already read. */
  async list (opts: { limit: number, cursor?: string }): Promise<{ items: User[], nextCursor: string | null }> {
    const after = opts.cursor === undefined ? null : decodeCursor(opts.cursor, CURSOR_PATTERNS) as UserKey
    const rows = await this.repository.list(after, opts.limit + 1)
    const page = rows.slice(0, opts.limit)
    return {
      items: page.map((r) => r.user),
      nextCursor: rows.length > opts.limit ? encodeCursor(page[page.length - 1].key) : null
    }
  }

  /**
   * Locks the active admins (in id order, always before the target row, so concurrent
   * changes cannot deadlock), then the target. Two admins demoting each other at once
   * are serialised here, and the second one sees the first one's result.
   */
  private async lockForChange (client: Queryable, target: UserRef) {
    const admins = await this.repository.lockActiveAdmins(client)
    const current = await this.repository.lock(target, client)
    if (current === null) throw new NotFound('User not found')
    return {
      current,
      /** Refuses a change that would leave no active admin. */
      guardLastAdmin () {
        if (admins.length <= 1 && admins.includes(current.id)) {
          throw new Conflict('The last admin cannot be demoted, disabled or deleted')
        }
      }
    }
  }

  /** Applies role/disabled changes; a change that removes power revokes every token at once. */
  async update (target: UserRef, patch: { role?: Role, disabled?: boolean }, ctx: AuditContext): Promise<User> {
    return await this.revocation.revoke(async (client, revoked) => {
      const { current, guardLastAdmin } = await this.lockForChange(client, target)
      const role = patch.role ?? current.role
      const disabled = patch.disabled ?? current.disabled
      // Nothing changes, nothing is revoked.
      if (role === current.role && disabled === current.disabled) return current
      if ((current.role === 'admin' && role !== 'admin') || (!current.disabled && disabled)) {
        guardLastAdmin()
      }
      // Enabling a user revokes nothing (its sessions died when it was disabled).
      const revoke = role !== current.role || disabled
      const { user, revokedAfterUs } = await this.repository.update(current.id, { role, disabled, revoke }, client)
      if (revoke) revoked.user(current.id, revokedAfterUs)
      // Recorded in the transaction of the change: both commit, or neither.
      const event = { ...ctx, subjectId: user.id }
      if (current.role !== user.role) {
        await this.audit.record({ ...event, type: 'role_changed', detail: { from: current.role, to: user.role } }, client)
      }
      if (current.disabled !== user.disabled) {
        await this.audit.record({ ...event, type: user.disabled ? 'user_disabled' : 'user_enabled' }, client)
      }
      return user
    })
  }

  async delete (id: string, ctx: AuditContext): Promise<void> {
    await this.revocation.revoke(async (client, revoked) => {
      const { guardLastAdmin } = await this.lockForChange(client, { id })
      guardLastAdmin()
      const deletedUs = await this.repository.delete(id, client)
      if (deletedUs !== null) revoked.user(id, deletedUs)
      await this.audit.record({ ...ctx, type: 'user_deleted', subjectId: id }, client)
    })
  }

  /** Checks the current password, sets the new one and ends every session of the user. */
  async changePassword (userId: string, currentPassword: string, newPassword: string, ctx: AuditContext): Promise<void> {
    const hash = await this.repository.findPasswordHash(userId)
    if (hash === null || !await argon2.verify(hash, currentPassword)) {
      throw new Forbidden('Current password is wrong')
    }
    const passwordHash = await this.hash(newPassword)
    await this.revocation.revoke(async (client, revoked) => {
      const revokedAfterUs = await this.repository.setPassword(userId, passwordHash, client)
      if (revokedAfterUs === null) throw new NotFound('User not found')
      revoked.user(userId, revokedAfterUs)
      await this.audit.record({ ...ctx, type: 'password_changed', subjectId: userId }, client)
    })
  }
}
