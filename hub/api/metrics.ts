import type { ServerResponse } from 'node:http';
import { parseSelector, SelectorError, type Selector } from '../../shared/labels/selector.js';
import { bytes, cpuToMilli } from '../../shared/quantities/quantity.js';
import type { NodeStatus } from '../../shared/resources/node.js';
import type { PodSpec } from '../../shared/resources/pod.js';
import { EXPOSITION_CONTENT_TYPE } from '../metrics/prometheus.js';
import { QueryError, type QueryFn } from '../metrics/query.js';
import type { MetricsService } from '../metrics/service.js';
import type { Usage } from '../metrics/usage.js';
import type { ObjectStore } from '../store/objects.js';
import { HubError } from './errors.js';

type Send = (status: number, body: unknown) => void;

const FNS: readonly QueryFn[] = ['avg', 'min', 'max', 'last', 'rate'];
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

function bad(field: string, message: string): HubError {
  return new HubError('HUB_ERR_BAD_REQUEST', `${field}: ${message}`);
}

/** A duration: "90s", "5m", "1h", or a number of seconds. */
export function parseDurationMs(field: string, text: string): number {
  const m = DURATION.exec(text.trim());
  if (!m) throw bad(field, `'${text}' is not a duration (e.g. 30s, 5m, 1h)`);
  return Number(m[1]) * UNIT_MS[m[2] ?? 's']!;
}

/** A time: seconds since the epoch, RFC 3339, or "-1h" (that long before now). */
export function parseTimeMs(field: string, text: string, now: number): number {
  if (text.startsWith('-')) return now - parseDurationMs(field, text.slice(1));
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const t = Date.parse(text);
  if (!Number.isFinite(t)) throw bad(field, `'${text}' is not a time (seconds since the epoch, RFC 3339, or e.g. -1h)`);
  return t;
}

const cpuText = (cores: number) => `${Math.round(cores * 1000)}m`;
const memoryText = (b: number) => `${Math.round(b / 1048576)}Mi`;

function usageBody(u: Usage): Record<string, unknown> {
  return {
    ...(u.cpuCores !== undefined ? { cpu: cpuText(u.cpuCores), cpuCores: u.cpuCores } : {}),
    ...(u.memoryBytes !== undefined ? { memory: memoryText(u.memoryBytes), memoryBytes: u.memoryBytes } : {}),
  };
}

/**
 * The metrics routes of the API:
 *   GET /metrics                       the Prometheus exposition (devices' series, then the hub's own)
 *   GET /api/v1/metrics/query          range query: series (a metric name), node, namespace, pod,
 *                                      container, label=k=v (repeatable), from, to, step, fn
 *   GET /api/v1/metrics/pods           usage per pod and container, as metrics.k8s.io's PodMetrics
 *   GET /api/v1/metrics/nodes          usage per node, with its capacity
 */
export class MetricsRoutes {
  constructor(
    private readonly metrics: MetricsService,
    private readonly store: ObjectStore,
    private readonly now: () => number = Date.now,
  ) {}

