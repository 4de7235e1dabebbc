// Registered clients: other services that authenticate to this one with HTTP Basic
// `clientId:clientSecret` (RFC 6749 §2.3.1), e.g. for token introspection.
//
// The secret is 256 random bits, stored only as its SHA-256 (why not argon2:
// migrations/002.do.clients.sql). A check is a fast hash and a constant-time comparison,
// against a record cached in Redis: a warm check makes one Redis command and no
// PostgreSQL query, like an access-token check.
//
// Cache: `client:<clientId>` holds the record as JSON, or UNKNOWN for no such client
// (never registered, or deleted). A miss reads PostgreSQL and fills with SET NX, so a fill
// never overwrites what a change wrote. Rotation and deletion write the new state
// unconditionally inside their transaction, before COMMIT (Redis unreachable: roll back,
// 503, nothing changed) and once more after it: the old secret is refused from the moment
// the call returns. What is left open is the exposure docs/revocation.md describes for
// sessions without its epoch guard: a fill that read the old row before the COMMIT and
// lands after both writes, which only a FLUSHALL in between makes possible; it lasts until
// the entry's TTL. Without Redis (a single instance) there is no cache: every check reads
// PostgreSQL, as it does while Redis is unreachable.
//
// Who may change clients is checked where the change commits, as for an admin's change of
// a user (UserService.requireAdmin): an admin demoted, disabled or deleted, or whose
// session ended, while its request waited changes nothing. Each such change is audited in
// its own transaction. A call without an actor is the service's own (tests, start-up):
// neither checked nor audited, as a registration without a request is not.
import { hash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Client, ClientCredentials } from '../../../schemas/clients.js'
import type { AuditType } from '../../../schemas/audit.js'
import { Conflict, NotFound, Unavailable } from '../../../lib/errors.js'
import { withTimeout } from '../../../lib/timeout.js'
import type { Db, Queryable } from '../../external/db.js'
import type { AuditContext, AuditService } from '../audit/audit-service.js'
import type { UserService } from '../users/users-service.js'
import type { ClientRecord, ClientsRepository } from './clients-repository.js'

/** The two halves of HTTP Basic client credentials, form-urlencoding undone. */
export interface BasicCredentials {
  clientId: string
  clientSecret: string
}

const CLIENT_ID = /^[A-Za-z0-9_-]{22}$/
// Basic's token68, of a sane size: anything longer is refused before decoding.
const BASIC = /^Basic +([A-Za-z0-9+/]+={0,2})$/i
const MAX_HEADER_LENGTH = 1024
const UNKNOWN = '-'
/** Long enough that a busy client is served from Redis; a change rewrites the entry anyway. */
const CACHE_TTL_MS = 10 * 60_000
/** A read of the truth on the request path gives up after this long (503), as for tokens. */
const READ_TIMEOUT_MS = 800
// Compared against when the client is unknown, so that an unknown client costs the same
// hash and comparison as a wrong secret.
const DUMMY_HASH = hash('sha256', randomBytes(32), 'buffer')

export function hashSecret (secret: string): Buffer {
  // One call, no Hash object per check.
  return hash('sha256', secret, 'buffer')
}

function formDecode (value: string): string | null {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '))
  } catch {
    return null
  }
}

/**
 * `Authorization: Basic base64(urlencode(clientId) ":" urlencode(clientSecret))`
 * (RFC 6749 §2.3.1, RFC 7617); null when missing or malformed.
 */
export function parseBasic (header: string | undefined): BasicCredentials | null {
  if (header === undefined || header.length > MAX_HEADER_LENGTH) return null
  const match = BASIC.exec(header)
  if (match === null) return null
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return null
  const clientId = formDecode(decoded.slice(0, colon))
  const clientSecret = formDecode(decoded.slice(colon + 1))
  if (clientId === null || clientSecret === null) return null
  return { clientId, clientSecret }
}

/**
 * Does `secret` belong to `record`? The same work whether the record exists or not, and
 * a constant-time comparison of fixed-length hashes, so timing tells nothing about the
 * secret. (Whether a client id exists may show in timing: client ids are public, and
 * random, so there is nothing to learn from that.)
 */
export function secretMatches (record: { secretHash: Buffer } | null, secret: string): boolean {
  const same = timingSafeEqual(hashSecret(secret), record?.secretHash ?? DUMMY_HASH)
  return same && record !== null
}

function cacheKey (clientId: string): string {
  return 'client:' + clientId
}

function encode (record: ClientRecord): string {
  const { secretHash, ...client } = record
  return JSON.stringify({ ...client, secretHash: secretHash.toString('base64') })
}

function decode (value: string): ClientRecord | undefined {
  try {
    const parsed = JSON.parse(value)
    const secretHash = Buffer.from(parsed.secretHash, 'base64')
    if (typeof parsed.id !== 'string' || secretHash.length !== 32) return undefined
    return { id: parsed.id, clientId: parsed.clientId, name: parsed.name, createdAt: parsed.createdAt, secretHash }
  } catch {
    return undefined
  }
}

export class ClientsService {
  constructor (
    private readonly repo: ClientsRepository,
    private readonly db: Db,
    /** Null: no Redis at all (a single instance). */
    private readonly redis: Redis | null,
    private readonly users: Pick<UserService, 'requireAdmin'>,
    private readonly audit: AuditService
  ) {}

