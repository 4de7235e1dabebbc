// Accounts: argon2id password hashing, login checks, and every change that must revoke a
// user's tokens (role, disable, delete, password), with the rule that one active admin
// always remains. Each change is recorded in the audit log.
import { randomBytes } from 'node:crypto'
import argon2 from 'argon2'
import type { Role, User } from '../../../schemas/users.js'
import { UUID_PATTERN } from '../../../schemas/common.js'
import {
  BadCredentials, Conflict, Forbidden, InvalidToken, NotFound, PasswordChangeRequired, tooManyRequests, WeakPassword,
  withFields, WrongPassword
} from '../../../lib/errors.js'
import { clientKey } from '../../../lib/client-ip.js'
import { loadPasswordPolicy, passwordProblem } from '../../../lib/password-policy.js'
import { decodeCursor, encodeCursor } from '../../../lib/cursor.js'
import type { Queryable } from '../../external/db.js'
import type { RevocationService, RevocationSet } from '../revocation/revocation-service.js'
import type { AuditType } from '../../../schemas/audit.js'
import type { AuditContext, AuditService, ChangeContext } from '../audit/audit-service.js'
import type { LockoutService } from '../lockout/lockout-service.js'
import type { EventsService } from '../events/events-service.js'
import type { Account, Taken, UserKey, UsersRepository } from './users-repository.js'

export interface HashOptions {
  memoryCost: number
  timeCost: number
  parallelism: number
}

/** Which user a change is for: by id (the admin API) or by username (change-role). */
export type UserRef = { id: string, username?: undefined } | { id?: undefined, username: string }

/** Issues single-use tokens for POST /auth/password/reset (the recovery plugin's). */
export interface ResetTokens {
  issue: (userId: string) => Promise<string>
}

/** A user id no account has: an unknown username's lookups cost the same queries. */
const NO_USER = '00000000-0000-0000-0000-000000000000'

// The full UUID shape: 36 hex-or-dash characters in any order would reach ::uuid as a 500.
const CURSOR_PATTERNS = [/^[0-9]{1,18}$/, new RegExp(UUID_PATTERN)]

export class UserService {
  private dummyHash = ''
  private resetTokens: ResetTokens | undefined

  constructor (
    private readonly repository: UsersRepository,
    private readonly revocation: RevocationService,
    private readonly audit: AuditService,
    private readonly lockout: LockoutService,
    readonly hashOptions: HashOptions,
    /** Security events for other services: a credential or a claim changed (plugins/app/events/). */
    private readonly events?: EventsService
  ) {}

  async init (): Promise<void> {
    // Login verifies this hash for an unknown user, so that "no such user" costs the
    // same argon2 work as "wrong password" and timing does not reveal which it was.
    this.dummyHash = await this.hash(randomBytes(16).toString('hex'))
    loadPasswordPolicy()
  }

  /** The recovery plugin, registered after this one (it uses it), hands over its reset tokens. */
  useResetTokens (resetTokens: ResetTokens): void {
    this.resetTokens = resetTokens
  }

  hash (password: string): Promise<string> {
    return argon2.hash(password, { type: argon2.argon2id, ...this.hashOptions })
  }

  /**
   * A new account, its email (if any) unverified; recorded as a registration when a
   * request (`ctx`) made it.
   */
  async register (username: string, password: string, role: Role = 'user', ctx?: AuditContext, email: string | null = null): Promise<User> {
    const problem = passwordProblem(password, username)
    if (problem !== null) throw new WeakPassword(problem)
    const user = created(await this.repository.insert(username, await this.hash(password), role, email))
    if (ctx !== undefined) await this.audit.record({ ...ctx, type: 'register', actorId: user.id, subjectId: user.id })
    return user
  }

  /**
   * An account an admin (or the operator, at the admin command line) creates, with the role
   * given. The actor's authority holds at commit, as for every admin change.
   */
  async create (username: string, password: string, role: Role, email: string | null, ctx: ChangeContext): Promise<User> {
    const problem = passwordProblem(password, username)
    if (problem !== null) throw new WeakPassword(problem)
    // Hashed before the transaction: the admins' rows are not held during argon2.
    const passwordHash = await this.hash(password)
    return await this.revocation.revoke(async (client) => {
      await this.requireAdmin(client, ctx)
      const user = created(await this.repository.insert(username, passwordHash, role, email, client))
      await this.audit.record({ ...ctx, type: 'user_created', subjectId: user.id, detail: { username: user.username, role } }, client)
      return user
    })
  }