  exposition(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE, 'cache-control': 'no-cache' });
    for (const chunk of this.metrics.exposition()) res.write(chunk);
    res.end();
  }

  handle(method: string, rest: string[], query: URLSearchParams, send: Send): void {
    if (method !== 'GET') throw new HubError('HUB_ERR_METHOD_NOT_ALLOWED', 'metrics take GET');
    if (rest.length === 1 && rest[0] === 'query') return send(200, this.range(query));
    if (rest.length === 1 && rest[0] === 'pods') return send(200, this.pods(query));
    if (rest.length === 1 && rest[0] === 'nodes') return send(200, this.nodes(query));
    throw new HubError('HUB_ERR_NOT_FOUND', `no route for /api/v1/metrics/${rest.join('/')}`);
  }

  private range(q: URLSearchParams): unknown {
    const now = this.now();
    const name = q.get('series');
    if (!name) throw bad('series', 'required: a metric name, e.g. container_cpu_usage_seconds_total');
    const to = q.has('to') ? parseTimeMs('to', q.get('to')!, now) : now;
    const from = q.has('from') ? parseTimeMs('from', q.get('from')!, now) : to - 3_600_000;
    const stepMs = q.has('step') ? parseDurationMs('step', q.get('step')!) : Math.max(1_000, Math.ceil((to - from) / 120 / 1000) * 1000);
    const fnText = q.get('fn');
    if (fnText !== null && !FNS.includes(fnText as QueryFn)) throw bad('fn', `'${fnText}' is not one of ${FNS.join(', ')}`);
    const kind = this.metrics.query.select({ name })[0]?.kind;
    const fn = (fnText as QueryFn | null) ?? (kind === 'counter' ? 'last' : 'avg');
    const labels: Record<string, string> = {};
    for (const pair of q.getAll('label')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw bad('label', `'${pair}' is not key=value`);
      labels[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    const opt = (key: string) => (q.has(key) ? { [key]: q.get(key)! } : {});
    try {
      const result = this.metrics.query.range({ name, ...opt('node'), ...opt('namespace'), ...opt('pod'), ...opt('container'), labels, from, to, stepMs, fn });
      return { kind: 'MetricsQueryResult', resultType: 'matrix', series: name, from: from / 1000, to: to / 1000, step: stepMs / 1000, fn, result };
    } catch (err) {
      if (err instanceof QueryError) throw bad(err.field, err.message.slice(err.field.length + 2));
      throw err;
    }
  }

  private selector(q: URLSearchParams): Selector | undefined {
    const text = q.get('labelSelector');
    if (!text) return undefined;
    try {
      return parseSelector(text);
    } catch (err) {
      if (err instanceof SelectorError) throw bad('labelSelector', err.message);
      throw err;
    }
  }

  private pods(q: URLSearchParams): unknown {
    const namespace = q.get('namespace') ?? undefined;
    const selector = this.selector(q);
    const items = [];
    for (const pod of this.store.list('Pod', { ...(namespace ? { namespace } : {}), ...(selector ? { selector } : {}) }).items) {
      const spec = pod.spec as PodSpec;
      if (!spec.nodeName) continue;
      const ns = pod.metadata.namespace ?? 'default';
      // Only what the node the pod is bound to says of it counts (a device speaks for itself only).
      const containers = spec.containers.map((c) => ({ name: c.name, u: this.metrics.usage.container(spec.nodeName!, ns, pod.metadata.name, c.name) })).filter((c) => c.u.timestamp !== undefined);
      if (containers.length === 0) continue;
      const newest = Math.max(...containers.map((c) => c.u.timestamp!));
      items.push({
        metadata: { name: pod.metadata.name, namespace: ns, ...(pod.metadata.labels ? { labels: pod.metadata.labels } : {}) },
        node: spec.nodeName,
        timestamp: new Date(newest).toISOString(),
        window: `${Math.round(Math.max(...containers.map((c) => c.u.windowMs ?? 0)) / 1000)}s`,
        containers: containers.map((c) => ({ name: c.name, usage: usageBody(c.u) })),
      });
    }
    return { kind: 'PodMetricsList', apiVersion: 'flotilla/v1', items };
  }

  private nodes(q: URLSearchParams): unknown {
    const selector = this.selector(q);
    const items = [];
    for (const node of this.store.list('Node', selector ? { selector } : {}).items) {
      const u = this.metrics.usage.node(node.metadata.name);
      if (u.timestamp === undefined) continue;
      const capacity = (node.status as NodeStatus | undefined)?.capacity ?? {};
      items.push({
        metadata: { name: node.metadata.name, ...(node.metadata.labels ? { labels: node.metadata.labels } : {}) },
        timestamp: new Date(u.timestamp).toISOString(),
        window: `${Math.round((u.windowMs ?? 0) / 1000)}s`,
        usage: usageBody(u),
        capacity: { ...(capacity.cpu ? { cpuCores: quantityOr(() => cpuToMilli(capacity.cpu!) / 1000) } : {}), ...(capacity.memory ? { memoryBytes: quantityOr(() => bytes(capacity.memory!)) } : {}) },
      });
    }
    return { kind: 'NodeMetricsList', apiVersion: 'flotilla/v1', items };
  }
}

function quantityOr(fn: () => number): number | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
