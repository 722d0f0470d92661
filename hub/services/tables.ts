import type { Database } from 'better-sqlite3';

/**
 * The Services' messages last published (hub/services/publisher.ts): one row per Service and per
 * endpoint, so that a restarted hub republishes each with the generation devices already have.
 */
export const SERVICE_MESSAGES_MIGRATION = `
CREATE TABLE service_messages (
  id TEXT PRIMARY KEY,
  generation INTEGER NOT NULL,
  message TEXT NOT NULL
);
`;

export interface ServiceMessageRow {
  /** `s/{namespace}/{name}` for a Service, `e/{namespace}/{service}/{pod}` for an endpoint. */
  id: string;
  generation: number;
  /** The announcement last published, without its generation (JSON). */
  message: string;
}

export class ServiceMessageTable {
  private readonly selectAll;
  private readonly upsert;
  private readonly remove;

  constructor(db: Database) {
    this.selectAll = db.prepare<[], ServiceMessageRow>('SELECT id, generation, message FROM service_messages');
    this.upsert = db.prepare('INSERT INTO service_messages (id, generation, message) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET generation = excluded.generation, message = excluded.message');
    this.remove = db.prepare('DELETE FROM service_messages WHERE id = ?');
  }

  rows(): ServiceMessageRow[] {
    return this.selectAll.all();
  }

  write(row: ServiceMessageRow): void {
    this.upsert.run(row.id, row.generation, row.message);
  }

  delete(id: string): void {
    this.remove.run(id);
  }
}
