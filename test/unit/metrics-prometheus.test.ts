import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exposition } from '../../hub/metrics/exposition.js';
import { formatFamily, formatValue, Histogram } from '../../hub/metrics/prometheus.js';
import { MetricsService } from '../../hub/metrics/service.js';
import type { ContainerSeries } from '../../shared/protocol/metrics.js';
import { createNode, testHub, type TestHub } from './builders.js';

// The Prometheus text format: families with HELP and TYPE, escaped labels, device samples with
// their own timestamps, and only the series that are still current.

describe('the exposition format', () => {
  it('writes a family with HELP, TYPE, escaped labels and timestamps', () => {
    const text = formatFamily({
      name: 'x_total',
      help: 'Back\\slash and\nnewline.',
      type: 'counter',
      samples: [
        { labels: { path: 'C:\\dir', quote: 'say "hi"', nl: 'a\nb' }, value: 3, timestampMs: 1732370000123 },
        { value: 0.1 + 0.2 },
      ],
    });
    expect(text).toBe(['# HELP x_total Back\\\\slash and\\nnewline.', '# TYPE x_total counter', 'x_total{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb"} 3 1732370000123', 'x_total 0.30000000000000004', ''].join('\n'));
  });

  it('writes Go\'s special values', () => {
    expect([NaN, Infinity, -Infinity, 1e21, -0.5].map(formatValue)).toEqual(['NaN', '+Inf', '-Inf', '1e+21', '-0.5']);
  });

  it('keeps a histogram as cumulative buckets, a sum and a count per label value', () => {
    const h = new Histogram('op_seconds', 'How long.', 'op', [0.1, 1]);
    h.observe('b', 0.05);
    h.observe('b', 0.5);
    h.observe('b', 5);
    h.observe('a', 0.2);
    expect(formatFamily(h.family()).split('\n')).toEqual([
      '# HELP op_seconds How long.',
      '# TYPE op_seconds histogram',
      'op_seconds_bucket{op="a",le="0.1"} 0',
      'op_seconds_bucket{op="a",le="1"} 1',
      'op_seconds_bucket{op="a",le="+Inf"} 1',
      'op_seconds_sum{op="a"} 0.2',
      'op_seconds_count{op="a"} 1',
      'op_seconds_bucket{op="b",le="0.1"} 1',
      'op_seconds_bucket{op="b",le="1"} 2',
      'op_seconds_bucket{op="b",le="+Inf"} 3',
      'op_seconds_sum{op="b"} 5.55',
      'op_seconds_count{op="b"} 3',
      '',
    ]);
  });
});

describe('the devices\' series in /metrics', () => {
  const t0 = Date.parse('2025-03-01T10:00:00Z');
  let hub: TestHub;
  let now: number;
  let metrics: MetricsService;
  const retention = { raw: 6 * 3_600_000, '1m': 7 * 86_400_000, '1h': 90 * 86_400_000 };
  const app = (pod: string, cpu: number): ContainerSeries => ({ ns: 'default', pod, c: 'app', id: 'aaaaaaaaaaaa', s: { cpu: [cpu], mem_ws: [1048576] } });
  const body = () => [...exposition([], metrics.registry, metrics.ingest, now)].join('');

  beforeEach(() => {
    hub = testHub();
    now = t0;
    createNode(hub.store, { name: 'edge-1' });
    metrics = new MetricsService({ db: hub.db, store: hub.store, retention, log: hub.log, now: () => now });
  });
  afterEach(async () => {
    await metrics.stop();
    hub.db.close();
  });

  it('shows cAdvisor\'s and node_exporter\'s names and labels, with the samples\' own times', () => {
    metrics.ingest.ingest('edge-1', { times: [t0], keyframe: true, node: { 'cpu|idle': [1_500], 'fs_avail|/|/dev/root|ext4': [10] }, containers: [app('web', 2_500)] });
    const text = body();
    expect(text).toContain('# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n# TYPE container_cpu_usage_seconds_total counter\n');
    expect(text).toContain(`container_cpu_usage_seconds_total{node="edge-1",namespace="default",pod="web",container="app"} 2.5 ${t0}\n`);
    expect(text).toContain(`node_cpu_seconds_total{node="edge-1",mode="idle"} 1.5 ${t0}\n`);
    expect(text).toContain(`node_filesystem_avail_bytes{node="edge-1",mountpoint="/",device="/dev/root",fstype="ext4"} 10 ${t0}\n`);
    expect(text).toContain('flotilla_metrics_samples_ingested_total 0\n');
    expect(text.match(/^# TYPE container_memory_working_set_bytes gauge$/gm)).toHaveLength(1);
  });

  it('leaves out a container missing from the newest keyframe, and a node gone quiet', () => {
    metrics.ingest.ingest('edge-1', { times: [t0], keyframe: true, node: {}, containers: [app('web', 1_000), app('gone', 1_000)] });
    // Unchanged series are not sent between keyframes: still shown.
    now = t0 + 15_000;
    metrics.ingest.ingest('edge-1', { times: [now], keyframe: false, node: { 'cpu|idle': [5] }, containers: [] });
    expect(body()).toContain('pod="gone"');
    now = t0 + 300_000;
    metrics.ingest.ingest('edge-1', { times: [now], keyframe: true, node: { 'cpu|idle': [6] }, containers: [app('web', 1_000)] });
    expect(body()).toContain('pod="web"');
    expect(body()).not.toContain('pod="gone"');
    // Quiet for longer than five minutes and three of its intervals (the last one was 285 s).
    now += 15 * 60_000;
    expect(body()).not.toContain('node="edge-1"');
  });
});
