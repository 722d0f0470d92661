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
        this.db.transaction(() => this.partitions.drop(p))();
        dropped++;
      }
    }
    const forgotten = await this.forgetSeries(now);
    if (rolledUp || dropped || forgotten) this.log.info({ rolledUp, dropped, forgotten }, 'metrics downsampled and pruned');
    return { rolledUp, dropped, forgotten };
  }

  private async rollUp(p: Partition): Promise<void> {
    const read = this.db.prepare(`SELECT series, ts, value FROM ${p.name} WHERE (series, ts) > (?, ?) ORDER BY series, ts LIMIT ?`).raw();
    const before = this.partitions.find('raw', p.start - 1);
    const lastBefore = before ? this.db.prepare(`SELECT value FROM ${before.name} WHERE series = ? ORDER BY ts DESC LIMIT 1`).pluck() : undefined;
    const rollup = new PartitionRollup(p, this.partitions, (series) => this.registry.info(series)?.kind === 'counter', (series) => lastBefore?.get(series) as number | undefined, (series, ts) => this.touchSeries.run(ts, series));
    const take = this.db.transaction((rows: [number, number, number][]) => {
      for (const [series, ts, value] of rows) rollup.add(series, ts, value);
    });
    let after: [number, number] = [-1, -1];
    for (;;) {
      const rows = read.all(after[0], after[1], this.opts.chunkRows) as [number, number, number][];
      if (rows.length === 0) break;
      take(rows);
      after = [rows[rows.length - 1]![0], rows[rows.length - 1]![1]];
      await yieldToIo();
    }
    this.db.transaction(() => rollup.finish())();
    this.partitions.markRolled(p);
  }

  /** Deletes a partition's rows a chunk at a time, so that dropping it is quick. */
  private async empty(p: Partition): Promise<void> {
    const boundary = this.db.prepare(`SELECT series, ts FROM ${p.name} ORDER BY series, ts LIMIT 1 OFFSET ?`).raw();
    const deleteBelow = this.db.prepare(`DELETE FROM ${p.name} WHERE (series, ts) < (?, ?)`);
    for (;;) {
      const key = boundary.get(this.opts.chunkRows) as [number, number] | undefined;
      if (!key) return;
      deleteBelow.run(key[0], key[1]);
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

/**
 * One raw partition's rollup, fed its samples in (series, ts) order, a chunk at a time: each
 * 1-minute row is written when the next minute (or series) begins, the partition's one 1-hour
 * row when the series ends.
 */
class PartitionRollup {
  private series = -1;
  private counter = false;
  private prev: number | undefined;
  private lastTs = 0;
  private minute: RollupRow | undefined;
  private hour: RollupRow | undefined;

  constructor(
    private readonly p: Partition,
    private readonly partitions: Partitions,
    private readonly isCounter: (series: number) => boolean,
    private readonly valueBefore: (series: number) => number | undefined,
    private readonly touch: (series: number, ts: number) => void,
  ) {}

  add(series: number, ts: number, value: number): void {
    if (series !== this.series) {
      this.finish();
      this.series = series;
      this.counter = this.isCounter(series);
      this.prev = this.counter ? this.valueBefore(series) : undefined;
      this.hour = empty(series, Math.floor(this.p.start / RESOLUTION_MS['1h']) * RESOLUTION_MS['1h']);
    }
    const inc = this.counter && this.prev !== undefined ? (value >= this.prev ? value - this.prev : value) : 0;
    this.prev = value;
    this.lastTs = ts;
    const start = Math.floor(ts / RESOLUTION_MS['1m']) * RESOLUTION_MS['1m'];
    if (this.minute?.ts !== start) {
      if (this.minute) this.write('1m', this.minute);
      this.minute = empty(series, start);
    }
    for (const row of [this.minute, this.hour!]) {
      row.cnt++;
      row.sum += value;
      row.min = Math.min(row.min, value);
      row.max = Math.max(row.max, value);
      row.last = value;
      row.inc += inc;
    }
  }

  /** Writes what the current series still holds. */
  finish(): void {
    if (this.series < 0) return;
    if (this.minute) this.write('1m', this.minute);
    if (this.hour && this.hour.cnt > 0) this.write('1h', this.hour);
    this.touch(this.series, this.lastTs);
    this.minute = undefined;
    this.hour = undefined;
    this.series = -1;
  }

  private write(tier: TierName, row: RollupRow): void {
    this.partitions.rollupWriter(this.partitions.ensure(tier, row.ts)).run(row);
  }
}

function empty(series: number, ts: number): RollupRow {
  return { series, ts, cnt: 0, sum: 0, min: Infinity, max: -Infinity, last: 0, inc: 0 };
}
