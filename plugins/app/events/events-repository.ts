// The outbox of security events and the SSF streams (migrations/007.do.security-events.sql):
// parameterised SQL, rows mapped to camelCase. Every function takes the pool or a
// transaction's client.
import type { Queryable } from '../../external/db.js'
import { BACKCHANNEL_LOGOUT, type OutgoingEvent } from './tokens.js'

/** An event to write: for every receiver that wants it, or for one stream only. */
export interface NewEvent {
  subject: string
  eventType: string
  claims: Record<string, unknown>
  streamId?: string
}

/** A row claimed for a push: the event, where it goes and for whom (`aud`). */
export interface Claimed extends OutgoingEvent {
  id: string
  attempts: number
  channel: 'ssf' | 'backchannel'
  url: string
  authorization: string | null
  aud: string
}

/** What a receiver sets of its stream. */
export interface StreamFields {
  deliveryMethod: 'push' | 'poll'
  endpointUrl: string | null
  authorizationHeader: string | null
  eventsRequested: string[]
  eventsDelivered: string[]
  description: string | null
}

export interface StreamRow extends StreamFields {
  id: string
  clientId: string
  /** The owning client's public id: the `aud` of the stream's events. */
  aud: string
  status: 'enabled' | 'paused' | 'disabled'
  statusReason: string | null
}

const STREAM_COLUMNS = `s.id, s.client_id, c.client_id AS aud, s.delivery_method, s.endpoint_url, s.authorization_header,
  s.events_requested, s.events_delivered, s.description, s.status, s.status_reason`

function toStream (row: any): StreamRow {
  return {
    id: row.id,
    clientId: row.client_id,
    aud: row.aud,
    deliveryMethod: row.delivery_method,
    endpointUrl: row.endpoint_url,
    authorizationHeader: row.authorization_header,
    eventsRequested: row.events_requested,
    eventsDelivered: row.events_delivered,
    description: row.description,
    status: row.status,
    statusReason: row.status_reason
  }
}

function toEvent (row: any): OutgoingEvent {
  return { jti: row.jti, eventType: row.event_type, claims: row.claims, createdAt: row.created_at }
}

export class EventsRepository {
  /**
   * Writes `events` for every receiver that takes them, in one statement, in the caller's
   * transaction: a back-channel logout goes to every client with a logout URI; an SSF
   * event to every stream not disabled that asked for its type (paused streams keep
   * theirs until resumed), or to the one stream it names. Ids follow the order of
   * `events`, which is the order each receiver gets them in.
   */
  async enqueue (db: Queryable, events: NewEvent[]): Promise<void> {
    if (events.length === 0) return
    await db.query(
      `INSERT INTO security_events (stream_id, client_id, subject, event_type, claims)
       SELECT r.stream_id, r.client_id, e.subject, e.event_type, e.claims
         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::uuid[]) WITH ORDINALITY AS e(subject, event_type, claims, only_stream, ord)
         JOIN (SELECT s.id AS stream_id, NULL::uuid AS client_id, s.events_delivered AS wanted, s.id AS receiver
                 FROM ssf_streams s WHERE s.status <> 'disabled'
               UNION ALL
               SELECT NULL, c.id, NULL, c.id FROM clients c WHERE c.backchannel_logout_uri IS NOT NULL) r
           ON CASE WHEN e.event_type = $5 THEN r.client_id IS NOT NULL
                   WHEN e.only_stream IS NOT NULL THEN r.stream_id = e.only_stream
                   ELSE r.stream_id IS NOT NULL AND e.event_type = ANY (r.wanted) END
        ORDER BY e.ord, r.receiver`,
      [events.map((e) => e.subject), events.map((e) => e.eventType), events.map((e) => JSON.stringify(e.claims)),
        events.map((e) => e.streamId ?? null), BACKCHANNEL_LOGOUT])
  }

