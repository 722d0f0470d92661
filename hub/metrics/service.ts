import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import type { Topics } from '../../shared/protocol/topics.js';
import type { MessageBus } from '../broker/bus.js';
import type { ObjectStore } from '../store/objects.js';
import { exposition } from './exposition.js';
import { MetricsIngest, type IngestOptions } from './ingest.js';
import { Partitions } from './partitions.js';
import { MetricsQuery } from './query.js';
import { MetricsRetention, type RetentionConfig } from './retention.js';
import type { HubSelfMetrics } from './self.js';
import { SeriesRegistry } from './series.js';
import { UsageReader } from './usage.js';

export interface MetricsServiceOptions {
  db: Database;
  store: ObjectStore;
  retention: RetentionConfig;
  /** How often rollups and pruning run (they run in chunks; default a minute). */
  maintenanceIntervalMs?: number;
  ingest?: Partial<IngestOptions>;
  self?: HubSelfMetrics;
  log: Logger;
  now?: () => number;
}

/**
 * The hub's metrics store, assembled: devices' batches in (ingest), kept in SQLite partitions
 * with downsampling and retention in the background, read back as range queries, `top` usage
 * and the Prometheus exposition.
 */
export class MetricsService {
  readonly registry: SeriesRegistry;
  readonly partitions: Partitions;
  readonly ingest: MetricsIngest;
  readonly retention: MetricsRetention;
  readonly query: MetricsQuery;
  readonly usage: UsageReader;
  private readonly nodes = new Set<string>();
  private readonly unwatch: () => void;
  private readonly now: () => number;

  constructor(private readonly opts: MetricsServiceOptions) {
    const { db, store, log } = opts;
    this.now = opts.now ?? Date.now;
    this.registry = new SeriesRegistry(db);
    this.partitions = new Partitions(db);
    for (const node of store.list('Node').items) this.nodes.add(node.metadata.name);
    this.unwatch = store.watch({ kind: 'Node' }, (e) => {
      if (e.type === 'DELETED') this.nodes.delete(e.object.metadata.name);
      else this.nodes.add(e.object.metadata.name);
    });
    this.ingest = new MetricsIngest(db, this.registry, this.partitions, (name) => this.nodes.has(name), log, opts.ingest, this.now);
    this.retention = new MetricsRetention(db, this.partitions, this.registry, opts.retention, log, this.now);
    this.query = new MetricsQuery(db, this.partitions, this.registry, opts.retention, this.now, () => this.ingest.flush());
    this.usage = new UsageReader(this.registry, this.ingest.nodeSeenAt);
    this.restoreNewest();
  }

  /** Subscribes to the devices' metrics and starts the background maintenance. */
  async start(bus: MessageBus, topics: Topics): Promise<void> {
    await this.ingest.start(bus, topics);
    this.retention.start(this.opts.maintenanceIntervalMs ?? 60_000);
  }

  async stop(): Promise<void> {
    this.unwatch();
    await this.retention.stop();
    this.ingest.stop();
  }

  /** The /metrics body: the devices' series, then the hub's own. */
  exposition(): Generator<string> {
    return exposition(this.opts.self?.families() ?? [], this.registry, this.ingest, this.now());
  }

  /**
   * After a restart: the newest sample of every series from the newest raw partitions, so that
   * /metrics goes on from where it was (never backwards) and a series can tell stale from new.
   */
  private restoreNewest(): void {
    const raw = this.partitions.list('raw');
    for (const p of raw.slice(-2)) {
      const rows = this.opts.db.prepare(`SELECT series, max(ts), value FROM ${p.name} GROUP BY series`).raw().all() as [number, number, number][];
      for (const [series, ts, value] of rows) {
        this.registry.restore(series, ts, value);
        const node = this.registry.info(series)?.node;
        if (node) this.ingest.nodeSeenAt.set(node, Math.max(this.ingest.nodeSeenAt.get(node) ?? 0, ts));
      }
    }
  }
}
