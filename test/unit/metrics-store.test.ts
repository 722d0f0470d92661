import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetricsRoutes, parseDurationMs, parseTimeMs } from '../../hub/api/metrics.js';
import { HubError } from '../../hub/api/errors.js';
import { MetricsService } from '../../hub/metrics/service.js';
import { MAX_SERIES_PER_NODE } from '../../hub/metrics/series.js';
import { encodeMetricsBatch, type ContainerSeries, type MetricsBatch } from '../../shared/protocol/metrics.js';
import { createNode, testHub, type TestHub } from './builders.js';

// The hub's metrics store on a real SQLite (in memory): batches in, newest values for /metrics
// and top, range queries over raw samples; bad input counted and dropped.

const t0 = Date.parse('2025-03-01T10:00:00Z');
const RETENTION = { raw: 6 * 3_600_000, '1m': 7 * 86_400_000, '1h': 90 * 86_400_000 };

let hub: TestHub;
let now: number;
let metrics: MetricsService;

function container(pod: string, s: ContainerSeries['s'], id = 'aaaaaaaaaaaa', c = 'app'): ContainerSeries {
  return { ns: 'default', pod, c, id, s };
}

function send(node: string, at: number, parts: { node?: MetricsBatch['node']; containers?: ContainerSeries[]; keyframe?: boolean }): boolean {
  return metrics.ingest.accept(node, encodeMetricsBatch({ times: [at], keyframe: parts.keyframe ?? false, node: parts.node ?? {}, containers: parts.containers ?? [] }));
}

beforeEach(() => {
  hub = testHub();
  now = t0;
  createNode(hub.store, { name: 'edge-1' });
  metrics = new MetricsService({ db: hub.db, store: hub.store, retention: RETENTION, log: hub.log, now: () => now });
});

afterEach(async () => {
  await metrics.stop();
  hub.db.close();
});

