// Passkeys in PostgreSQL: registered credentials and the challenges of ceremonies in
// progress (migrations/005). Every method runs on the pool, or on the client of a
// transaction when it is given one. Times come from the database clock.
import type { Db, Queryable } from '../../external/db.js'

export type ChallengePurpose = 'register' | 'login' | 'mfa'

/** What a challenge was issued for: the verify that presents it may do this and no more. */
export interface Challenge {
  purpose: ChallengePurpose
  userId: string | null
  /** register: the session that asked; it must still be live when the credential is stored. */
  sessionId: string | null
  /** mfa: the hash of the mfa_token whose login a passkey completes. */
  mfaTokenHash: Buffer | null
  /** register: the name the user gave the passkey. */
  name: string | null
}

/** A credential as the verification of an assertion needs it. */
export interface StoredCredential {
  id: string
  userId: string
  credentialId: Buffer
  publicKey: Buffer
  counter: number
  transports: string[]
  backupEligible: boolean
}

/** A credential as its owner sees it. */
export interface CredentialInfo {
  id: string
  name: string
  createdAt: string
  lastUsedAt: string | null
}

const INFO_COLUMNS = 'id, name, created_at, last_used_at'

function toInfo (r: { id: string, name: string, created_at: Date, last_used_at: Date | null }): CredentialInfo {
  return { id: r.id, name: r.name, createdAt: r.created_at.toISOString(), lastUsedAt: r.last_used_at?.toISOString() ?? null }
}

export class WebAuthnRepository {
  constructor (private readonly db: Db) {}

  async insertChallenge (challenge: Buffer, c: Challenge, ttlSeconds: number): Promise<void> {
    await this.db.query(
      `INSERT INTO webauthn_challenges (challenge, purpose, user_id, session_id, mfa_token_hash, name, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp() + make_interval(secs => $7))`,
      [challenge, c.purpose, c.userId, c.sessionId, c.mfaTokenHash, c.name, ttlSeconds])
  }

  /**
   * Deletes the challenge and returns what it was for, if it had not expired: of two
   * verifies presenting the same challenge one gets it, and it is gone for any later one.
   */
  async takeChallenge (challenge: Buffer): Promise<Challenge | null> {
    const { rows } = await this.db.query(
      `DELETE FROM webauthn_challenges WHERE challenge = $1
       RETURNING purpose, user_id, session_id, mfa_token_hash, name, expires_at > clock_timestamp() AS live`, [challenge])
    if (rows.length === 0 || rows[0].live !== true) return null
    const r = rows[0]
    return { purpose: r.purpose, userId: r.user_id, sessionId: r.session_id, mfaTokenHash: r.mfa_token_hash, name: r.name }
  }

  /** Deletes up to `limit` expired challenges; how many (SKIP LOCKED: instances purge side by side). */
  async deleteExpiredChallenges (limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM webauthn_challenges WHERE challenge IN (
         SELECT challenge FROM webauthn_challenges WHERE expires_at < now() LIMIT $1 FOR UPDATE SKIP LOCKED)`, [limit])
    return rowCount ?? 0
  }

  /** The user's credentials, oldest first. */
  async list (userId: string, client: Queryable = this.db): Promise<CredentialInfo[]> {
    const { rows } = await client.query(
      `SELECT ${INFO_COLUMNS} FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id`, [userId])
    return rows.map(toInfo)
  }

  /** The user's credential ids and transports (excludeCredentials, allowCredentials). */
  async descriptors (userId: string): Promise<Array<{ credentialId: Buffer, transports: string[] }>> {
    const { rows } = await this.db.query(
      'SELECT credential_id, transports FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id', [userId])
    return rows.map((r) => ({ credentialId: r.credential_id, transports: r.transports }))
  }

  /**
   * Stores a new credential unless the user has `cap` already; null then, or when the
   * credential id is registered already (to anyone).
   */
  async insert (userId: string, c: { credentialId: Buffer, publicKey: Buffer, counter: number, transports: string[], backupEligible: boolean, name: string },
    cap: number, client: Queryable): Promise<CredentialInfo | null> {
    const { rows } = await client.query(
      `INSERT INTO webauthn_credentials (user_id, credential_id, public_key, counter, transports, backup_eligible, name)
       SELECT $1, $2, $3, $4, $5, $6, $7
        WHERE (SELECT count(*) FROM webauthn_credentials WHERE user_id = $1) < $8
       ON CONFLICT (credential_id) DO NOTHING
       RETURNING ${INFO_COLUMNS}`,
      [userId, c.credentialId, c.publicKey, c.counter, c.transports, c.backupEligible, c.name, cap])
    return rows.length === 0 ? null : toInfo(rows[0])
  }

  async find (credentialId: Buffer): Promise<StoredCredential | null> {
    const { rows } = await this.db.query(
      `SELECT id, user_id, credential_id, public_key, counter, transports, backup_eligible
         FROM webauthn_credentials WHERE credential_id = $1`, [credentialId])
    if (rows.length === 0) return null
    const r = rows[0]
    return {
      id: r.id,
      userId: r.user_id,
      credentialId: r.credential_id,
      publicKey: r.public_key,
      counter: Number(r.counter),
      transports: r.transports,
      backupEligible: r.backup_eligible
    }
  }

  /**
   * Inside a transaction, before a credential's row is locked: a share of its user's row
   * until COMMIT. Every transaction that locks a credential takes its user's row first
   * (a deletion through requireLiveSession, a second factor through the waiting login's
   * lock), so two of them never wait for each other in opposite orders.
   */
  async shareUser (userId: string, client: Queryable): Promise<void> {
    await client.query('SELECT 1 FROM users WHERE id = $1 FOR SHARE', [userId])
  }

  /**
   * Records a sign-in with the credential, locking its row until COMMIT (a deletion
   * waits for the session this sign-in starts, and then ends it): the new counter, if it
   * moved forward, or if the authenticator keeps none (0 and 0). False when the row is
   * gone, or when the counter did not move forward: a copy of the key signed in with a
   * higher counter already, or this assertion was made before that one.
   */
  async use (id: string, counter: number, client: Queryable): Promise<boolean> {
    const { rowCount } = await client.query(
      `UPDATE webauthn_credentials SET counter = $2, last_used_at = clock_timestamp()
        WHERE id = $1 AND (counter < $2 OR (counter = 0 AND $2 = 0))`, [id, counter])
    return rowCount !== 0
  }

  /** Locks one of the user's credentials until COMMIT; false if the user has no such one. */
  async lock (userId: string, id: string, client: Queryable): Promise<boolean> {
    const { rows } = await client.query(
      'SELECT 1 FROM webauthn_credentials WHERE id = $1 AND user_id = $2 FOR UPDATE', [id, userId])
    return rows.length > 0
  }

  /** Ends the live sessions the credential signed in; their ids. */
  async endSessions (id: string, client: Queryable): Promise<string[]> {
    const { rows } = await client.query(
      `UPDATE sessions SET revoked_at = clock_timestamp()
        WHERE credential_id = $1 AND revoked_at IS NULL AND expires_at > clock_timestamp() RETURNING id`, [id])
    return rows.map((r) => r.id)
  }

  async delete (id: string, client: Queryable): Promise<void> {
    await client.query('DELETE FROM webauthn_credentials WHERE id = $1', [id])
  }

  /** Does the user have a passkey (a second factor for password logins)? */
  async has (userId: string, client: Queryable = this.db): Promise<boolean> {
    const { rows } = await client.query('SELECT 1 FROM webauthn_credentials WHERE user_id = $1 LIMIT 1', [userId])
    return rows.length > 0
  }
}
