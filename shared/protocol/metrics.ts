import { deflateSync, inflateSync } from 'node:zlib';
import type { FieldError } from '../resources/fields.js';

/**
 * Metrics batches on `…/nodes/{node}/metrics` (docs/PROTOCOL.md, 'Topics' and 'Payloads'; QoS 0, agent → hub),
 * encoding version 1. A device samples its node and its containers every interval (15 s by
 * default) and publishes one batch per interval. The payload is JSON: as text (its first byte
 * is `{`) or compressed with zlib (RFC 1950: a two-byte header whose first byte's low four bits
 * are 8, the deflate method, e.g. 0x48 for the 4 KiB window the agent uses). Example, decompressed:
 *
 *   {
 *     "v": 1,                                 encoding version (METRICS_ENCODING_VERSION)
 *     "t": [1732370000000, 15000],            sample times: ms since the epoch, then deltas
 *     "k": 1,                                 optional: 1 when every series is present (keyframe)
 *     "n": {                                  the node's series, by key: one value per sample time
 *       "cpu|user": [81234500, 1500],           key = code, then its label values, joined by "|"
 *       "load1": [420, -20],
 *       "mem_avail": [512000000, null]          null: no sample at that time
 *     },
 *     "c": [                                  containers; a pod's infra container is "POD"
 *       {"ns": "default", "pod": "web-1", "c": "app", "id": "3f2a9c1b7e4d",
 *        "s": {"cpu": [81230, 14990], "mem_ws": [41943040, 0]}},
 *       {"ns": "default", "pod": "web-1", "c": "POD", "id": "9b0e77a1c2d3",
 *        "s": {"net_rxb|eth0": [10240, 0]}}
 *     ]
 *   }
 *
 * Values are integers in the unit of their code (NODE_CODES, CONTAINER_CODES: ms of CPU time,
 * bytes, thousandths of a load or a degree). Each array is delta-encoded: its first non-null
 * element is absolute, every later non-null element is the difference to the non-null before it.
 *
 * Counters are cumulative (a container's since it started, the node's since boot), so a lost
 * batch costs resolution, never data. A series whose value has not changed since the previous
 * batch may be left out; a keyframe carrying every series follows at least every five minutes
 * (Prometheus' staleness), so a receiver that lost a batch is stale for at most that long, and a
 * series missing from a keyframe is gone (its container removed). `id` (the engine's container id,
 * 12 hex digits at least) changes when a container is recreated: its counters start again from
 * zero, the reset Prometheus understands when a counter goes down.
 *
 * A receiver ignores codes it does not know (a newer agent's) and refuses, whole, a batch that
 * breaks this shape or these bounds (MAX_METRICS_*).
 */
export const METRICS_ENCODING_VERSION = 1;

export type MetricKind = 'counter' | 'gauge';

/** What a code means: its Prometheus name and type, the factor from wire integers to base units, its label names. */
export interface MetricCode {
  name: string;
  kind: MetricKind;
  scale: number;
  labels: readonly string[];
  help: string;
}

const code = (name: string, kind: MetricKind, help: string, scale = 1, labels: readonly string[] = []): MetricCode => ({ name, kind, scale, labels, help });