  /**
   * The first admin, from ADMIN_USERNAME/ADMIN_PASSWORD. An existing user of that name is
   * left as it is (never promoted by the environment): 'created', or the existing user.
   */
  async ensureAdmin (username: string, password: string): Promise<'created' | User> {
    const existing = await this.repository.findAccount(username)
    // (A weak ADMIN_PASSWORD never gets here: the configuration refuses it.)
    if (existing === null) {
      if (await this.repository.insertIfMissing(username, await this.hash(password), 'admin')) return 'created'
    }
    // Created by another instance starting at the same moment, or there all along.
    return withoutSecrets(existing ?? await this.repository.findAccount(username) as Account)
  }

  /**
   * Checks a username and password. Unknown user, wrong password and disabled user all
   * throw the same BadCredentials after the same argon2 work; the audit log learns which.
   * The attempt is counted by the lockout before argon2 runs (so parallel guesses cannot
   * all get through) and settled when the password was right. Returns the user and the
   * password hash it was checked against (a session may start only while it is current).
   */
  async verifyLogin (name: string, password: string, ctx: AuditContext): Promise<{ user: User, passwordHash: string }> {
    const account = await this.repository.findAccount(name)
    // `name` is a username or a verified email: the lockout counts the account's username
    // either way, so taking turns with the two does not double the guesses. A name that
    // finds no account is counted as given.
    const lockKey = account?.username ?? name
    let attempt = await this.lockout.attempt(lockKey, ctx.ip)
    // The username is throttled across clients, but a client the user has a session from
    // is not held back by strangers' failures (the "device cookie" idea, by address).
    // An unknown username asks about a user that does not exist: the same query, the same time.
    if (attempt.refused && attempt.scope === 'username' && await this.isKnownClient(account?.id ?? NO_USER, ctx.ip)) {
      attempt = await this.lockout.attempt(lockKey, ctx.ip, { exempt: true })
    }
    // The audit log keeps the name as it was typed.
    if (attempt.refused) {
      await this.audit.record({ ...ctx, type: 'login_locked', subjectId: account?.id ?? null, detail: { username: name, lock: attempt.scope } })
      throw tooManyRequests('Too many failed logins for this username, try again later', attempt.retryAfter)
    }
    const ok = await argon2.verify(account?.passwordHash ?? this.dummyHash, password)
    if (account === null || !ok || account.disabled) {
      const reason = account === null ? 'unknown_user' : !ok ? 'bad_password' : 'disabled'
      await this.audit.record({ ...ctx, type: 'login_failed', subjectId: account?.id ?? null, detail: { username: name, reason, failures: attempt.failures } })
      throw new BadCredentials()
    }
    if (account.temporaryPassword) {
      // Right, but an admin set it: the user chooses a new one before any session starts.
      // (Before the hash upgrade below, which would replace the temporary hash.)
      await this.lockout.succeeded(lockKey, ctx.ip)
      return await this.refuseTemporaryPassword(account.id, ctx)
    }
    let passwordHash = account.passwordHash
    if (argon2.needsRehash(passwordHash, this.hashOptions)) {
      // Parameters were raised since this hash was made: upgrade it now that we have the password.
      const upgraded = await this.hash(password)
      if (await this.repository.replacePasswordHash(account.id, passwordHash, upgraded)) passwordHash = upgraded
    }
    return { user: withoutSecrets(account), passwordHash }
  }

  /** Does the user have a session (one still kept) from this client (its IPv4 address, or IPv6 /64)? */
  private async isKnownClient (userId: string, ip: string): Promise<boolean> {
    const key = clientKey(ip)
    return (await this.repository.sessionIps(userId)).some((known) => clientKey(known) === key)
  }

  async getById (id: string): Promise<User> {
    const user = await this.repository.findById(id)
    if (user === null) throw new NotFound('User not found')
    return user
  }

