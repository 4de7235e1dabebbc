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

export class AuditRepository {
  constructor (private readonly db: Db) {}

  async insert (event: AuditRecord, client: Queryable = this.db): Promise<void> {
    await client.query(
      'INSERT INTO audit_events (type, actor_id, subject_id, ip, detail) VALUES ($1, $2, $3, $4, $5)',
      [event.type, event.actorId ?? null, event.subjectId ?? null, event.ip ?? null, event.detail ?? {}])
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
}