/** Node series, named as node_exporter names them. */
export const NODE_CODES: Readonly<Record<string, MetricCode>> = {
  cpu: code('node_cpu_seconds_total', 'counter', 'Seconds the CPUs spent in each mode, all CPUs together.', 1e-3, ['mode']),
  load1: code('node_load1', 'gauge', '1m load average.', 1e-3),
  load5: code('node_load5', 'gauge', '5m load average.', 1e-3),
  load15: code('node_load15', 'gauge', '15m load average.', 1e-3),
  mem_total: code('node_memory_MemTotal_bytes', 'gauge', 'Memory information field MemTotal_bytes.'),
  mem_avail: code('node_memory_MemAvailable_bytes', 'gauge', 'Memory information field MemAvailable_bytes.'),
  fs_size: code('node_filesystem_size_bytes', 'gauge', 'Filesystem size in bytes.', 1, ['mountpoint', 'device', 'fstype']),
  fs_avail: code('node_filesystem_avail_bytes', 'gauge', 'Filesystem space available to non-root users in bytes.', 1, ['mountpoint', 'device', 'fstype']),
  net_rxb: code('node_network_receive_bytes_total', 'counter', 'Network device statistic receive_bytes.', 1, ['device']),
  net_rxp: code('node_network_receive_packets_total', 'counter', 'Network device statistic receive_packets.', 1, ['device']),
  net_rxe: code('node_network_receive_errs_total', 'counter', 'Network device statistic receive_errs.', 1, ['device']),
  net_rxd: code('node_network_receive_drop_total', 'counter', 'Network device statistic receive_drop.', 1, ['device']),
  net_txb: code('node_network_transmit_bytes_total', 'counter', 'Network device statistic transmit_bytes.', 1, ['device']),
  net_txp: code('node_network_transmit_packets_total', 'counter', 'Network device statistic transmit_packets.', 1, ['device']),
  net_txe: code('node_network_transmit_errs_total', 'counter', 'Network device statistic transmit_errs.', 1, ['device']),
  net_txd: code('node_network_transmit_drop_total', 'counter', 'Network device statistic transmit_drop.', 1, ['device']),
  boot: code('node_boot_time_seconds', 'gauge', 'Node boot time, in unixtime.'),
  temp: code('node_thermal_zone_temp', 'gauge', 'Zone temperature in Celsius.', 1e-3, ['zone', 'type']),
  // The pod overlay (agent/network/): a handful of series whatever the number of peers.
  ovl_peers: code('flotilla_overlay_peers', 'gauge', 'Overlay peers of the device, by path (direct, relay, connecting).', 1, ['path']),
  ovl_rxb: code('flotilla_overlay_rx_bytes_total', 'counter', 'Bytes received from overlay peers, all peers together (the relay included).'),
  ovl_txb: code('flotilla_overlay_tx_bytes_total', 'counter', 'Bytes sent to overlay peers, all peers together (the relay included).'),
  ovl_relay_rxb: code('flotilla_overlay_relay_rx_bytes_total', 'counter', 'Bytes received from the hub\'s relay.'),
  ovl_relay_txb: code('flotilla_overlay_relay_tx_bytes_total', 'counter', 'Bytes sent to the hub\'s relay.'),
  ovl_handshakes: code('flotilla_overlay_handshakes_total', 'counter', 'WireGuard handshakes completed with overlay peers (the relay included) since the agent started.'),
};

/** Container series, named as cAdvisor names them (restarts as kube-state-metrics does). */
export const CONTAINER_CODES: Readonly<Record<string, MetricCode>> = {
  cpu: code('container_cpu_usage_seconds_total', 'counter', 'Cumulative cpu time consumed in seconds.', 1e-3),
  cpu_user: code('container_cpu_user_seconds_total', 'counter', 'Cumulative user cpu time consumed in seconds.', 1e-3),
  cpu_sys: code('container_cpu_system_seconds_total', 'counter', 'Cumulative system cpu time consumed in seconds.', 1e-3),
  mem: code('container_memory_usage_bytes', 'gauge', 'Current memory usage in bytes, including all memory regardless of when it was accessed.'),
  mem_ws: code('container_memory_working_set_bytes', 'gauge', 'Current working set in bytes.'),
  mem_rss: code('container_memory_rss', 'gauge', 'Size of RSS in bytes.'),
  mem_cache: code('container_memory_cache', 'gauge', 'Number of bytes of page cache memory.'),
  mem_limit: code('container_spec_memory_limit_bytes', 'gauge', 'Memory limit for the container (0: none).'),
  net_rxb: code('container_network_receive_bytes_total', 'counter', 'Cumulative count of bytes received.', 1, ['interface']),
  net_rxp: code('container_network_receive_packets_total', 'counter', 'Cumulative count of packets received.', 1, ['interface']),
  net_rxe: code('container_network_receive_errors_total', 'counter', 'Cumulative count of errors encountered while receiving.', 1, ['interface']),
  net_rxd: code('container_network_receive_packets_dropped_total', 'counter', 'Cumulative count of packets dropped while receiving.', 1, ['interface']),
  net_txb: code('container_network_transmit_bytes_total', 'counter', 'Cumulative count of bytes transmitted.', 1, ['interface']),
  net_txp: code('container_network_transmit_packets_total', 'counter', 'Cumulative count of packets transmitted.', 1, ['interface']),
  net_txe: code('container_network_transmit_errors_total', 'counter', 'Cumulative count of errors encountered while transmitting.', 1, ['interface']),
  net_txd: code('container_network_transmit_packets_dropped_total', 'counter', 'Cumulative count of packets dropped while transmitting.', 1, ['interface']),
  io_rd: code('container_fs_reads_bytes_total', 'counter', 'Cumulative count of bytes read.'),
  io_wr: code('container_fs_writes_bytes_total', 'counter', 'Cumulative count of bytes written.'),
  pids: code('container_processes', 'gauge', 'Number of processes running inside the container.'),
  restarts: code('kube_pod_container_status_restarts_total', 'counter', 'The number of container restarts per container.'),
};

