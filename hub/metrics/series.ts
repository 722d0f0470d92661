import type { Database, Statement } from 'better-sqlite3';
import { escapeLabel } from './prometheus.js';
import { CONTAINER_CODES, NODE_CODES, splitSeriesKey, type MetricCode, type MetricKind } from '../../shared/protocol/metrics.js';

/** The most series one node may have; more are dropped (a device gone wrong cannot explode the store). */
export const MAX_SERIES_PER_NODE = 5_000;

export interface SeriesInfo {
  id: number;
  node: string;
  namespace: string;
  pod: string;
  container: string;
  key: string;
  name: string;
  kind: MetricKind;
  /** Wire integers are divided by this for base units (1000 for ms and thousandths): exact decimals, unlike a multiplication by 0.001. */
  divisor: number;
  /** The labels beyond node/namespace/pod/container. */
  labels: Record<string, string>;
  /** `{node="…",…}`, rendered once for the exposition. */
  labelText: string;
}

function labelText(s: Omit<SeriesInfo, 'labelText' | 'id'>): string {
  const pairs: [string, string][] = [['node', s.node]];
  if (s.namespace) pairs.push(['namespace', s.namespace], ['pod', s.pod], ['container', s.container]);
  for (const [k, v] of Object.entries(s.labels)) pairs.push([k, v]);
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;
}

/** A node's series, by scope (`namespace/pod/container`, empty for the node's own) and wire key. */
type NodeSeries = Map<string, Map<string, number>>;
const scopeOf = (namespace: string, pod: string, container: string) => (namespace ? `${namespace}\0${pod}\0${container}` : '');

/**
 * Every series the hub knows, in memory: the id of each (from its node, pod, container and wire
 * key), its labels, and its two newest samples in typed arrays (32 bytes a series), from which
 * /metrics and `flotilla top` are answered without touching SQLite. New series get their ids here
 * and are written with the next flush of samples.
 */
export class SeriesRegistry {
  private readonly ids = new Map<string, NodeSeries>();
  private count = 0;
  private readonly infos: (SeriesInfo | undefined)[] = [];
  private readonly perNode = new Map<string, number>();
  /** Series ids by Prometheus name, for the exposition (grouped by family). */
  readonly byName = new Map<string, Set<number>>();
  private nextId = 1;
  lastTs = new Float64Array(1024);
  lastValue = new Float64Array(1024);
  prevTs = new Float64Array(1024);
  prevValue = new Float64Array(1024);
  private unsaved: SeriesInfo[] = [];
  private readonly insert: Statement;

