import type { Database, Statement } from 'better-sqlite3';
import { RESOLUTION_MS, type Partition, type Partitions, type TierName } from './partitions.js';
import type { RetentionConfig } from './retention.js';
import type { SeriesInfo, SeriesRegistry } from './series.js';

export type QueryFn = 'avg' | 'min' | 'max' | 'last' | 'rate';

export interface SeriesSelector {
  /** The Prometheus name, e.g. container_cpu_usage_seconds_total. */
  name: string;
  node?: string;
  namespace?: string;
  pod?: string;
  container?: string;
  /** Further labels, e.g. {mode: 'idle'}. */
  labels?: Record<string, string>;
}

export interface RangeQuery extends SeriesSelector {
  from: number;
  to: number;
  stepMs: number;
  fn: QueryFn;
}

export interface SeriesPoints {
  metric: Record<string, string>;
  /** [seconds since the epoch (the step's start), value]. */
  values: [number, number][];
}

/** Bounds of one answer, as Prometheus bounds query_range (11,000 points a series). */
export const MAX_QUERY_SERIES = 1_000;
export const MAX_POINTS_PER_SERIES = 11_000;

export class QueryError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** A stored point: a raw sample (cnt 1) or a rollup row; its increase happened within [from, to). */
interface Point {
  ts: number;
  cnt: number;
  sum: number;
  min: number;
  max: number;
  last: number;
  inc: number;
  from: number;
  to: number;
}

/**
 * Range queries over the three tiers: each stretch of time is read from the finest tier that
 * still keeps it (raw for the last hours, 1-minute rollups for the last days, 1-hour rollups
 * beyond), then folded into steps. Counters can be asked as a per-second `rate`, resets
 * counted as restarts from zero.
 */
export class MetricsQuery {
  private readonly statements = new Map<string, Statement>();

  constructor(
    private readonly db: Database,
    private readonly partitions: Partitions,
    private readonly registry: SeriesRegistry,
    private readonly retention: RetentionConfig,
    private readonly now: () => number = Date.now,
    /** Writes samples still waiting for their flush, so that a query sees everything taken in. */
    private readonly flushPending: () => void = () => {},
  ) {}

  select(sel: SeriesSelector): SeriesInfo[] {
    const out: SeriesInfo[] = [];
    for (const id of this.registry.byName.get(sel.name) ?? []) {
      const s = this.registry.info(id);
      if (!s) continue;
      if ((sel.node !== undefined && s.node !== sel.node) || (sel.namespace !== undefined && s.namespace !== sel.namespace) || (sel.pod !== undefined && s.pod !== sel.pod) || (sel.container !== undefined && s.container !== sel.container)) continue;
      if (sel.labels && Object.entries(sel.labels).some(([k, v]) => s.labels[k] !== v)) continue;
      out.push(s);
    }
    return out;
  }

  range(q: RangeQuery): SeriesPoints[] {
    if (!(q.to > q.from)) throw new QueryError('to', 'must be after from');
    if (!(q.stepMs > 0)) throw new QueryError('step', 'must be positive');
    if ((q.to - q.from) / q.stepMs > MAX_POINTS_PER_SERIES) throw new QueryError('step', `too small for the range: at most ${MAX_POINTS_PER_SERIES} points a series`);
    const series = this.select(q);
    if (series.length > MAX_QUERY_SERIES) throw new QueryError('series', `matches ${series.length} series, more than ${MAX_QUERY_SERIES}: narrow it with node, namespace, pod or container`);
    if (q.fn === 'rate' && series.some((s) => s.kind !== 'counter')) throw new QueryError('fn', `rate applies to counters; ${q.name} is a gauge`);
    this.flushPending();
    const segments = this.segments(q.from, q.to);
    return series.map((s) => ({
      metric: { __name__: s.name, node: s.node, ...(s.namespace ? { namespace: s.namespace, pod: s.pod, container: s.container } : {}), ...s.labels },
      values: fold(this.points(s, segments), q),
    }));
  }

  /** Which tier answers which stretch of [from, to): oldest first. */
  private segments(from: number, to: number): { tier: TierName; from: number; to: number }[] {
    const now = this.now();
    const rawFrom = now - this.retention.raw;
    const minuteFrom = now - this.retention['1m'];
    const hourFrom = now - this.retention['1h'];
    const out: { tier: TierName; from: number; to: number }[] = [];
    const add = (tier: TierName, a: number, b: number) => {
      if (b > a) out.push({ tier, from: a, to: b });
    };
    add('1h', Math.max(from, hourFrom), Math.min(to, minuteFrom, rawFrom));
    add('1m', Math.max(from, minuteFrom), Math.min(to, rawFrom));
    add('raw', Math.max(from, rawFrom), to);
    return out;
  }

