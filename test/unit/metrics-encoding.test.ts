import { describe, expect, it } from 'vitest';
import { deflateSync } from 'node:zlib';
import pino from 'pino';
import type { Credentials } from '../../hub/auth/credentials.js';
import { BrokerAuth } from '../../hub/broker/auth.js';
import { Topics } from '../../shared/protocol/topics.js';
import {
  CONTAINER_CODES,
  decodeMetricsBatch,
  encodeMetricsBatch,
  MAX_METRICS_PAYLOAD_BYTES,
  NODE_CODES,
  parseMetricsInterval,
  splitSeriesKey,
  type MetricsBatch,
} from '../../shared/protocol/metrics.js';

// The metrics encoding of the protocol (version 1): what an agent sends is what a hub reads,
// and anything else is refused whole, naming the field.

const t0 = Date.parse('2025-01-01T12:00:00Z');

function batch(over: Partial<MetricsBatch> = {}): MetricsBatch {
  return {
    times: [t0],
    keyframe: true,
    node: { 'cpu|user': [81_234_500], load1: [420], mem_avail: [512_000_000] },
    containers: [{ ns: 'default', pod: 'web-1', c: 'app', id: '3f2a9c1b7e4d', s: { cpu: [81_230], mem_ws: [41_943_040] } }],
    ...over,
  };
}

function decode(payload: Buffer | string): MetricsBatch {
  const r = decodeMetricsBatch(Buffer.from(payload));
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.value;
}

function refusal(payload: unknown): { path: string; message: string } {
  const r = decodeMetricsBatch(Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)));
  if (r.ok) throw new Error('accepted');
  return r.errors[0]!;
}

