import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PARTITION_SPAN_MS } from '../../hub/metrics/partitions.js';
import { MetricsRetention, type RetentionConfig } from '../../hub/metrics/retention.js';
import { MetricsService } from '../../hub/metrics/service.js';
import { createNode, testHub, type TestHub } from './builders.js';

// Downsampling and retention on a real SQLite, with time driven by the test: raw samples roll up
// into 1-minute and 1-hour rows, each tier goes when it is older than configured, in chunks.

const t0 = Date.parse('2025-03-01T10:00:00Z');
const HOUR = 3_600_000;
const DAY = 86_400_000;

let hub: TestHub;
let now: number;
let metrics: MetricsService;
let retention: MetricsRetention;

function start(config: RetentionConfig): void {
  metrics = new MetricsService({ db: hub.db, store: hub.store, retention: config, log: hub.log, now: () => now, ingest: { maxSampleAgeMs: Infinity } });
  // Small chunks, so that every pass is cut into many transactions.
  retention = new MetricsRetention(hub.db, metrics.partitions, metrics.registry, config, hub.log, () => now, { chunkRows: 50 });
}

/** Three hours of a counter at 0.5 s/s (reset to zero at 11:30, the container recreated) and a gauge, every 15 s. */
function ingestThreeHours(): void {
  let cpu = 0;
  for (let at = t0; at < t0 + 3 * HOUR; at += 15_000) {
    cpu = at === t0 + 1.5 * HOUR ? 0 : cpu + 7_500;
    now = at;
    metrics.ingest.ingest('edge-1', { times: [at], keyframe: true, node: { mem_avail: [at < t0 + HOUR ? 1_000 : 3_000] }, containers: [{ ns: 'default', pod: 'web', c: 'app', id: 'aaaaaaaaaaaa', s: { cpu: [cpu] } }] });
  }
  metrics.ingest.flush();
}

const rows = (name: string) => hub.db.prepare(`SELECT * FROM ${name} ORDER BY series, ts`).all() as { series: number; ts: number; cnt: number; sum: number; min: number; max: number; last: number; inc: number }[];

beforeEach(() => {
  hub = testHub();
  createNode(hub.store, { name: 'edge-1' });
  now = t0;
});

afterEach(async () => {
  await metrics.stop();
  hub.db.close();
});