describe('metrics ingest', () => {
  it('keeps the newest samples in memory and writes them to the raw partition', () => {
    expect(send('edge-1', t0, { keyframe: true, node: { 'cpu|idle': [10_000], mem_total: [4_000_000_000] }, containers: [container('web', { cpu: [1_500], mem_ws: [40 * 1048576] })] })).toBe(true);
    metrics.ingest.flush();
    const id = metrics.registry.find('edge-1', 'default', 'web', 'app', 'cpu')!;
    expect(metrics.registry.info(id)).toMatchObject({ name: 'container_cpu_usage_seconds_total', kind: 'counter', labelText: '{node="edge-1",namespace="default",pod="web",container="app"}' });
    expect(metrics.registry.lastValue[id]).toBe(1.5);
    const rows = hub.db.prepare(`SELECT series, ts, value FROM ${metrics.partitions.list('raw')[0]!.name} ORDER BY series`).all();
    expect(rows).toHaveLength(4);
    expect(metrics.ingest.samplesIngested).toBe(4);
  });

  it('refuses a sample that is not newer than the newest, so nothing moves backwards', () => {
    send('edge-1', t0 + 15_000, { containers: [container('web', { cpu: [2_000] })] });
    send('edge-1', t0, { containers: [container('web', { cpu: [1_000] })] });
    const id = metrics.registry.find('edge-1', 'default', 'web', 'app', 'cpu')!;
    expect(metrics.registry.lastValue[id]).toBe(2);
    metrics.ingest.flush();
    expect(metrics.ingest.samplesIngested).toBe(1);
  });

  it('moves a batch from a device whose clock is off to the hub\'s time, keeping its spacing', () => {
    const batch = { times: [1_000, 16_000], keyframe: false, node: { 'cpu|idle': [1, 2] }, containers: [] };
    metrics.ingest.accept('edge-1', encodeMetricsBatch(batch));
    const id = metrics.registry.find('edge-1', '', '', '', 'cpu|idle')!;
    expect(metrics.registry.lastTs[id]).toBe(now);
    expect(metrics.registry.prevTs[id]).toBe(now - 15_000);
  });

  it('counts and drops malformed, oversized and unknown-node messages, and ignores unknown codes', () => {
    expect(metrics.ingest.accept('edge-1', Buffer.from('{"v":1,"t":"soon"}'))).toBe(false);
    expect(metrics.ingest.accept('edge-1', Buffer.alloc(200 * 1024, 0x7b))).toBe(false);
    expect(send('ghost', t0, { node: { 'cpu|idle': [1] } })).toBe(false);
    expect(send('edge-1', t0, { node: { 'gpu|0': [5], 'cpu|idle': [1] } })).toBe(true);
    expect(metrics.ingest.dropped).toMatchObject({ malformed: 1, oversized: 1, unknown_node: 1 });
    expect(metrics.ingest.unknownSamples).toBe(1);
    expect(metrics.registry.size).toBe(1);
  });

  it('caps the series one node may have', () => {
    const many: Record<string, (number | null)[]> = {};
    for (let i = 0; i < MAX_SERIES_PER_NODE + 10; i++) many[`temp|${i}|zone`] = [40_000];
    metrics.ingest.ingest('edge-1', { times: [t0], keyframe: true, node: many, containers: [] });
    expect(metrics.registry.size).toBe(MAX_SERIES_PER_NODE);
    expect(metrics.ingest.dropped.series_limit).toBe(10);
  });

  it('answers top from the two newest samples: cores over the window, working set, resets from zero', () => {
    send('edge-1', t0, { containers: [container('web', { cpu: [10_000], mem_ws: [30 * 1048576] })] });
    now = t0 + 10_000;
    send('edge-1', t0 + 10_000, { containers: [container('web', { cpu: [15_000], mem_ws: [31 * 1048576] })] });
    expect(metrics.usage.container('edge-1', 'default', 'web', 'app')).toEqual({ cpuCores: 0.5, memoryBytes: 31 * 1048576, timestamp: t0 + 10_000, windowMs: 10_000 });
    // The container was recreated: its counter starts again from zero.
    now = t0 + 20_000;
    send('edge-1', t0 + 20_000, { containers: [container('web', { cpu: [2_000] }, 'bbbbbbbbbbbb')] });
    expect(metrics.usage.container('edge-1', 'default', 'web', 'app').cpuCores).toBeCloseTo(0.2);
    // A later batch without the series: it did not change, so nothing was used since.
    now = t0 + 30_000;
    send('edge-1', t0 + 30_000, { node: { 'cpu|idle': [5] } });
    expect(metrics.usage.container('edge-1', 'default', 'web', 'app').cpuCores).toBe(0);
  });

  it('answers a node\'s usage: every CPU mode but idle and iowait, memory total minus available', () => {
    send('edge-1', t0, { node: { 'cpu|user': [1_000], 'cpu|system': [500], 'cpu|idle': [9_000], 'cpu|iowait': [100], mem_total: [4_000], mem_avail: [1_000] } });
    send('edge-1', t0 + 10_000, { node: { 'cpu|user': [6_000], 'cpu|system': [3_000], 'cpu|idle': [20_000], 'cpu|iowait': [5_000], mem_avail: [1_500] } });
    const u = metrics.usage.node('edge-1');
    expect(u.cpuCores).toBeCloseTo(0.75);
    expect(u.memoryBytes).toBe(2_500);
  });
});

