// Security events in PostgreSQL: rows of audit_events as AuditEvent objects.
import type { AuditEvent } from '../../../schemas/audit.js'
import type { Db, Queryable } from '../../external/db.js'
import type { AuditRecord } from './audit-service.js'

function toEvent (row: any): AuditEvent {
  return {
    id: String(row.id),
    at: row.at.toISOString(),
    type: row.type,
    actorId: row.actor_id,
    subjectId: row.subject_id,
    ip: row.ip,
    detail: row.detail
  }
}

/**
 * A value jsonb accepts. JSON.stringify writes a lone surrogate as `\ud800`, which jsonb
 * refuses (the whole INSERT fails), and jsonb has no `\u0000`: both become U+FFFD, in
 * keys too. What an attacker typed is still recorded, as near as it can be.
 */
// A high surrogate not followed by a low one, a low one not preceded by a high one, NUL.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\u0000/g

export function jsonbSafe (value: unknown): unknown {
  if (typeof value === 'string') return value.replace(UNSAFE, '\uFFFD')
  if (Array.isArray(value)) return value.map(jsonbSafe)
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [jsonbSafe(k), jsonbSafe(v)]))
  }
  return value
}

export class AuditRepository {
  constructor (private readonly db: Db) {}

  /**
   * Inserts an event, on `client` when it belongs to a transaction. A `subjectUsername`
   * is resolved to its user's id in the same statement (null when there is no such user).
   */
  async insert (event: AuditRecord, client: Queryable = this.db): Promise<void> {
    await client.query(
      `INSERT INTO audit_events (type, actor_id, subject_id, ip, detail)
       VALUES ($1, $2, coalesce($3, (SELECT id FROM users WHERE lower(username) = lower($6))), $4, $5)`,
      [event.type, event.actorId ?? null, event.subjectId ?? null, event.ip == null ? null : jsonbSafe(event.ip),
        jsonbSafe(event.detail ?? {}), event.subjectUsername ?? null])
  }

  /** Up to `limit` events with an id below `beforeId` (all when null), newest first. */
  async list (beforeId: string | null, userId: string | null, limit: number): Promise<AuditEvent[]> {
    const { rows } = await this.db.query(
      `SELECT id, at, type, actor_id, subject_id, ip, detail FROM audit_events
        WHERE ($1::bigint IS NULL OR id < $1::bigint)
          AND ($2::uuid IS NULL OR actor_id = $2::uuid OR subject_id = $2::uuid)
        ORDER BY id DESC LIMIT $3`,
      [beforeId, userId, limit])
    return rows.map(toEvent)
  }

  /**
   * Deletes up to `limit` events older than `days` days; how many. One short statement
   * on the `at` index, so a large backlog goes in many small batches, each well inside
   * the statement timeout; SKIP LOCKED lets several instances purge side by side.
   */
  async deleteOlderThan (days: number, limit: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM audit_events WHERE id IN (
         SELECT id FROM audit_events WHERE at < now() - make_interval(days => $1)
          LIMIT $2 FOR UPDATE SKIP LOCKED)`, [days, limit])
    return rowCount ?? 0
  }
}