  /**
   * Claims up to `limit` pushes that are due, for this instance alone (SKIP LOCKED: other
   * instances take other rows), and leases them for `leaseMs`: if this instance dies
   * before it records the outcome, the row is due again when the lease runs out. Only the
   * oldest pending event of each (receiver, subject) is eligible, so a subject's events
   * reach a receiver in order, whichever instance sends them.
   */
  async claim (db: Queryable, limit: number, leaseMs: number): Promise<Claimed[]> {
    const { rows } = await db.query(
      `WITH due AS (
         SELECT e.id,
                CASE WHEN e.stream_id IS NULL THEN c.backchannel_logout_uri ELSE s.endpoint_url END AS url,
                s.authorization_header, c.client_id AS aud
           FROM security_events e
           LEFT JOIN ssf_streams s ON s.id = e.stream_id
           JOIN clients c ON c.id = coalesce(s.client_id, e.client_id)
          WHERE e.status = 'pending' AND e.next_attempt_at <= clock_timestamp()
            AND (e.stream_id IS NULL OR (s.delivery_method = 'push' AND s.status = 'enabled'))
            AND (e.stream_id IS NOT NULL OR c.backchannel_logout_uri IS NOT NULL)
            AND NOT EXISTS (SELECT 1 FROM security_events p
                             WHERE p.status = 'pending' AND p.receiver = e.receiver AND p.subject = e.subject AND p.id < e.id)
          ORDER BY e.next_attempt_at, e.id
          LIMIT $1
            FOR UPDATE OF e SKIP LOCKED)
       UPDATE security_events e
          SET attempts = e.attempts + 1, next_attempt_at = clock_timestamp() + $2 * interval '1 millisecond'
         FROM due
        WHERE e.id = due.id
       RETURNING e.id, e.jti, e.stream_id, e.event_type, e.claims, e.created_at, e.attempts, due.url, due.authorization_header, due.aud`,
      [limit, leaseMs])
    return rows.map((row) => ({
      ...toEvent(row),
      id: row.id,
      attempts: row.attempts,
      channel: row.stream_id === null ? 'backchannel' : 'ssf',
      url: row.url,
      authorization: row.authorization_header,
      aud: row.aud
    }))
  }

  /** The receiver took it. False when it was no longer pending (acknowledged meanwhile). */
  async delivered (db: Queryable, id: string): Promise<void> {
    await db.query(`UPDATE security_events SET status = 'delivered', done_at = clock_timestamp(), last_error = NULL
                     WHERE id = $1 AND status = 'pending'`, [id])
  }

  /** The receiver refused it for good (RFC 8935 §2.3: a 400 with an error code). */
  async failed (db: Queryable, id: string, error: string): Promise<void> {
    await db.query(`UPDATE security_events SET status = 'failed', done_at = clock_timestamp(), last_error = left($2, 200)
                     WHERE id = $1 AND status = 'pending'`, [id, error])
  }

  /** Try again after `delayMs` (the receiver was down, slow or answered 5xx). */
  async retry (db: Queryable, id: string, delayMs: number, error: string): Promise<void> {
    await db.query(`UPDATE security_events SET next_attempt_at = clock_timestamp() + $2 * interval '1 millisecond', last_error = left($3, 200)
                     WHERE id = $1 AND status = 'pending'`, [id, delayMs, error])
  }

  /** Gives up on pending events older than `maxAgeS` (a receiver gone for good); how many. */
  async expire (db: Queryable, maxAgeS: number, limit: number): Promise<number> {
    const { rowCount } = await db.query(
      `UPDATE security_events SET status = 'failed', done_at = clock_timestamp(), last_error = 'expired'
        WHERE id IN (SELECT id FROM security_events
                      WHERE status = 'pending' AND created_at < clock_timestamp() - $1 * interval '1 second'
                      LIMIT $2 FOR UPDATE SKIP LOCKED)`, [maxAgeS, limit]) as { rowCount: number | null }
    return rowCount ?? 0
  }

  /** Deletes delivered and failed events older than `retentionS`; how many. */
  async purge (db: Queryable, retentionS: number, limit: number): Promise<number> {
    const { rowCount } = await db.query(
      `DELETE FROM security_events
        WHERE id IN (SELECT id FROM security_events
                      WHERE status <> 'pending' AND done_at < clock_timestamp() - $1 * interval '1 second'
                      LIMIT $2 FOR UPDATE SKIP LOCKED)`, [retentionS, limit]) as { rowCount: number | null }
    return rowCount ?? 0
  }

  /** For /metrics: pending events, and the age of the oldest (seconds). */
  async backlog (db: Queryable): Promise<{ pending: number, oldestAge: number }> {
    const { rows } = await db.query(
      `SELECT count(*)::int AS pending,
              coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest_age
         FROM security_events WHERE status = 'pending'`)
    return { pending: rows[0].pending, oldestAge: rows[0].oldest_age }
  }

  // Streams.

  /**
   * Locks the client's row until COMMIT: false when it is gone. A deletion waits for the
   * change, or was seen by it; and one client's stream changes run one at a time (the cap).
   */
  async holdClient (db: Queryable, clientId: string): Promise<boolean> {
    const { rows } = await db.query('SELECT 1 FROM clients WHERE id = $1 FOR NO KEY UPDATE', [clientId])
    return rows.length === 1
  }