/** Bounds of a batch; a message beyond any of them is refused whole. */
export const MAX_METRICS_PAYLOAD_BYTES = 128 * 1024;
export const MAX_METRICS_JSON_BYTES = 1024 * 1024;
export const MAX_METRICS_SAMPLES = 240;
export const MAX_METRICS_CONTAINERS = 1024;
export const MAX_METRICS_SERIES_PER_SCOPE = 512;
export const MAX_METRICS_KEY_LENGTH = 256;
const MAX_NAME_LENGTH = 253;

/** The per-node override of the agent's sampling interval, as a Node annotation (e.g. "30s"). */
export const METRICS_INTERVAL_ANNOTATION = 'flotilla.io/metrics-interval';
export const DEFAULT_METRICS_INTERVAL_SECONDS = 15;
export const MIN_METRICS_INTERVAL_SECONDS = 1;
export const MAX_METRICS_INTERVAL_SECONDS = 3600;

/** "30", "30s", "2m", "1h": whole seconds within the bounds; an error message otherwise. */
export function parseMetricsInterval(text: string): number | string {
  const m = /^(\d+)(s|m|h)?$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * { s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's' | 'm' | 'h'] : NaN;
  if (!Number.isInteger(seconds) || seconds < MIN_METRICS_INTERVAL_SECONDS || seconds > MAX_METRICS_INTERVAL_SECONDS) {
    return `'${text}' is not an interval between ${MIN_METRICS_INTERVAL_SECONDS}s and ${MAX_METRICS_INTERVAL_SECONDS}s (e.g. 15s, 1m)`;
  }
  return seconds;
}

export type SampleValues = (number | null)[];

/** One container's series in a batch, with absolute values. */
export interface ContainerSeries {
  ns: string;
  pod: string;
  c: string;
  id: string;
  s: Record<string, SampleValues>;
}

/** A batch with absolute times and values (what encode takes and decode gives). */
export interface MetricsBatch {
  times: number[];
  keyframe: boolean;
  node: Record<string, SampleValues>;
  containers: ContainerSeries[];
}

function deltas(values: SampleValues): SampleValues {
  let prev: number | undefined;
  return values.map((v) => {
    if (v === null) return null;
    const d = prev === undefined ? v : v - prev;
    prev = v;
    return d;
  });
}

function encodeSeries(series: Record<string, SampleValues>): Record<string, SampleValues> {
  const out: Record<string, SampleValues> = Object.create(null) as Record<string, SampleValues>;
  for (const key in series) out[key] = series[key]!.length === 1 ? series[key]! : deltas(series[key]!);
  return out;
}

/** The wire form of a batch: delta-encoded JSON, zlib-compressed (small windows: a device's memory is dear). */
export function encodeMetricsBatch(batch: MetricsBatch, opts: { compress?: boolean } = {}): Buffer {
  const wire = {
    v: METRICS_ENCODING_VERSION,
    t: batch.times.map((t, i) => (i === 0 ? t : t - batch.times[i - 1]!)),
    ...(batch.keyframe ? { k: 1 } : {}),
    n: encodeSeries(batch.node),
    c: batch.containers.map((c) => ({ ns: c.ns, pod: c.pod, c: c.c, id: c.id, s: encodeSeries(c.s) })),
  };
  const json = Buffer.from(JSON.stringify(wire));
  return opts.compress === false ? json : deflateSync(json, { level: 9, windowBits: 12, memLevel: 5 });
}

export type MetricsDecodeResult = { ok: true; value: MetricsBatch } | { ok: false; errors: FieldError[] };

class Refused extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** Parses and validates a metrics payload; never throws. Names the first field that is wrong. */
export function decodeMetricsBatch(payload: Uint8Array): MetricsDecodeResult {
  try {
    if (payload.length > MAX_METRICS_PAYLOAD_BYTES) throw new Refused('(payload)', `${payload.length} bytes, over the limit of ${MAX_METRICS_PAYLOAD_BYTES}`);
    if (payload.length === 0) throw new Refused('(payload)', 'empty');
    let text: string;
    if (payload[0] === 0x7b) text = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
    else if (isZlibHeader(payload)) {
      try {
        text = inflateSync(payload, { maxOutputLength: MAX_METRICS_JSON_BYTES }).toString('utf8');
      } catch (err) {
        throw new Refused('(payload)', `not a zlib stream within ${MAX_METRICS_JSON_BYTES} bytes: ${(err as Error).message}`);
      }
    } else throw new Refused('(payload)', 'neither JSON nor zlib');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new Refused('(payload)', `not JSON: ${(err as Error).message}`);
    }
    return { ok: true, value: readBatch(raw) };
  } catch (err) {
    if (err instanceof Refused) return { ok: false, errors: [{ path: err.path, message: err.message }] };
    return { ok: false, errors: [{ path: '(payload)', message: (err as Error).message }] };
  }
}