  constructor(db: Database) {
    this.insert = db.prepare('INSERT OR IGNORE INTO metric_series (id, node, namespace, pod, container, key, name, labels, kind, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    const rows = db.prepare<[], { id: number; node: string; namespace: string; pod: string; container: string; key: string }>('SELECT id, node, namespace, pod, container, key FROM metric_series ORDER BY id').all();
    for (const r of rows) {
      const info = this.describe(r.node, r.namespace, r.pod, r.container, r.key);
      if (info) this.add({ ...info, id: r.id });
      this.nextId = Math.max(this.nextId, r.id + 1);
    }
  }

  get size(): number {
    return this.count;
  }

  info(id: number): SeriesInfo | undefined {
    return this.infos[id];
  }

  /** The id of a series, if known. */
  find(node: string, namespace: string, pod: string, container: string, key: string): number | undefined {
    return this.ids.get(node)?.get(scopeOf(namespace, pod, container))?.get(key);
  }

  /**
   * The id of a series, made when new; 'unknown' for a code this hub does not know (a newer
   * agent's), 'capped' when the node has too many series already.
   */
  resolve(node: string, namespace: string, pod: string, container: string, key: string): number | 'unknown' | 'capped' {
    return this.resolveIn(this.scope(node, namespace, pod, container), node, namespace, pod, container, key);
  }

  /** The series of one container (or of the node itself) by wire key: looked up once per container of a batch. */
  scope(node: string, namespace: string, pod: string, container: string): Map<string, number> {
    let byScope = this.ids.get(node);
    if (!byScope) this.ids.set(node, (byScope = new Map()));
    const scope = scopeOf(namespace, pod, container);
    let byKey = byScope.get(scope);
    if (!byKey) byScope.set(scope, (byKey = new Map()));
    return byKey;
  }

  /** resolve(), given the scope's map. */
  resolveIn(byKey: Map<string, number>, node: string, namespace: string, pod: string, container: string, key: string): number | 'unknown' | 'capped' {
    const found = byKey.get(key);
    if (found !== undefined) return found;
    const described = this.describe(node, namespace, pod, container, key);
    if (!described) return 'unknown';
    if ((this.perNode.get(node) ?? 0) >= MAX_SERIES_PER_NODE) return 'capped';
    const info = { ...described, id: this.nextId++ };
    this.add(info);
    this.unsaved.push(info);
    this.lastTs[info.id] = 0;
    return info.id;
  }

  /** Writes the series made since the last commit (inside the caller's transaction); call `committed()` once it commits. */
  saveNew(now: number): void {
    for (const s of this.unsaved) this.insert.run(s.id, s.node, s.namespace, s.pod, s.container, s.key, s.name, JSON.stringify(s.labels), s.kind, now);
  }

  committed(): void {
    this.unsaved = [];
  }

  /** Takes a sample as the newest of its series; false (and nothing changes) when it is not newer than the newest known. */
  observe(id: number, ts: number, value: number): boolean {
    if (ts <= this.lastTs[id]!) return false;
    this.prevTs[id] = this.lastTs[id]!;
    this.prevValue[id] = this.lastValue[id]!;
    this.lastTs[id] = ts;
    this.lastValue[id] = value;
    return true;
  }

  /** Restores the newest sample of a series after a restart (never moves it backwards). */
  restore(id: number, ts: number, value: number): void {
    if (id < this.lastTs.length && ts > this.lastTs[id]!) {
      this.lastTs[id] = ts;
      this.lastValue[id] = value;
    }
  }

  forget(id: number): void {
    const info = this.infos[id];
    if (!info) return;
    const byScope = this.ids.get(info.node);
    const byKey = byScope?.get(scopeOf(info.namespace, info.pod, info.container));
    byKey?.delete(info.key);
    if (byKey?.size === 0) byScope!.delete(scopeOf(info.namespace, info.pod, info.container));
    if (byScope?.size === 0) this.ids.delete(info.node);
    this.count--;
    this.infos[id] = undefined;
    this.byName.get(info.name)?.delete(id);
    this.perNode.set(info.node, (this.perNode.get(info.node) ?? 1) - 1);
    this.lastTs[id] = 0;
  }

  *all(): IterableIterator<SeriesInfo> {
    for (const info of this.infos) if (info) yield info;
  }

  private add(info: SeriesInfo): void {
    this.grow(info.id + 1);
    this.scope(info.node, info.namespace, info.pod, info.container).set(info.key, info.id);
    this.count++;
    this.infos[info.id] = info;
    this.perNode.set(info.node, (this.perNode.get(info.node) ?? 0) + 1);
    let set = this.byName.get(info.name);
    if (!set) this.byName.set(info.name, (set = new Set()));
    set.add(info.id);
  }

  private grow(size: number): void {
    if (size <= this.lastTs.length) return;
    let n = this.lastTs.length;
    while (n < size) n *= 2;
    const bigger = (a: Float64Array) => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    this.lastTs = bigger(this.lastTs);
    this.lastValue = bigger(this.lastValue);
    this.prevTs = bigger(this.prevTs);
    this.prevValue = bigger(this.prevValue);
  }

  private describe(node: string, namespace: string, pod: string, container: string, key: string): Omit<SeriesInfo, 'id'> | undefined {
    const split = splitSeriesKey(namespace ? CONTAINER_CODES : NODE_CODES, key);
    if (!split) return undefined;
    const code: MetricCode = split.code;
    const labels: Record<string, string> = {};
    code.labels.forEach((name, i) => (labels[name] = split.labelValues[i]!));
    const base = { node, namespace, pod, container, key, name: code.name, kind: code.kind, divisor: Math.round(1 / code.scale), labels };
    return { ...base, labelText: labelText(base) };
  }
}