describe('metrics retention', () => {
  it('rolls closed raw partitions up into 1-minute and 1-hour rows', async () => {
    start({ raw: 6 * HOUR, '1m': 7 * DAY, '1h': 90 * DAY });
    ingestThreeHours();
    now = t0 + 3 * HOUR + 5 * 60_000;
    // The last hour closed five minutes ago: too recent, late samples could still come for it.
    expect((await retention.runOnce()).rolledUp).toBe(2);
    now = t0 + 3 * HOUR + 11 * 60_000;
    expect((await retention.runOnce()).rolledUp).toBe(1);
    expect(metrics.partitions.list('raw').every((p) => p.rolled)).toBe(true);

    const cpu = metrics.registry.find('edge-1', 'default', 'web', 'app', 'cpu')!;
    const mem = metrics.registry.find('edge-1', '', '', '', 'mem_avail')!;
    const minutes = rows(metrics.partitions.list('1m')[0]!.name);
    expect(minutes.filter((r) => r.series === cpu)).toHaveLength(180);
    expect(minutes.filter((r) => r.series === mem)).toHaveLength(180);
    const minute = minutes.find((r) => r.series === cpu && r.ts === t0 + 10 * 60_000)!;
    expect(minute).toMatchObject({ cnt: 4, inc: 30, last: 330 });
    // Across the reset the increase counts from zero, as Prometheus' increase() does.
    expect(minutes.find((r) => r.series === cpu && r.ts === t0 + 90 * 60_000)!.inc).toBeCloseTo(0 + 7.5 * 3);
    const hours = rows(metrics.partitions.list('1h')[0]!.name);
    expect(hours.filter((r) => r.series === mem).map((r) => [r.ts, r.min, r.max, r.sum / r.cnt])).toEqual([
      [t0, 1_000, 1_000, 1_000],
      [t0 + HOUR, 3_000, 3_000, 3_000],
      [t0 + 2 * HOUR, 3_000, 3_000, 3_000],
    ]);
    // 239 increments in the first hour (its first sample has none before it), one lost to the reset in the second.
    expect(hours.filter((r) => r.series === cpu).map((r) => r.inc)).toEqual([1_792.5, 1_792.5, 1_800]);
    // Rolling up again changes nothing (a restart in the middle of a pass redoes it).
    expect((await retention.runOnce()).rolledUp).toBe(0);
  });

  it('drops each tier once it is older than configured, and queries go on from the coarser tiers', async () => {
    start({ raw: 2 * HOUR, '1m': DAY, '1h': 3 * DAY });
    ingestThreeHours();
    now = t0 + 4 * HOUR;
    const first = await retention.runOnce();
    // Raw samples older than two hours are gone: two whole hourly partitions.
    expect(first).toMatchObject({ rolledUp: 3, dropped: 2 });
    expect(metrics.partitions.list('raw').map((p) => p.start)).toEqual([t0 + 2 * HOUR]);
    // The first two hours come from the 1-minute rows now, the last one still from raw samples.
    const [rate] = metrics.query.range({ name: 'container_cpu_usage_seconds_total', from: t0, to: t0 + 3 * HOUR, stepMs: HOUR, fn: 'rate' });
    expect(rate!.values.map(([t]) => t * 1000)).toEqual([t0, t0 + HOUR, t0 + 2 * HOUR]);
    expect(rate!.values[0]![1]).toBeCloseTo(0.5, 1);
    expect(rate!.values[1]![1]).toBeCloseTo(0.5, 1);
    expect(rate!.values[2]![1]).toBeCloseTo(0.5, 2);

    // Two days on: the raw samples and the 1-minute day are gone; 1-hour rows remain.
    now = t0 + 2 * DAY;
    await retention.runOnce();
    expect(metrics.partitions.list('raw')).toEqual([]);
    expect(metrics.partitions.list('1m')).toEqual([]);
    const [memory] = metrics.query.range({ name: 'node_memory_MemAvailable_bytes', from: t0, to: t0 + 3 * HOUR, stepMs: HOUR, fn: 'avg' });
    expect(memory!.values).toEqual([
      [t0 / 1000, 1_000],
      [(t0 + HOUR) / 1000, 3_000],
      [(t0 + 2 * HOUR) / 1000, 3_000],
    ]);
    expect(hub.db.prepare("SELECT count(*) FROM sqlite_master WHERE name LIKE 'metric_raw_%' OR name LIKE 'metric_1m_%'").pluck().get()).toBe(0);

    // Past the 1-hour retention (and its partition's span): everything, series included, is gone.
    const hourPartition = metrics.partitions.list('1h')[0]!;
    now = hourPartition.end + 3 * DAY;
    expect(metrics.query.range({ name: 'node_memory_MemAvailable_bytes', from: t0, to: t0 + 3 * HOUR, stepMs: HOUR, fn: 'avg' })[0]!.values).toEqual([]);
    await retention.runOnce();
    expect(metrics.partitions.list('1h')).toEqual([]);
    now = t0 + 3 * DAY + PARTITION_SPAN_MS['1h'] + DAY;
    expect((await retention.runOnce()).forgotten).toBe(2);
    expect(metrics.registry.size).toBe(0);
    expect(hub.db.prepare('SELECT count(*) FROM metric_series').pluck().get()).toBe(0);
  });

  it('does its work in chunks, serving I/O in between', async () => {
    start({ raw: 2 * HOUR, '1m': DAY, '1h': 3 * DAY });
    ingestThreeHours();
    now = t0 + 4 * HOUR;
    let turns = 0;
    let running = true;
    const spin = () => {
      turns++;
      if (running) setImmediate(spin);
    };
    setImmediate(spin);
    await retention.runOnce();
    running = false;
    // 2,160 samples of two series in chunks of about 50 rows: dozens of turns of the event loop.
    expect(turns).toBeGreaterThan(20);
  });
});