describe('metrics range queries over raw samples', () => {
  beforeEach(() => {
    // A container burning half a core, sampled every 15 s for 10 minutes; its memory only sent when it changed.
    for (let i = 0; i <= 40; i++) {
      const at = t0 + i * 15_000;
      now = at;
      send('edge-1', at, { keyframe: i % 20 === 0, containers: [container('web', { cpu: [i * 7_500], ...(i % 20 === 0 ? { mem_ws: [64 * 1048576] } : {}) })] });
    }
    metrics.ingest.flush();
    now = t0 + 10 * 60_000;
  });

  it('gives a counter as a per-second rate, step by step', () => {
    const [series] = metrics.query.range({ name: 'container_cpu_usage_seconds_total', pod: 'web', from: t0, to: t0 + 10 * 60_000, stepMs: 60_000, fn: 'rate' });
    expect(series!.metric).toEqual({ __name__: 'container_cpu_usage_seconds_total', node: 'edge-1', namespace: 'default', pod: 'web', container: 'app' });
    expect(series!.values).toHaveLength(10);
    for (const [, v] of series!.values) expect(v).toBeCloseTo(0.5);
  });

  it('carries a gauge left unsent (unchanged) into the steps that follow, within the lookback', () => {
    const [series] = metrics.query.range({ name: 'container_memory_working_set_bytes', pod: 'web', from: t0, to: t0 + 10 * 60_000, stepMs: 60_000, fn: 'avg' });
    expect(series!.values.map(([t]) => t)).toEqual(Array.from({ length: 10 }, (_, i) => (t0 + i * 60_000) / 1000));
    for (const [, v] of series!.values) expect(v).toBe(64 * 1048576);
  });

  it('refuses what it cannot answer, naming the field', () => {
    expect(() => metrics.query.range({ name: 'container_memory_working_set_bytes', from: t0, to: t0 + 60_000, stepMs: 15_000, fn: 'rate' })).toThrow(/^fn: rate applies to counters/);
    expect(() => metrics.query.range({ name: 'container_cpu_usage_seconds_total', from: t0, to: t0 + 86_400_000, stepMs: 1, fn: 'last' })).toThrow(/^step: /);
    expect(() => metrics.query.range({ name: 'container_cpu_usage_seconds_total', from: t0, to: t0, stepMs: 1_000, fn: 'last' })).toThrow(/^to: /);
  });

  it('selects by labels beyond the pod', () => {
    send('edge-1', now, { node: { 'cpu|user': [1], 'cpu|idle': [2] } });
    metrics.ingest.flush();
    expect(metrics.query.select({ name: 'node_cpu_seconds_total', labels: { mode: 'idle' } }).map((s) => s.key)).toEqual(['cpu|idle']);
  });

  it('restores the newest samples after a restart, so nothing moves backwards', async () => {
    await metrics.stop();
    const again = new MetricsService({ db: hub.db, store: hub.store, retention: RETENTION, log: hub.log, now: () => now });
    const id = again.registry.find('edge-1', 'default', 'web', 'app', 'cpu')!;
    expect(again.registry.lastValue[id]).toBe(300);
    expect(again.registry.lastTs[id]).toBe(t0 + 10 * 60_000);
    expect(again.ingest.nodeSeenAt.get('edge-1')).toBe(t0 + 10 * 60_000);
    metrics = again;
  });
});

describe('the metrics API', () => {
  function ask(path: string, query: Record<string, string | string[]>): { status: number; body: Record<string, unknown> } {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) for (const one of [v].flat()) q.append(k, one);
    let answer = { status: 0, body: {} as Record<string, unknown> };
    new MetricsRoutes(metrics, hub.store, () => now).handle('GET', [path], q, (status, body) => (answer = { status, body: body as Record<string, unknown> }));
    return answer;
  }
  const refused = (path: string, query: Record<string, string>) => {
    try {
      ask(path, query);
    } catch (err) {
      return (err as HubError).message;
    }
    throw new Error('accepted');
  };

  it('parses times and durations, naming the field', () => {
    expect(parseDurationMs('step', '90s')).toBe(90_000);
    expect(parseDurationMs('step', '2')).toBe(2_000);
    expect(parseTimeMs('from', '-1h', t0)).toBe(t0 - 3_600_000);
    expect(parseTimeMs('from', String(t0 / 1000), 0)).toBe(t0);
    expect(parseTimeMs('to', '2025-03-01T10:00:00Z', 0)).toBe(t0);
    expect(() => parseTimeMs('from', 'yesterday', 0)).toThrow(/^from: 'yesterday' is not a time/);
  });

  it('answers a range query with label filters, and refuses a bad one naming the field', () => {
    send('edge-1', t0, { node: { 'cpu|user': [1_000], 'cpu|idle': [2_000] } });
    now = t0 + 15_000;
    send('edge-1', now, { node: { 'cpu|user': [4_000], 'cpu|idle': [2_000] } });
    const answer = ask('query', { series: 'node_cpu_seconds_total', node: 'edge-1', label: 'mode=user', from: String(t0 / 1000), to: String((t0 + 30_000) / 1000), step: '30s', fn: 'rate' });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ kind: 'MetricsQueryResult', resultType: 'matrix', fn: 'rate', result: [{ metric: { mode: 'user' }, values: [[t0 / 1000, 0.2]] }] });
    expect(refused('query', {})).toMatch(/^series: required/);
    expect(refused('query', { series: 'node_cpu_seconds_total', fn: 'p99' })).toMatch(/^fn: 'p99' is not one of/);
    expect(refused('query', { series: 'node_cpu_seconds_total', label: 'mode' })).toMatch(/^label: 'mode' is not key=value/);
    expect(refused('pods', { labelSelector: 'a in (' })).toMatch(/^labelSelector: /);
  });
});
