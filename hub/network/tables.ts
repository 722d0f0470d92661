import type { Database } from 'better-sqlite3';
import type { AllocationRow } from './ipam.js';

/**
 * The pod network's tables beside the object store: the IPAM's allocations (one row per block:
 * its latest holder, and when that node let it go), and the peer messages last published (so a
 * restarted hub keeps each peer's generation, and republishes what devices already have).
 */
export const POD_NETWORK_MIGRATION = `
CREATE TABLE pod_cidrs (
  cidr TEXT PRIMARY KEY,
  node TEXT NOT NULL,
  allocated_at TEXT NOT NULL,
  released_at TEXT
);
CREATE UNIQUE INDEX pod_cidrs_held ON pod_cidrs (node) WHERE released_at IS NULL;
CREATE TABLE network_peers (
  node TEXT PRIMARY KEY,
  generation INTEGER NOT NULL,
  message TEXT NOT NULL
);
`;

interface CidrRowText {
  cidr: string;
  node: string;
  allocated_at: string;
  released_at: string | null;
}

/** The IPAM's rows. */
export class PodCidrTable {
  private readonly selectAll;
  private readonly upsert;

  constructor(db: Database) {
    this.selectAll = db.prepare<[], CidrRowText>('SELECT cidr, node, allocated_at, released_at FROM pod_cidrs');
    this.upsert = db.prepare('INSERT INTO pod_cidrs (cidr, node, allocated_at, released_at) VALUES (?, ?, ?, ?) ON CONFLICT(cidr) DO UPDATE SET node = excluded.node, allocated_at = excluded.allocated_at, released_at = excluded.released_at');
  }

  rows(): AllocationRow[] {
    return this.selectAll.all().map((r) => ({ cidr: r.cidr, node: r.node, allocatedAt: Date.parse(r.allocated_at), ...(r.released_at ? { releasedAt: Date.parse(r.released_at) } : {}) }));
  }

  write(row: AllocationRow): void {
    this.upsert.run(row.cidr, row.node, new Date(row.allocatedAt).toISOString(), row.releasedAt === undefined ? null : new Date(row.releasedAt).toISOString());
  }
}

export interface PeerRow {
  node: string;
  generation: number;
  /** The announcement last published without its generation (JSON); '' once cleared. */
  message: string;
}

/** The peer messages last published. */
export class PeerTable {
  private readonly selectAll;
  private readonly upsert;
  private readonly remove;

  constructor(db: Database) {
    this.selectAll = db.prepare<[], PeerRow>('SELECT node, generation, message FROM network_peers');
    this.upsert = db.prepare('INSERT INTO network_peers (node, generation, message) VALUES (?, ?, ?) ON CONFLICT(node) DO UPDATE SET generation = excluded.generation, message = excluded.message');
    this.remove = db.prepare('DELETE FROM network_peers WHERE node = ?');
  }

  rows(): PeerRow[] {
    return this.selectAll.all();
  }

  write(row: PeerRow): void {
    this.upsert.run(row.node, row.generation, row.message);
  }

  delete(node: string): void {
    this.remove.run(node);
  }
}