  /** A user by id, or by username (without regard to case). */
  async get (target: UserRef): Promise<User> {
    if (target.id !== undefined) return await this.getById(target.id)
    const account = await this.repository.findAccount(target.username)
    if (account === null) throw new NotFound('User not found')
    return withoutSecrets(account)
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
   * Inside an admin's change, before it writes: the actor's authority holds at commit,
   * not only at the door. Locks the active admins until COMMIT (in id order, always before
   * any other row, so concurrent changes cannot deadlock), then refuses an actor that is
   * no longer one of them (demoted, disabled or deleted while its request waited: 403)
   * or whose session has ended (401). With the actor's row locked, no later demotion or
   * logout can slip in before COMMIT: they wait for this change, or it saw them. An actor
   * of null (the service itself at start-up, the operator at the admin command line) is
   * not checked. The active admins' ids.
   */
  async requireAdmin (client: Queryable, actor: ChangeContext): Promise<string[]> {
    const admins = await this.repository.lockActiveAdmins(client)
    if (actor.actorId !== null) {
      if (!admins.includes(actor.actorId)) throw new Forbidden('Requires role admin')
      await this.revocation.requireLiveSession(client, actor.actorId, actor.sessionId, { userLocked: true })
    }
    return admins
  }

  /**
   * Locks the active admins, checking an admin actor's authority (requireAdmin), then the
   * target. Two admins demoting each other at once are serialised here, and the second one
   * sees the first one's result. `self`: the actor is the target, acting on its own account
   * (any role); its session must be live at commit, and a missing user is a dead token.
   */
  private async lockForChange (client: Queryable, target: UserRef, actor: ChangeContext, authority: 'admin' | 'self' = 'admin') {
    const admins = authority === 'admin' ? await this.requireAdmin(client, actor) : await this.repository.lockActiveAdmins(client)
    const current = await this.repository.lock(target, client)
    if (current === null) throw authority === 'admin' ? new NotFound('User not found') : new InvalidToken('Access token has been revoked')
    // The user's row is locked now, as requireLiveSession's `userLocked` wants.
    if (authority === 'self') await this.revocation.requireLiveSession(client, current.id, actor.sessionId, { userLocked: true })
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
  async update (target: UserRef, patch: { role?: Role, disabled?: boolean }, ctx: ChangeContext): Promise<User> {
    return await this.revocation.revoke(async (client, revoked) => {
      const { current, guardLastAdmin } = await this.lockForChange(client, target, ctx)
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
      if (revoke) revoked.user(current.id, revokedAfterUs, disabled ? 'user_disabled' : 'role_changed')
      // Recorded in the transaction of the change: both commit, or neither.
      const event = { ...ctx, subjectId: user.id }
      if (current.role !== user.role) {
        await this.audit.record({ ...event, type: 'role_changed', detail: { from: current.role, to: user.role } }, client)
        await this.events?.claimsChange(client, user.id, { role: user.role }, 'admin')
      }
      if (current.disabled !== user.disabled) {
        await this.audit.record({ ...event, type: user.disabled ? 'user_disabled' : 'user_enabled' }, client)
      }
      return user
    })
  }

  /** Deletes a user: an admin's call, or (`self`) the signed-in user's own, its password checked. */
  async delete (id: string, ctx: ChangeContext, authority: 'admin' | 'self' = 'admin'): Promise<void> {
    await this.revocation.revoke(async (client, revoked) => {
      const { guardLastAdmin } = await this.lockForChange(client, { id }, ctx, authority)
      guardLastAdmin()
      const deletedUs = await this.repository.delete(id, client)
      if (deletedUs !== null) revoked.user(id, deletedUs, 'user_deleted')
      await this.audit.record({ ...ctx, type: 'user_deleted', subjectId: id }, client)
    })
  }

  /** Forgets the failed logins and locks of the user's username (an admin's call). */
  async clearLockout (target: UserRef, ctx: ChangeContext): Promise<void> {
    await this.revocation.revoke(async (client) => {
      const { current } = await this.lockForChange(client, target, ctx)
      await this.audit.record({ ...ctx, type: 'lockout_cleared', subjectId: current.id }, client)
      // Last before COMMIT: cleared only while the actor's authority is known to hold.
      await this.lockout.clear(current.username)
    })
  }

  /**
   * An admin (or the operator) sets a temporary password: every session of the user ends,
   * and the next login with it answers 403 with a reset token instead of a session, so
   * that the user chooses a password nobody else knows.
   */
  async setTemporaryPassword (target: UserRef, password: string, ctx: ChangeContext): Promise<void> {
    const { username } = await this.get(target)
    const problem = passwordProblem(password, username)
    if (problem !== null) throw new WeakPassword(problem)
    const passwordHash = await this.hash(password)
    await this.revocation.revoke(async (client, revoked) => {
      const { current } = await this.lockForChange(client, target, ctx)
      revoked.user(current.id, await this.repository.setTemporaryPassword(current.id, passwordHash, client), 'password_changed')
      await this.audit.record({ ...ctx, type: 'password_set', subjectId: current.id }, client)
      await this.events?.credentialChange(client, current.id, { credentialType: 'password', changeType: 'update', initiatingEntity: 'admin' })
    })
  }

  /** The user's password is a temporary one an admin set (in the caller's transaction, with `client`). */
  async hasTemporaryPassword (userId: string, client?: Queryable): Promise<boolean> {
    return await this.repository.hasTemporaryPassword(userId, client)
  }

  /**
   * While the password is a temporary one an admin set, no session starts, whichever way
   * the user signs in (the password, or a passkey without it): a 403 with a reset token
   * instead, so that the user first chooses a password nobody else knows. Audited.
   */
  async refuseTemporaryPassword (userId: string, ctx: AuditContext): Promise<never> {
    await this.audit.record({ ...ctx, type: 'password_change_required', subjectId: userId })
    if (this.resetTokens === undefined) throw new Error('temporary password, and no reset tokens to hand out')
    throw withFields(new PasswordChangeRequired(), { reset_token: await this.resetTokens.issue(userId) })
  }

  /**
   * A change an admin makes to a user, in a revoking transaction: `fn` runs with the target
   * locked and the actor's authority checked at commit (still an active admin, session
   * still live; see lockForChange). For changes other services own (a second factor).
   */
  async adminChange<T> (target: UserRef, ctx: AuditContext,
    fn: (client: Queryable, revoked: RevocationSet, current: User) => Promise<T>): Promise<T> {
    return await this.revocation.revoke(async (client, revoked) => {
      const { current } = await this.lockForChange(client, target, ctx)
      return await fn(client, revoked, current)
    })
  }

  /**
   * Checks a signed-in user's own password before a change that needs it (a password
   * change, deleting the account, removing a second factor, adding or removing a passkey). Wrong passwords count toward the username's lockout like
   * failed logins (a stolen access token is no unlimited password oracle); the one that
   * reaches the threshold ends the session in use (401). `failed`: the audit type of a
   * refusal. `known`: the credentials, when the caller has read them already.
   */
  async checkPassword (userId: string, password: string, ctx: AuditContext, failed: AuditType,
    known?: { username: string, passwordHash: string }): Promise<{ username: string, passwordHash: string }> {
    const credentials = known ?? await this.repository.findCredentials(userId)
    if (credentials === null) throw new InvalidToken('Access token has been revoked')
    const { username, passwordHash } = credentials
    // The caller holds a live session: strangers' failures across clients do not hold it back.
    const attempt = await this.lockout.attempt(username, ctx.ip, { exempt: true })
    if (attempt.refused) {
      await this.audit.record({ ...ctx, type: failed, subjectId: userId, detail: { reason: 'locked' } })
      throw tooManyRequests('Too many wrong passwords for this account, try again later', attempt.retryAfter)
    }
    if (!await argon2.verify(passwordHash, password)) {
      const sid = attempt.failures >= this.lockout.threshold ? ctx.sessionId : null
      const event = { ...ctx, type: failed, subjectId: userId, detail: { reason: 'bad_password', failures: attempt.failures, sessionEnded: sid != null } }
      if (sid == null) {
        await this.audit.record(event)
        throw new WrongPassword()
      }
      await this.revocation.revoke(async (client, revoked) => {
        await this.revocation.holdUser(client, userId)
        if (await this.repository.endSession(userId, sid, client)) revoked.session(userId, sid, 'lockout')
        await this.audit.record(event, client)
      })
      throw new InvalidToken('Too many wrong passwords: this session has ended')
    }
    await this.lockout.succeeded(username, ctx.ip)
    return credentials
  }

  /** Checks the current password, sets the new one and ends every session of the user. */
  async changePassword (userId: string, currentPassword: string, newPassword: string, ctx: AuditContext): Promise<void> {
    const credentials = await this.repository.findCredentials(userId)
    if (credentials === null) throw new InvalidToken('Access token has been revoked')
    const problem = passwordProblem(newPassword, credentials.username)
    if (problem !== null) throw new WeakPassword(problem)
    const { passwordHash: current } = await this.checkPassword(userId, currentPassword, ctx, 'password_change_failed', credentials)
    const passwordHash = await this.hash(newPassword)
    await this.revocation.revoke(async (client, revoked) => {
      // At commit the caller's session is still live, and the password is still the one
      // just checked (a concurrent change wins; this one then ends with its session).
      await this.revocation.requireLiveSession(client, userId, ctx.sessionId)
      const revokedAfterUs = await this.repository.setPassword(userId, passwordHash, current, client)
      if (revokedAfterUs === null) throw new InvalidToken('Access token has been revoked')
      revoked.user(userId, revokedAfterUs, 'password_changed')
      await this.audit.record({ ...ctx, type: 'password_changed', subjectId: userId }, client)
      await this.events?.credentialChange(client, userId, { credentialType: 'password', changeType: 'update', initiatingEntity: 'user' })
    })
  }

  /**
   * The signed-in user deletes their own account, confirming with the password (counted as
   * checkPassword() says). At commit the session is still live, so the password checked
   * is still the one (every change of it ends the sessions), and the last admin stays (409).
   */
  async deleteOwn (userId: string, password: string, ctx: AuditContext): Promise<void> {
    await this.checkPassword(userId, password, ctx, 'account_delete_failed')
    await this.delete(userId, ctx, 'self')
  }
}

/** The user an insert made, or the 409 of the value that was taken. */
function created (user: User | Taken): User {
  if (user === 'username_taken') throw new Conflict('Username is already taken')
  if (user === 'email_taken') throw new Conflict('Email is already in use')
  return user
}

/** A user as the API shows it: no password hash, no password state. */
function withoutSecrets (account: Account): User {
  const { passwordHash: _, temporaryPassword: __, ...user } = account
  return user
}