  async insertStream (db: Queryable, clientId: string, fields: StreamFields): Promise<string> {
    const { rows } = await db.query(
      `INSERT INTO ssf_streams (client_id, delivery_method, endpoint_url, authorization_header, events_requested, events_delivered, description)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [clientId, fields.deliveryMethod, fields.endpointUrl, fields.authorizationHeader, fields.eventsRequested,
        fields.eventsDelivered, fields.description])
    return rows[0].id
  }

  /** The client's streams (one, with `streamId`), oldest first. */
  async streams (db: Queryable, clientId: string, streamId?: string, lock = false): Promise<StreamRow[]> {
    const { rows } = await db.query(
      `SELECT ${STREAM_COLUMNS} FROM ssf_streams s JOIN clients c ON c.id = s.client_id
        WHERE s.client_id = $1 AND ($2::uuid IS NULL OR s.id = $2)
        ORDER BY s.created_at, s.id ${lock ? 'FOR UPDATE OF s' : ''}`, [clientId, streamId ?? null])
    return rows.map(toStream)
  }

  async updateStream (db: Queryable, streamId: string, fields: StreamFields): Promise<void> {
    await db.query(
      `UPDATE ssf_streams SET delivery_method = $2, endpoint_url = $3, authorization_header = $4, events_requested = $5,
              events_delivered = $6, description = $7, updated_at = clock_timestamp()
        WHERE id = $1`,
      [streamId, fields.deliveryMethod, fields.endpointUrl, fields.authorizationHeader, fields.eventsRequested,
        fields.eventsDelivered, fields.description])
  }

  async setStatus (db: Queryable, streamId: string, status: StreamRow['status'], reason: string | null): Promise<void> {
    await db.query('UPDATE ssf_streams SET status = $2, status_reason = $3, updated_at = clock_timestamp() WHERE id = $1',
      [streamId, status, reason])
    // A disabled stream transmits nothing (SSF 1.0 §8.1.2.1): what it held is dropped.
    if (status === 'disabled') {
      await db.query("DELETE FROM security_events WHERE stream_id = $1 AND status = 'pending'", [streamId])
    }
  }

  async deleteStream (db: Queryable, clientId: string, streamId: string): Promise<boolean> {
    const { rowCount } = await db.query('DELETE FROM ssf_streams WHERE id = $1 AND client_id = $2', [streamId, clientId]) as { rowCount: number | null }
    return rowCount === 1
  }

  // Poll delivery (RFC 8936).

  /** Marks the stream's events named by jti delivered (acknowledged). */
  async acknowledge (db: Queryable, streamId: string, jtis: string[]): Promise<void> {
    if (jtis.length === 0) return
    await db.query(`UPDATE security_events SET status = 'delivered', done_at = clock_timestamp(), last_error = NULL
                     WHERE stream_id = $1 AND jti = ANY ($2::uuid[]) AND status = 'pending'`, [streamId, jtis])
  }

  /** Marks the stream's events the receiver reported errors for failed (RFC 8936 §2.4.3). */
  async reject (db: Queryable, streamId: string, errors: Array<{ jti: string, error: string }>): Promise<void> {
    if (errors.length === 0) return
    await db.query(
      `UPDATE security_events e SET status = 'failed', done_at = clock_timestamp(), last_error = left(x.error, 200)
         FROM unnest($2::uuid[], $3::text[]) AS x(jti, error)
        WHERE e.stream_id = $1 AND e.jti = x.jti AND e.status = 'pending'`,
      [streamId, errors.map((e) => e.jti), errors.map((e) => e.error)])
  }

  /**
   * Up to `limit` of the stream's pending events, oldest first, leased for `leaseMs`: not
   * acknowledged by then, they are returned by a later poll again.
   */
  async claimForPoll (db: Queryable, streamId: string, limit: number, leaseMs: number): Promise<OutgoingEvent[]> {
    const { rows } = await db.query(
      `WITH due AS (SELECT id FROM security_events
                     WHERE stream_id = $1 AND status = 'pending' AND next_attempt_at <= clock_timestamp()
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
       UPDATE security_events e SET attempts = e.attempts + 1, next_attempt_at = clock_timestamp() + $3 * interval '1 millisecond'
         FROM due WHERE e.id = due.id
       RETURNING e.id, e.jti, e.event_type, e.claims, e.created_at`, [streamId, limit, leaseMs])
    rows.sort((a, b) => Number(a.id) - Number(b.id))
    return rows.map(toEvent)
  }

  /** Whether the stream has pending events due now. */
  async hasDue (db: Queryable, streamId: string): Promise<boolean> {
    const { rows } = await db.query(
      `SELECT EXISTS (SELECT 1 FROM security_events
                       WHERE stream_id = $1 AND status = 'pending' AND next_attempt_at <= clock_timestamp()) AS due`, [streamId])
    return rows[0].due === true
  }
}
