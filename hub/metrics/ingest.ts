import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { decodeMetricsBatch, MAX_METRICS_PAYLOAD_BYTES, type MetricsBatch, type SampleValues } from '../../shared/protocol/metrics.js';
import type { Topics } from '../../shared/protocol/topics.js';
import { formatFieldErrors } from '../../shared/resources/validate.js';
import type { MessageBus } from '../broker/bus.js';
import type { Partitions } from './partitions.js';
import type { SeriesRegistry } from './series.js';

/** Why a batch or a sample was not taken; each has its own count in flotilla_metrics_dropped_total. */
export const DROP_REASONS = ['malformed', 'oversized', 'unknown_node', 'late', 'series_limit'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface IngestOptions {
  /** Pending samples that make a flush happen at once. */
  flushRows: number;
  /** How long a sample may wait for its flush. */
  flushDelayMs: number;
  /** A device clock further than this from the hub's is not trusted: its batch is moved to the hub's time. */
  maxClockSkewMs: number;
  /** Samples older than this are dropped: the raw partition they belong to may be rolled up already. */
  maxSampleAgeMs: number;
}

export const INGEST_DEFAULTS: IngestOptions = { flushRows: 5_000, flushDelayMs: 200, maxClockSkewMs: 60_000, maxSampleAgeMs: 5 * 60_000 };
/** Rows a raw insert statement carries. */
const ROWS_PER_INSERT = 16;
/** At most one log line per node and reason this often: a broken device must not flood the hub's log. */
const DROP_LOG_INTERVAL_MS = 60_000;

/**
 * Takes in the metrics batches devices publish on `…/nodes/{node}/metrics`: validated at the
 * boundary (a malformed or oversized message is dropped, logged and counted, never harming the
 * hub), then kept as the newest samples in memory (for /metrics and `top`) and written to the
 * raw partition in batched transactions. A sample not newer than its series' newest is dropped,
 * so nothing replayed or out of order moves a series backwards.
 */
export class MetricsIngest {
  readonly dropped: Record<DropReason, number> = { malformed: 0, oversized: 0, unknown_node: 0, late: 0, series_limit: 0 };
  samplesIngested = 0;
  batchesIngested = 0;
  /** Payload bytes of every metrics message received, taken or not (the uplink metrics cost). */
  bytesReceived = 0;
  /** Samples of codes this hub does not know (a newer agent's): ignored, not an error. */
  unknownSamples = 0;
  /** The newest sample time of each node: a series left out of a later batch was unchanged until then. */
  readonly nodeSeenAt = new Map<string, number>();
  /** The time of each node's newest keyframe: a series not in it is gone (a container removed). */
  readonly nodeKeyframeAt = new Map<string, number>();
  /** The spacing of each node's samples, as last seen. */
  readonly nodeIntervalMs = new Map<string, number>();
  private series: number[] = [];
  private times: number[] = [];
  private values: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly flushTx: () => void;
  private readonly lastDropLog = new Map<string, number>();
  private readonly opts: IngestOptions;

  constructor(
    db: Database,
    private readonly registry: SeriesRegistry,
    private readonly partitions: Partitions,
    private readonly isNode: (name: string) => boolean,
    private readonly log: Logger,
    opts: Partial<IngestOptions> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.opts = { ...INGEST_DEFAULTS, ...opts };
    this.flushTx = db.transaction(() => this.writePending());
  }

  async start(bus: MessageBus, topics: Topics): Promise<void> {
    await bus.subscribe(topics.allNodes('metrics'), (topic, payload) => {
      const parsed = topics.parseNodeTopic(topic);
      if (parsed?.channel === 'metrics') this.accept(parsed.node, payload);
    });
  }

  /** One message from a device; true when it was taken. */
  accept(node: string, payload: Buffer): boolean {
    this.bytesReceived += payload.length;
    if (payload.length > MAX_METRICS_PAYLOAD_BYTES) return this.drop(node, 'oversized', `${payload.length} bytes, over the limit of ${MAX_METRICS_PAYLOAD_BYTES}`);
    const decoded = decodeMetricsBatch(payload);
    if (!decoded.ok) return this.drop(node, 'malformed', formatFieldErrors(decoded.errors));
    if (!this.isNode(node)) return this.drop(node, 'unknown_node', 'no such node');
    this.ingest(node, decoded.value);
    return true;
  }

  /** A decoded batch: its samples become the newest of their series and wait for the next flush. */
  ingest(node: string, batch: MetricsBatch): void {
    const now = this.now();
    const times = batch.times;
    const newest = times[times.length - 1]!;
    // A board without a real-time clock may believe it is 1970: keep its spacing, not its time.
    const shift = Math.abs(newest - now) > this.opts.maxClockSkewMs ? now - newest : 0;
    const oldest = now - this.opts.maxSampleAgeMs;
    let late = 0;
    let capped = 0;
    const add = (namespace: string, pod: string, container: string, series: Record<string, SampleValues>) => {
      const scope = this.registry.scope(node, namespace, pod, container);
      for (const key in series) {
        const id = this.registry.resolveIn(scope, node, namespace, pod, container, key);
        const values = series[key]!;
        if (id === 'unknown') {
          this.unknownSamples += values.length;
          continue;
        }
        if (id === 'capped') {
          capped += values.length;
          continue;
        }
        const divisor = this.registry.info(id)!.divisor;
        for (let i = 0; i < values.length; i++) {
          const v = values[i];
          if (v === null || v === undefined) continue;
          const ts = times[i]! + shift;
          if (ts < oldest) {
            late++;
            continue;
          }
          const value = divisor === 1 ? v : v / divisor;
          if (!this.registry.observe(id, ts, value)) continue;
          this.series.push(id);
          this.times.push(ts);
          this.values.push(value);
        }
      }
    };
    add('', '', '', batch.node);
    for (const c of batch.containers) add(c.ns, c.pod, c.c, c.s);
    if (late) this.drop(node, 'late', `${late} samples older than ${this.opts.maxSampleAgeMs / 1000}s`, late);
    if (capped) this.drop(node, 'series_limit', `${capped} samples of new series beyond the node's limit`, capped);
    const seenBefore = this.nodeSeenAt.get(node);
    if (times.length > 1) this.nodeIntervalMs.set(node, (newest - times[0]!) / (times.length - 1));
    else if (seenBefore !== undefined && newest + shift > seenBefore) this.nodeIntervalMs.set(node, newest + shift - seenBefore);
    this.nodeSeenAt.set(node, Math.max(seenBefore ?? 0, newest + shift));
    if (batch.keyframe) this.nodeKeyframeAt.set(node, times[0]! + shift);
    this.batchesIngested++;
    if (this.series.length >= this.opts.flushRows) this.flush();
    else if (this.series.length > 0 && !this.timer) {
      this.timer = setTimeout(() => this.flush(), this.opts.flushDelayMs);
      this.timer.unref();
    }
  }

  /** Writes every pending sample (and new series) in one transaction. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.series.length === 0) return;
    try {
      this.flushTx();
      this.registry.committed();
    } catch (err) {
      // A full disk, say: the samples are lost (the counters they carry are not), new series are written with the next flush.
      this.log.error({ err: (err as Error).message, samples: this.series.length }, 'metrics samples could not be written; dropped');
      this.partitions.reload();
    }
    this.series = [];
    this.times = [];
    this.values = [];
  }

  stop(): void {
    this.flush();
  }

  /** Pending samples into their raw partitions, ROWS_PER_INSERT at a time where they share one. */
  private writePending(): void {
    this.registry.saveNew(this.now());
    const n = this.series.length;
    const args: number[] = new Array<number>(ROWS_PER_INSERT * 3);
    let i = 0;
    while (i < n) {
      const partition = this.partitions.ensure('raw', this.times[i]!);
      let j = i;
      while (j < n && j - i < ROWS_PER_INSERT && this.times[j]! >= partition.start && this.times[j]! < partition.end) j++;
      if (j - i === ROWS_PER_INSERT) {
        for (let k = 0; k < ROWS_PER_INSERT; k++) {
          args[k * 3] = this.series[i + k]!;
          args[k * 3 + 1] = this.times[i + k]!;
          args[k * 3 + 2] = this.values[i + k]!;
        }
        this.partitions.rawWriter(partition, ROWS_PER_INSERT).run(args);
      } else {
        const one = this.partitions.rawWriter(partition);
        for (let k = i; k < j; k++) one.run(this.series[k], this.times[k], this.values[k]);
      }
      i = j;
    }
    this.samplesIngested += n;
  }

  private drop(node: string, reason: DropReason, detail: string, count = 1): false {
    this.dropped[reason] += count;
    const key = `${node}\0${reason}`;
    const now = this.now();
    if (now - (this.lastDropLog.get(key) ?? -Infinity) >= DROP_LOG_INTERVAL_MS) {
      this.lastDropLog.set(key, now);
      this.log.warn({ node, channel: 'metrics', reason, detail: detail.slice(0, 300) }, 'metrics dropped');
    }
    return false;
  }
}
