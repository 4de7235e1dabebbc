// The clients table (migrations/002.do.clients.sql): parameterised SQL, rows mapped to
// camelCase. Every function takes the pool or a transaction's client.
import type { Client } from '../../../schemas/clients.js'

export interface Queryable {
  query: (text: string, values?: unknown[]) => Promise<{ rows: any[] }>
}

/** A client as the secret check needs it. */
export interface ClientRecord extends Client {
  secretHash: Buffer
}

const COLUMNS = 'id, client_id, name, created_at, backchannel_logout_uri'

function toClient (row: any): Client {
  return { id: row.id, clientId: row.client_id, name: row.name, createdAt: row.created_at.toISOString(), backchannelLogoutUri: row.backchannel_logout_uri }
}

export class ClientsRepository {
  /** Throws PostgreSQL's unique violation (23505) when the name is taken. */
  async insert (db: Queryable, clientId: string, name: string, secretHash: Buffer, backchannelLogoutUri: string | null = null): Promise<Client> {
    const { rows } = await db.query(
      `INSERT INTO clients (client_id, name, secret_hash, backchannel_logout_uri) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
      [clientId, name, secretHash, backchannelLogoutUri])
    return toClient(rows[0])
  }

  /**
   * The client with its new back-channel logout URI, or null when there is none. Without
   * one, the logout tokens still waiting for it are dropped: nobody could take them.
   */
  async setBackchannelLogoutUri (db: Queryable, id: string, uri: string | null): Promise<Client | null> {
    const { rows } = await db.query(`UPDATE clients SET backchannel_logout_uri = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, uri])
    if (rows.length === 0) return null
    if (uri === null) await db.query("DELETE FROM security_events WHERE client_id = $1 AND status = 'pending'", [id])
    return toClient(rows[0])
  }

  async list (db: Queryable): Promise<Client[]> {
    const { rows } = await db.query(`SELECT ${COLUMNS} FROM clients ORDER BY created_at, id`)
    return rows.map(toClient)
  }

  async findByClientId (db: Queryable, clientId: string): Promise<ClientRecord | null> {
    const { rows } = await db.query(`SELECT ${COLUMNS}, secret_hash FROM clients WHERE client_id = $1`, [clientId])
    return rows.length === 0 ? null : { ...toClient(rows[0]), secretHash: rows[0].secret_hash }
  }

  /** The deleted client, or null when there was none. */
  async delete (db: Queryable, id: string): Promise<Client | null> {
    const { rows } = await db.query(`DELETE FROM clients WHERE id = $1 RETURNING ${COLUMNS}`, [id])
    return rows.length === 0 ? null : toClient(rows[0])
  }

  /** The client with its new secret hash in place, or null when there is none. */
  async setSecret (db: Queryable, id: string, secretHash: Buffer): Promise<Client | null> {
    const { rows } = await db.query(`UPDATE clients SET secret_hash = $2 WHERE id = $1 RETURNING ${COLUMNS}`, [id, secretHash])
    return rows.length === 0 ? null : toClient(rows[0])
  }
}
