import type { Database, Statement } from 'better-sqlite3';
import type { Logger } from 'pino';
import { PARTITION_SPAN_MS, RESOLUTION_MS, TIERS, type Partition, type Partitions, type RollupRow, type TierName } from './partitions.js';
import type { SeriesRegistry } from './series.js';

/** How long each tier is kept (ms). */
export interface RetentionConfig {
  raw: number;
  '1m': number;
  '1h': number;
}

export const RETENTION_DEFAULTS: RetentionConfig = { raw: 6 * 3_600_000, '1m': 7 * 86_400_000, '1h': 90 * 86_400_000 };

export interface RetentionOptions {
  /** Rows read or deleted per transaction: the longest the API waits on this work. */
  chunkRows: number;
  /** A raw partition is rolled up this long after its span ends (late samples are refused sooner: ingest.ts). */
  rollupDelayMs: number;
}

const DEFAULTS: RetentionOptions = { chunkRows: 20_000, rollupDelayMs: 10 * 60_000 };

const yieldToIo = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Downsampling and retention, in the background: every closed raw partition (one hour) is rolled
 * up into 1-minute and 1-hour rows (count, sum, min, max, last, and for counters the increase,
 * a reset counted as a restart from zero, as Prometheus' increase() does); partitions whose whole
 * span is older than their tier's retention are emptied and dropped; series with no data left in
 * any tier are forgotten. All of it in chunks of `chunkRows`, each its own transaction, with I/O
 * served in between. Time comes from `now`, so a test can drive it.
 */
export class MetricsRetention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly opts: RetentionOptions;
  private readonly touchSeries: Statement;
  private readonly deleteSeries: Statement;

  constructor(
    private readonly db: Database,
    private readonly partitions: Partitions,
    private readonly registry: SeriesRegistry,
    private readonly retention: RetentionConfig,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    opts: Partial<RetentionOptions> = {},
  ) {
    this.opts = { ...DEFAULTS, ...opts };
    this.touchSeries = db.prepare('UPDATE metric_series SET last_seen = max(last_seen, ?) WHERE id = ?');
    this.deleteSeries = db.prepare('DELETE FROM metric_series WHERE id = ?');
  }

  start(intervalMs: number): void {
    const run = () => {
      if (!this.running) this.running = this.runOnce().catch((err) => this.log.error({ err }, 'metrics retention failed')).finally(() => (this.running = undefined));
    };
    this.timer = setInterval(run, intervalMs);
    this.timer.unref();
    run();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One pass: roll up what is closed, drop what is expired, forget series left without data. */
  async runOnce(): Promise<{ rolledUp: number; dropped: number; forgotten: number }> {
    let rolledUp = 0;
    let dropped = 0;
    const now = this.now();
    for (const p of [...this.partitions.list('raw')]) {
      if (p.rolled || now < p.end + this.opts.rollupDelayMs) continue;
      await this.rollUp(p);
      rolledUp++;
    }
    for (const tier of TIERS) {
      for (const p of [...this.partitions.list(tier)]) {
        if (p.end > now - this.retention[tier] || (tier === 'raw' && !p.rolled)) continue;
        await this.empty(p);
        this.partitions.drop(p);
        dropped++;
      }
    }
    const forgotten = await this.forgetSeries(now);
    if (rolledUp || dropped || forgotten) this.log.info({ rolledUp, dropped, forgotten }, 'metrics downsampled and pruned');
    return { rolledUp, dropped, forgotten };
  }

  /** The series of a partition in groups holding about `chunkRows` rows each. */
  private chunks(p: Partition): [number, number][] {
    const ids = this.partitions.seriesIn(p);
    if (ids.length === 0) return [];
    const rows = this.db.prepare(`SELECT count(*) FROM ${p.name}`).pluck().get() as number;
    const perChunk = Math.max(1, Math.floor(this.opts.chunkRows / Math.max(1, rows / ids.length)));
    const out: [number, number][] = [];
    for (let i = 0; i < ids.length; i += perChunk) out.push([ids[i]!, ids[Math.min(i + perChunk, ids.length) - 1]!]);
    return out;
  }

  private async rollUp(p: Partition): Promise<void> {
    const read = this.db.prepare(`SELECT series, ts, value FROM ${p.name} WHERE series >= ? AND series <= ? ORDER BY series, ts`).raw();
    const before = this.partitions.find('raw', p.start - 1);
    const lastBefore = before ? this.db.prepare(`SELECT value FROM ${before.name} WHERE series = ? ORDER BY ts DESC LIMIT 1`).pluck() : undefined;
    const write = this.db.transaction((rows: [number, number, number][]) => {
      let i = 0;
      while (i < rows.length) {
        const series = rows[i]![0];
        let j = i;
        while (j < rows.length && rows[j]![0] === series) j++;
        this.rollUpSeries(series, rows.slice(i, j), lastBefore?.get(series) as number | undefined, p);
        i = j;
      }
    });
    for (const [lo, hi] of this.chunks(p)) {
      write(read.all(lo, hi) as [number, number, number][]);
      await yieldToIo();
    }
    this.partitions.markRolled(p);
  }

  /** One series' samples of one raw partition, into 1-minute rows and its one 1-hour row. */
  private rollUpSeries(series: number, samples: [number, number, number][], before: number | undefined, p: Partition): void {
    const counter = this.registry.info(series)?.kind === 'counter';
    const minute = this.partitions.rollupWriter(this.partitions.ensure('1m', p.start));
    let prev = before;
    let bucket: RollupRow | undefined;
    const hour: RollupRow = { series, ts: Math.floor(p.start / RESOLUTION_MS['1h']) * RESOLUTION_MS['1h'], cnt: 0, sum: 0, min: Infinity, max: -Infinity, last: 0, inc: 0 };
    for (const [, ts, value] of samples) {
      const inc = counter && prev !== undefined ? (value >= prev ? value - prev : value) : 0;
      prev = value;
      const start = Math.floor(ts / RESOLUTION_MS['1m']) * RESOLUTION_MS['1m'];
      if (!bucket || bucket.ts !== start) {
        if (bucket) minute.run(bucket);
        bucket = { series, ts: start, cnt: 0, sum: 0, min: Infinity, max: -Infinity, last: 0, inc: 0 };
      }
      for (const row of [bucket, hour]) {
        row.cnt++;
        row.sum += value;
        row.min = Math.min(row.min, value);
        row.max = Math.max(row.max, value);
        row.last = value;
        row.inc += inc;
      }
    }
    if (bucket) minute.run(bucket);
    if (hour.cnt > 0) this.partitions.rollupWriter(this.partitions.ensure('1h', p.start)).run(hour);
    this.touchSeries.run(samples[samples.length - 1]![1], series);
  }

  /** Deletes a partition's rows chunk by chunk, so that dropping it is quick. */
  private async empty(p: Partition): Promise<void> {
    const del = this.db.prepare(`DELETE FROM ${p.name} WHERE series >= ? AND series <= ?`);
    for (const [lo, hi] of this.chunks(p)) {
      del.run(lo, hi);
      await yieldToIo();
    }
  }

  /** Series whose newest sample is older than anything any tier still keeps. */
  private async forgetSeries(now: number): Promise<number> {
    const keptFor = Math.max(...TIERS.map((t) => this.retention[t] + PARTITION_SPAN_MS[t as TierName]));
    const cutoff = now - keptFor;
    const stale = this.db.prepare<[number], number>('SELECT id FROM metric_series WHERE last_seen < ?').pluck().all(cutoff) as number[];
    let forgotten = 0;
    for (let i = 0; i < stale.length; i += this.opts.chunkRows) {
      this.db.transaction(() => {
        for (const id of stale.slice(i, i + this.opts.chunkRows)) {
          // The newest sample in memory may be newer than what was last written to the row.
          if (this.registry.lastTs[id] !== undefined && this.registry.lastTs[id]! >= cutoff) continue;
          this.deleteSeries.run(id);
          this.registry.forget(id);
          forgotten++;
        }
      })();
      await yieldToIo();
    }
    return forgotten;
  }
}