  private points(s: SeriesInfo, segments: { tier: TierName; from: number; to: number }[]): Point[] {
    const out: Point[] = [];
    let prevRaw: { ts: number; value: number } | undefined;
    for (const seg of segments) {
      for (const p of this.partitions.overlapping(seg.tier, seg.from, seg.to)) {
        if (seg.tier === 'raw') {
          for (const [ts, value] of this.statement(p, 'SELECT ts, value FROM %s WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts').all(s.id, seg.from, seg.to) as [number, number][]) {
            const inc = s.kind === 'counter' && prevRaw ? (value >= prevRaw.value ? value - prevRaw.value : value) : 0;
            // A sample's increase happened since the one before it.
            out.push({ ts, cnt: 1, sum: value, min: value, max: value, last: value, inc, from: prevRaw ? prevRaw.ts : ts, to: ts });
            prevRaw = { ts, value };
          }
        } else {
          const span = RESOLUTION_MS[seg.tier];
          for (const [ts, cnt, sum, min, max, last, inc] of this.statement(p, 'SELECT ts, cnt, sum, min, max, last, inc FROM %s WHERE series = ? AND ts >= ? AND ts < ? ORDER BY ts').all(s.id, seg.from, seg.to) as number[][]) {
            out.push({ ts: ts!, cnt: cnt!, sum: sum!, min: min!, max: max!, last: last!, inc: inc!, from: ts!, to: ts! + span });
          }
        }
      }
    }
    return out;
  }

  private statement(p: Partition, sql: string): Statement {
    const key = `${p.name}:${sql}`;
    let stmt = this.statements.get(key);
    if (!stmt) {
      // Statements of dropped partitions are never asked for again: forget them all now and then.
      if (this.statements.size >= 256) this.statements.clear();
      stmt = this.db.prepare(sql.replace('%s', p.name)).raw();
      this.statements.set(key, stmt);
    }
    return stmt;
  }
}

/** How far back a gauge's last value still answers for a step without samples (the agent sends an unchanged value only in its five-minute keyframes). */
export const GAUGE_LOOKBACK_MS = 6 * 60_000;

/**
 * Points into steps: [step start in seconds, value]. A rate spreads each point's increase over
 * the time it covers, so a counter that stood still (and was not sent) counts as zero there; a
 * gauge's step without samples takes the last value within the lookback. Steps with nothing to
 * say are left out.
 */
function fold(points: Point[], q: RangeQuery): [number, number][] {
  const steps = Math.ceil((q.to - q.from) / q.stepMs);
  const out: [number, number][] = [];
  if (q.fn === 'rate') {
    const inc = new Float64Array(steps);
    const covered = new Float64Array(steps);
    for (const p of points) {
      const a = Math.max(p.from, q.from);
      const b = Math.min(p.to, q.to);
      if (!(b > a) || !(p.to > p.from)) continue;
      for (let k = Math.floor((a - q.from) / q.stepMs); k < steps && q.from + k * q.stepMs < b; k++) {
        const overlap = Math.min(b, q.from + (k + 1) * q.stepMs) - Math.max(a, q.from + k * q.stepMs);
        if (overlap <= 0) continue;
        inc[k]! += (p.inc * overlap) / (p.to - p.from);
        covered[k]! += overlap;
      }
    }
    for (let k = 0; k < steps; k++) if (covered[k]! > 0) out.push([(q.from + k * q.stepMs) / 1000, inc[k]! / (covered[k]! / 1000)]);
    return out;
  }
  let i = 0;
  let carried: { ts: number; value: number } | undefined;
  for (let k = 0; k < steps; k++) {
    const start = q.from + k * q.stepMs;
    const end = start + q.stepMs;
    let cnt = 0;
    let sum = 0;
    let min = Infinity;
    let max = -Infinity;
    let last = 0;
    let lastTs = 0;
    while (i < points.length && points[i]!.ts < end) {
      const p = points[i++]!;
      if (p.ts < start) continue;
      cnt += p.cnt;
      sum += p.sum;
      min = Math.min(min, p.min);
      max = Math.max(max, p.max);
      last = p.last;
      lastTs = p.ts;
    }
    if (cnt > 0) {
      out.push([start / 1000, q.fn === 'avg' ? sum / cnt : q.fn === 'min' ? min : q.fn === 'max' ? max : last]);
      carried = { ts: lastTs, value: last };
    } else if (carried && start - carried.ts <= GAUGE_LOOKBACK_MS) out.push([start / 1000, carried.value]);
  }
  return out;
}