/** RFC 1950: CM 8 (deflate), a window of at most 32 KiB, and the header check bits. */
function isZlibHeader(p: Uint8Array): boolean {
  return p.length >= 2 && (p[0]! & 0x0f) === 8 && p[0]! >> 4 <= 7 && (p[0]! * 256 + p[1]!) % 31 === 0;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function readBatch(raw: unknown): MetricsBatch {
  if (!isObject(raw)) throw new Refused('(root)', 'must be an object');
  if (raw.v !== METRICS_ENCODING_VERSION) throw new Refused('v', `unsupported metrics encoding (this side reads v${METRICS_ENCODING_VERSION})`);
  const t = raw.t;
  if (!Array.isArray(t) || t.length === 0 || t.length > MAX_METRICS_SAMPLES) throw new Refused('t', `must be an array of 1 to ${MAX_METRICS_SAMPLES} times`);
  const times: number[] = [];
  for (let i = 0; i < t.length; i++) {
    const d = t[i];
    if (!Number.isSafeInteger(d) || (i === 0 ? (d as number) < 0 : (d as number) <= 0)) throw new Refused(`t[${i}]`, i === 0 ? 'must be ms since the epoch' : 'must be a positive delta in ms');
    times.push(i === 0 ? (d as number) : times[i - 1]! + (d as number));
  }
  if (raw.k !== undefined && raw.k !== 0 && raw.k !== 1) throw new Refused('k', 'must be 0 or 1');
  const node = raw.n === undefined ? {} : readSeries(raw.n, 'n', times.length);
  const c = raw.c ?? [];
  if (!Array.isArray(c) || c.length > MAX_METRICS_CONTAINERS) throw new Refused('c', `must be an array of at most ${MAX_METRICS_CONTAINERS} containers`);
  const containers = c.map((entry, i) => readContainer(entry, `c[${i}]`, times.length));
  return { times, keyframe: raw.k === 1, node, containers };
}

function readName(x: unknown, path: string, pattern?: RegExp): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > MAX_NAME_LENGTH || (pattern && !pattern.test(x))) throw new Refused(path, pattern ? `must match ${pattern.source}` : `must be a string of 1 to ${MAX_NAME_LENGTH} characters`);
  return x;
}

function readContainer(raw: unknown, path: string, samples: number): ContainerSeries {
  if (!isObject(raw)) throw new Refused(path, 'must be an object');
  return {
    ns: readName(raw.ns, `${path}.ns`),
    pod: readName(raw.pod, `${path}.pod`),
    c: readName(raw.c, `${path}.c`),
    id: readName(raw.id, `${path}.id`, /^[0-9a-f]{12,64}$/),
    s: readSeries(raw.s, `${path}.s`, samples),
  };
}

function readSeries(raw: unknown, path: string, samples: number): Record<string, SampleValues> {
  if (!isObject(raw)) throw new Refused(path, 'must be an object of series');
  // No prototype: a key such as "__proto__" stays a plain (unknown, ignored) series key.
  const out: Record<string, SampleValues> = Object.create(null) as Record<string, SampleValues>;
  let count = 0;
  for (const key in raw) {
    if (++count > MAX_METRICS_SERIES_PER_SCOPE) throw new Refused(path, `more than ${MAX_METRICS_SERIES_PER_SCOPE} series`);
    if (key.length === 0 || key.length > MAX_METRICS_KEY_LENGTH) throw new Refused(`${path}[${JSON.stringify(key.slice(0, 40))}]`, `a series key must have 1 to ${MAX_METRICS_KEY_LENGTH} characters`);
    const values = raw[key];
    const at = `${path}[${JSON.stringify(key)}]`;
    if (!Array.isArray(values) || values.length !== samples) throw new Refused(at, `must hold one value per sample time (${samples})`);
    let prev: number | undefined;
    for (let i = 0; i < values.length; i++) {
      const d = values[i];
      if (d === null) continue;
      if (!Number.isSafeInteger(d)) throw new Refused(`${at}[${i}]`, 'must be an integer or null');
      const v = prev === undefined ? (d as number) : prev + (d as number);
      if (!Number.isSafeInteger(v)) throw new Refused(`${at}[${i}]`, 'out of range');
      values[i] = v;
      prev = v;
    }
    out[key] = values as SampleValues;
  }
  return out;
}

/** A series key split into its code and label values; undefined when the code is unknown or the labels do not fit it. */
export function splitSeriesKey(codes: Readonly<Record<string, MetricCode>>, key: string): { code: MetricCode; labelValues: string[] } | undefined {
  const parts = key.split('|');
  const found = Object.hasOwn(codes, parts[0]!) ? codes[parts[0]!] : undefined;
  if (!found || parts.length - 1 !== found.labels.length) return undefined;
  return { code: found, labelValues: parts.slice(1) };
}