  /** A new client, registered by `actor` (an admin at commit). */
  async create (name: string, actor?: AuditContext, backchannelLogoutUri: string | null = null): Promise<ClientCredentials> {
    const clientId = randomBytes(16).toString('base64url')
    const clientSecret = randomBytes(32).toString('base64url')
    try {
      const client = await this.db.transact(async (tx) => {
        await this.authorize(tx, actor)
        // No cache write: a new random client id has never been looked up.
        const created = await this.repo.insert(tx, clientId, name, hashSecret(clientSecret), backchannelLogoutUri)
        await this.record(tx, actor, 'client_created', created)
        return created
      })
      return { ...client, clientSecret }
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new Conflict('Client name is already taken')
      throw err
    }
  }

  list (): Promise<Client[]> {
    return this.repo.list(this.db)
  }

  /** A new secret; the old one is refused from the moment this returns. */
  async rotateSecret (id: string, actor?: AuditContext): Promise<ClientCredentials> {
    const clientSecret = randomBytes(32).toString('base64url')
    const secretHash = hashSecret(clientSecret)
    const client = await this.change(actor, 'client_secret_rotated',
      (tx) => this.repo.setSecret(tx, id, secretHash),
      (changed) => encode({ ...changed, secretHash }))
    return { ...client, clientSecret }
  }

  /**
   * `actor` sets or clears where the client's logout tokens go (the cached credentials do
   * not change).
   */
  async setBackchannelLogoutUri (id: string, uri: string | null, actor?: AuditContext): Promise<Client> {
    return await this.db.transact(async (tx) => {
      await this.authorize(tx, actor)
      const client = await this.repo.setBackchannelLogoutUri(tx, id, uri)
      if (client === null) throw new NotFound('Client not found')
      await this.record(tx, actor, 'client_updated', client)
      return client
    })
  }

  /** The client's credentials are refused from the moment this returns. */
  async delete (id: string, actor?: AuditContext): Promise<Client> {
    return await this.change(actor, 'client_deleted', (tx) => this.repo.delete(tx, id), () => UNKNOWN)
  }

  /**
   * The client that `authorization` (an HTTP Basic header) authenticates, or null for a
   * missing, malformed, unknown or wrong one.
   */
  async authenticateBasic (authorization: string | undefined): Promise<Client | null> {
    const credentials = parseBasic(authorization)
    if (credentials === null) return null
    const record = CLIENT_ID.test(credentials.clientId) ? await this.lookup(credentials.clientId) : null
    if (!secretMatches(record, credentials.clientSecret)) return null
    // What the cache holds, whether or not it came from there (no back-channel logout URI).
    const { id, clientId, name, createdAt } = record as ClientRecord
    return { id, clientId, name, createdAt }
  }

  /** The client's record: from Redis when cached, else from PostgreSQL (and cached). */
  private async lookup (clientId: string): Promise<ClientRecord | null> {
    const key = cacheKey(clientId)
    let cached: string | null | undefined
    try {
      cached = await this.redis?.get(key)
    } catch {
      cached = undefined // Redis unreachable (or none): PostgreSQL alone decides, nothing is filled
    }
    if (cached === UNKNOWN) return null
    const hit = typeof cached === 'string' ? decode(cached) : undefined
    if (hit !== undefined) return hit
    const record = await withTimeout(this.repo.findByClientId(this.db, clientId), READ_TIMEOUT_MS, () => new Unavailable('postgres'))
    if (cached !== undefined) {
      await this.redis?.set(key, record === null ? UNKNOWN : encode(record), 'PX', CACHE_TTL_MS, 'NX').catch(() => {})
    }
    return record
  }

  private async writeCache (key: string, value: string): Promise<void> {
    try {
      await this.redis?.set(key, value, 'PX', CACHE_TTL_MS)
    } catch {
      throw new Unavailable('redis')
    }
  }

  /** First in a change's transaction: the actor is an admin with a live session until COMMIT. */
  private async authorize (tx: Queryable, actor: AuditContext | undefined): Promise<void> {
    if (actor !== undefined) await this.users.requireAdmin(tx, actor)
  }

  /** In the transaction of the change it records: both commit, or neither. Never the secret. */
  private async record (tx: Queryable, actor: AuditContext | undefined, type: AuditType, client: Client): Promise<void> {
    if (actor === undefined) return
    await this.audit.record({ ...actor, type, detail: { id: client.id, clientId: client.clientId, name: client.name } }, tx)
  }

  /**
   * Applies `actor`'s change to one client in a transaction, audits it, and writes the
   * client's new cache entry before COMMIT and after it (see the top of this file).
   */
  private async change (actor: AuditContext | undefined, type: AuditType, apply: (tx: Queryable) => Promise<Client | null>,
    cached: (client: Client) => string): Promise<Client> {
    let written: { key: string, value: string } | undefined
    let client: Client
    try {
      client = await this.db.transact(async (tx) => {
        await this.authorize(tx, actor)
        const changed = await apply(tx)
        if (changed === null) throw new NotFound('Client not found')
        await this.record(tx, actor, type, changed)
        written = { key: cacheKey(changed.clientId), value: cached(changed) }
        await this.writeCache(written.key, written.value)
        return changed
      })
    } catch (err) {
      // Rolled back after the entry was written: drop it, the next check reads the truth.
      if (written !== undefined) await this.redis?.del(written.key).catch(() => {})
      throw err
    }
    const { key, value } = written as { key: string, value: string }
    await this.redis?.set(key, value, 'PX', CACHE_TTL_MS).catch(() => {})
    return client
  }
}
