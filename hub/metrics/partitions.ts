import type { Database, Statement } from 'better-sqlite3';

/**
 * The three tiers of the metrics store, each kept in time partitions: one table per span,
 * aligned to the epoch. Raw samples in hourly tables (so one raw partition is exactly one
 * 1-hour bucket), 1-minute rollups in daily tables, 1-hour rollups in 30-day tables. A query
 * never returns data older than its tier's retention; the table holding it is dropped once all
 * of its span is older than that.
 */
export type TierName = 'raw' | '1m' | '1h';

export const TIERS: readonly TierName[] = ['raw', '1m', '1h'];

export const RESOLUTION_MS: Readonly<Record<TierName, number>> = { raw: 0, '1m': 60_000, '1h': 3_600_000 };
export const PARTITION_SPAN_MS: Readonly<Record<TierName, number>> = { raw: 3_600_000, '1m': 86_400_000, '1h': 30 * 86_400_000 };

export interface Partition {
  tier: TierName;
  start: number;
  end: number;
  name: string;
  rolled: boolean;
}

/** A rollup row: a bucket's count, sum, min, max, last value, and (counters) its increase, resets included. */
export interface RollupRow {
  series: number;
  ts: number;
  cnt: number;
  sum: number;
  min: number;
  max: number;
  last: number;
  inc: number;
}

const RAW_COLUMNS = 'series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (series, ts)';
const ROLLUP_COLUMNS = 'series INTEGER NOT NULL, ts INTEGER NOT NULL, cnt INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, last REAL NOT NULL, inc REAL NOT NULL, PRIMARY KEY (series, ts)';

/** The catalog of partition tables, mirrored in memory, with the statements that write them. */
export class Partitions {
  private readonly byTier = new Map<TierName, Partition[]>();
  private readonly writers = new Map<string, Statement>();
  private readonly insertCatalog: Statement;
  private readonly deleteCatalog: Statement;
  private readonly markRolledStmt: Statement;

  constructor(private readonly db: Database) {
    this.insertCatalog = db.prepare('INSERT INTO metric_partitions (tier, start, end, name, rolled) VALUES (?, ?, ?, ?, 0)');
    this.deleteCatalog = db.prepare('DELETE FROM metric_partitions WHERE name = ?');
    this.markRolledStmt = db.prepare('UPDATE metric_partitions SET rolled = 1 WHERE name = ?');
    this.reload();
  }

  /** Reads the catalog again (after a transaction that made a partition was rolled back). */
  reload(): void {
    for (const tier of TIERS) this.byTier.set(tier, []);
    this.writers.clear();
    const rows = this.db.prepare<[], { tier: TierName; start: number; end: number; name: string; rolled: number }>('SELECT tier, start, end, name, rolled FROM metric_partitions ORDER BY tier, start').all();
    for (const r of rows) this.byTier.get(r.tier)?.push({ tier: r.tier, start: r.start, end: r.end, name: r.name, rolled: r.rolled === 1 });
  }

  /** The partitions of a tier, oldest first. */
  list(tier: TierName): readonly Partition[] {
    return this.byTier.get(tier)!;
  }

  /** Those overlapping [from, to). */
  overlapping(tier: TierName, from: number, to: number): Partition[] {
    return this.list(tier).filter((p) => p.end > from && p.start < to);
  }

  find(tier: TierName, ts: number): Partition | undefined {
    const start = Math.floor(ts / PARTITION_SPAN_MS[tier]) * PARTITION_SPAN_MS[tier];
    return this.list(tier).find((p) => p.start === start);
  }

  /** The partition holding `ts`, created (table and catalog row) when it is the first sample of its span. */
  ensure(tier: TierName, ts: number): Partition {
    const found = this.find(tier, ts);
    if (found) return found;
    const span = PARTITION_SPAN_MS[tier];
    const start = Math.floor(ts / span) * span;
    const partition: Partition = { tier, start, end: start + span, name: `metric_${tier}_${Math.floor(start / 1000)}`, rolled: false };
    this.db.exec(`CREATE TABLE IF NOT EXISTS ${partition.name} (${tier === 'raw' ? RAW_COLUMNS : ROLLUP_COLUMNS}) WITHOUT ROWID`);
    this.insertCatalog.run(tier, start, partition.end, partition.name);
    const list = this.byTier.get(tier)!;
    list.push(partition);
    list.sort((a, b) => a.start - b.start);
    return partition;
  }

  /**
   * The statement inserting `rows` raw samples (series, ts, value, series, ts, value, …) into a
   * raw partition; a sample already there is kept. Several rows a statement: twice the rows a second.
   */
  rawWriter(p: Partition, rows = 1): Statement {
    return this.writer(p, () => `INSERT OR IGNORE INTO ${p.name} (series, ts, value) VALUES ${Array(rows).fill('(?, ?, ?)').join(', ')}`, `:${rows}`);
  }

  /** The statement writing one rollup row; a rerun of a rollup replaces what it wrote before. */
  rollupWriter(p: Partition): Statement {
    return this.writer(p, () => `INSERT OR REPLACE INTO ${p.name} (series, ts, cnt, sum, min, max, last, inc) VALUES (@series, @ts, @cnt, @sum, @min, @max, @last, @inc)`, '');
  }

  private writer(p: Partition, sql: () => string, variant: string): Statement {
    let stmt = this.writers.get(p.name + variant);
    if (!stmt) {
      stmt = this.db.prepare(sql());
      this.writers.set(p.name + variant, stmt);
    }
    return stmt;
  }

  markRolled(p: Partition): void {
    this.markRolledStmt.run(p.name);
    p.rolled = true;
  }

  /** Drops a partition's table (empty it first in chunks: see retention.ts) and forgets it. */
  drop(p: Partition): void {
    for (const key of [...this.writers.keys()]) if (key === p.name || key.startsWith(`${p.name}:`)) this.writers.delete(key);
    this.db.exec(`DROP TABLE IF EXISTS ${p.name}`);
    this.deleteCatalog.run(p.name);
    const list = this.byTier.get(p.tier)!;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
  }

  /** The distinct series of a partition, ascending. */
  seriesIn(p: Partition): number[] {
    return this.db.prepare<[], { series: number }>(`SELECT DISTINCT series FROM ${p.name} ORDER BY series`).pluck().all() as unknown as number[];
  }
}