describe('metrics encoding v1', () => {
  it('round-trips a batch through zlib and through plain JSON', () => {
    const b = batch();
    const compressed = encodeMetricsBatch(b);
    expect(compressed[0]! & 0x0f).toBe(8);
    expect(decode(compressed)).toEqual(b);
    const plain = encodeMetricsBatch(b, { compress: false });
    expect(plain.toString()[0]).toBe('{');
    expect(decode(plain)).toEqual(b);
  });

  it('delta-encodes times and values, with nulls for samples not taken', () => {
    const b = batch({
      times: [t0, t0 + 15_000, t0 + 30_000, t0 + 45_000],
      keyframe: false,
      node: { 'cpu|idle': [1_000, 1_500, null, 2_600], boot: [null, 1_700_000_000, 1_700_000_000, null] },
      containers: [],
    });
    const wire = JSON.parse(encodeMetricsBatch(b, { compress: false }).toString()) as { t: number[]; n: Record<string, unknown[]>; k?: number };
    expect(wire.t).toEqual([t0, 15_000, 15_000, 15_000]);
    expect(wire.n['cpu|idle']).toEqual([1_000, 500, null, 1_100]);
    expect(wire.n.boot).toEqual([null, 1_700_000_000, 0, null]);
    expect(wire.k).toBeUndefined();
    expect(decode(encodeMetricsBatch(b))).toEqual(b);
  });

  it('reads the example of the protocol documentation', () => {
    const doc = `{"v":1,"t":[1732370000000,15000],"k":1,"n":{"cpu|user":[81234500,1500],"load1":[420,-20],"mem_avail":[512000000,null]},
      "c":[{"ns":"default","pod":"web-1","c":"app","id":"3f2a9c1b7e4d","s":{"cpu":[81230,14990],"mem_ws":[41943040,0]}},
           {"ns":"default","pod":"web-1","c":"POD","id":"9b0e77a1c2d3","s":{"net_rxb|eth0":[10240,0]}}]}`;
    const b = decode(doc);
    expect(b.times).toEqual([1732370000000, 1732370015000]);
    expect(b.node['cpu|user']).toEqual([81234500, 81236000]);
    expect(b.node.load1).toEqual([420, 400]);
    expect(b.containers[0]!.s.cpu).toEqual([81230, 96220]);
    expect(b.containers[1]!.s['net_rxb|eth0']).toEqual([10240, 10240]);
  });

  it('refuses what breaks the shape, naming the field', () => {
    expect(refusal('not json')).toMatchObject({ path: '(payload)' });
    expect(refusal({ v: 2, t: [t0] })).toMatchObject({ path: 'v' });
    expect(refusal({ v: 1, t: [] })).toMatchObject({ path: 't' });
    expect(refusal({ v: 1, t: [t0, -5] })).toMatchObject({ path: 't[1]' });
    expect(refusal({ v: 1, t: [t0], n: { cpu: [1, 2] } })).toMatchObject({ path: 'n["cpu"]', message: expect.stringContaining('one value per sample time') });
    expect(refusal({ v: 1, t: [t0], n: { cpu: [1.5] } })).toMatchObject({ path: 'n["cpu"][0]', message: 'must be an integer or null' });
    expect(refusal({ v: 1, t: [t0], n: { cpu: ['7'] } })).toMatchObject({ path: 'n["cpu"][0]' });
    expect(refusal({ v: 1, t: [t0, 1], n: { cpu: [Number.MAX_SAFE_INTEGER, 10] } })).toMatchObject({ path: 'n["cpu"][1]', message: 'out of range' });
    expect(refusal({ v: 1, t: [t0], c: [{ ns: 'default', pod: 'p', c: 'app', id: 'NOT-HEX', s: {} }] })).toMatchObject({ path: 'c[0].id' });
    expect(refusal({ v: 1, t: [t0], c: [{ ns: '', pod: 'p', c: 'app', id: 'abcdefabcdef', s: {} }] })).toMatchObject({ path: 'c[0].ns' });
    expect(refusal({ v: 1, t: [t0], c: 'x' })).toMatchObject({ path: 'c' });
  });

  it('refuses an oversized message and a compressed one that inflates past the limit', () => {
    expect(refusal(Buffer.alloc(MAX_METRICS_PAYLOAD_BYTES + 1, 0x7b))).toMatchObject({ path: '(payload)', message: expect.stringContaining('over the limit') });
    expect(refusal(deflateSync(Buffer.alloc(8 * 1048576)))).toMatchObject({ path: '(payload)', message: expect.stringContaining('not a zlib stream within') });
  });

  it('keeps a "__proto__" key a plain series key', () => {
    const b = decode('{"v":1,"t":[1],"n":{"__proto__":[5]}}');
    expect(Object.getPrototypeOf(b.node)).toBeNull();
    expect(b.node.__proto__).toEqual([5]);
    expect(splitSeriesKey(NODE_CODES, '__proto__')).toBeUndefined();
  });

  it('splits series keys by their code\'s labels, and knows unknown codes for what they are', () => {
    expect(splitSeriesKey(NODE_CODES, 'cpu|idle')).toMatchObject({ code: { name: 'node_cpu_seconds_total' }, labelValues: ['idle'] });
    expect(splitSeriesKey(NODE_CODES, 'fs_avail|/var/lib/docker|/dev/sda1|ext4')?.labelValues).toEqual(['/var/lib/docker', '/dev/sda1', 'ext4']);
    expect(splitSeriesKey(NODE_CODES, 'cpu')).toBeUndefined();
    expect(splitSeriesKey(CONTAINER_CODES, 'gpu_util')).toBeUndefined();
    expect(splitSeriesKey(CONTAINER_CODES, 'net_rxb|eth0')?.code.name).toBe('container_network_receive_bytes_total');
  });

  it('names every counter with _total, as Prometheus wants', () => {
    for (const code of [...Object.values(NODE_CODES), ...Object.values(CONTAINER_CODES)]) {
      if (code.kind === 'counter') expect(code.name).toMatch(/_total$/);
      else expect(code.name).not.toMatch(/_total$/);
    }
  });

  it('parses a per-node interval', () => {
    expect(parseMetricsInterval('30s')).toBe(30);
    expect(parseMetricsInterval('2m')).toBe(120);
    expect(parseMetricsInterval('15')).toBe(15);
    expect(parseMetricsInterval('0s')).toMatch(/not an interval/);
    expect(parseMetricsInterval('2h')).toMatch(/not an interval/);
    expect(parseMetricsInterval('fast')).toMatch(/not an interval/);
  });
});

describe('the metrics topic', () => {
  it('is QoS 0 from a device, which may publish its own metrics only', () => {
    const topics = new Topics();
    const auth = new BrokerAuth({} as Credentials, topics, pino({ level: 'silent' }));
    const device = { role: 'device' as const, node: 'edge-1' };
    expect(topics.node('edge-1', 'metrics')).toBe('flotilla/v1/nodes/edge-1/metrics');
    expect(auth.mayPublish(device, 'flotilla/v1/nodes/edge-1/metrics')).toBe(true);
    expect(auth.mayPublish(device, 'flotilla/v1/nodes/edge-2/metrics')).toBe(false);
    expect(auth.maySubscribe(device, 'flotilla/v1/nodes/edge-1/metrics')).toBe(false);
  });
});
