import type { Logger } from 'pino';
import { encodeMetricsBatch, type ContainerSeries, type MetricsBatch, type SampleValues } from '../../shared/protocol/metrics.js';
import { INFRA_CONTAINER, LABEL_CONTAINER, LABEL_NAMESPACE, LABEL_POD, LABEL_RESTART_COUNT, type ContainerRuntime, type ContainerStats, type RuntimeContainer } from '../runtime/runtime.js';
import { NodeReader, type Emit } from './proc.js';

/**
 * A batch carrying every series, changed or not, at least this often (shared/protocol/metrics.ts):
 * Prometheus' own five minutes of staleness. Between keyframes only changes travel.
 */
export const KEYFRAME_INTERVAL_MS = 300_000;

export interface MetricsCollectorOptions {
  runtime: ContainerRuntime;
  /** The containers the agent saw last (its reconcile's list): no extra listing of the engine. */
  containers: () => readonly RuntimeContainer[];
  /** The paths whose file systems are reported: the state directory and the engine's data root. */
  fsPaths: () => readonly (string | undefined)[];
  /** Sends one encoded batch; false when it could not (not connected). */
  publish: (payload: Buffer) => boolean;
  log: Logger;
  reader?: NodeReader;
  now?: () => number;
  /** More node series, from what the agent already holds (the overlay's figures): no extra reading. */
  nodeExtras?: (emit: Emit) => void;
}

/**
 * Samples the node (/proc, /sys) and every running container of the node (one reading of the
 * engine's stats each, all asked at once) every interval, and publishes one batch per
 * sample, QoS 0. Frugal by design: a series is sent only when its value changed since the last
 * batch that went out, and everything every five minutes (a keyframe); nothing but the last values
 * sent is kept between samples.
 */
export class MetricsCollector {
  private timer: NodeJS.Timeout | undefined;
  private intervalMs = 0;
  private busy = false;
  private lastSent = new Map<string, number>();
  private lastKeyframeAt = -Infinity;
  private readonly reader: NodeReader;
  private readonly now: () => number;
  /** What went out, for the curious (and the tests). */
  batchesSent = 0;
  bytesSent = 0;

  constructor(private readonly opts: MetricsCollectorOptions) {
    this.reader = opts.reader ?? new NodeReader();
    this.now = opts.now ?? Date.now;
  }

  /** Samples every `seconds` from now on (0: stops sampling); the same period again changes nothing. */
  setInterval(seconds: number): void {
    const ms = Math.round(seconds * 1000);
    if (ms === this.intervalMs) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.intervalMs = ms;
    if (ms <= 0) return;
    this.opts.log.info({ intervalSeconds: seconds }, 'metrics sampling interval');
    this.timer = setInterval(() => void this.tick(), ms);
    this.timer.unref();
  }

  stop(): void {
    this.setInterval(0);
  }

  /** One sample, published. Skipped while the previous one is still reading (a slow engine). */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const next = new Map<string, number>();
      const batch = await this.sample(next);
      const payload = encodeMetricsBatch(batch);
      if (this.opts.publish(payload)) {
        this.lastSent = next;
        if (batch.keyframe) this.lastKeyframeAt = batch.times[0]!;
        this.batchesSent++;
        this.bytesSent += payload.length;
        this.opts.log.debug({ bytes: payload.length, keyframe: batch.keyframe, containers: batch.containers.length }, 'metrics batch sent');
      } else this.lastKeyframeAt = -Infinity; // the next batch that goes out carries everything
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'metrics sample failed');
    } finally {
      this.busy = false;
    }
  }

  /** Reads one sample; `next` receives every value read (keyed by scope and series) for the next comparison. */
  async sample(next: Map<string, number>): Promise<MetricsBatch> {
    // All at once: the engine answers every one-shot read from the same collection tick (it
    // collects once a second), where one after the other would cost a second each.
    const running = this.opts.runtime.containerStats ? this.opts.containers().filter((c) => c.state === 'running' && c.labels[LABEL_CONTAINER] && c.labels[LABEL_NAMESPACE] && c.labels[LABEL_POD]) : [];
    const stats = await Promise.all(
      running.map((c) =>
        this.opts.runtime.containerStats!(c.id).catch((err: Error) => {
          this.opts.log.debug({ container: c.name, err: err.message }, 'no stats for a container');
          return undefined;
        }),
      ),
    );
    // The node is read right after, so that one sample time fits both.
    const at = this.now();
    const keyframe = at - this.lastKeyframeAt >= KEYFRAME_INTERVAL_MS;
    const last = this.lastSent;
    const node: Record<string, SampleValues> = {};
    const memTotal = this.reader.read(
      this.opts.fsPaths().filter((p): p is string => p !== undefined),
      (key, value) => {
        next.set(key, value);
        if (keyframe || last.get(key) !== value) node[key] = [value];
      },
    );
    this.opts.nodeExtras?.((key, value) => {
      next.set(key, value);
      if (keyframe || last.get(key) !== value) node[key] = [value];
    });
    const containers: ContainerSeries[] = [];
    running.forEach((c, i) => {
      const reading = stats[i];
      if (!reading) return;
      const name = c.labels[LABEL_CONTAINER]!;
      const ns = c.labels[LABEL_NAMESPACE]!;
      const pod = c.labels[LABEL_POD]!;
      const id = c.id.slice(0, 12);
      const scope = `${ns}/${pod}/${name}/${id}:`;
      const s: Record<string, SampleValues> = {};
      let any = false;
      const emit: Emit = (key, value) => {
        next.set(scope + key, value);
        if (keyframe || last.get(scope + key) !== value) {
          s[key] = [value];
          any = true;
        }
      };
      if (name === INFRA_CONTAINER) emitNetworks(reading, emit);
      else emitContainer(reading, Number(c.labels[LABEL_RESTART_COUNT] ?? '0') || 0, memTotal, emit);
      if (any) containers.push({ ns, pod, c: name, id, s });
    });
    return { times: [at], keyframe, node, containers };
  }
}

const ms = (ns: number) => Math.round(ns / 1e6);

/** An app container's series (CONTAINER_CODES); a limit at or above the node's memory is no limit (0), as cAdvisor shows it. */
export function emitContainer(stats: ContainerStats, restarts: number, memTotal: number | undefined, emit: Emit): void {
  if (stats.cpuTotalNs !== undefined) emit('cpu', ms(stats.cpuTotalNs));
  if (stats.cpuUserNs !== undefined) emit('cpu_user', ms(stats.cpuUserNs));
  if (stats.cpuSystemNs !== undefined) emit('cpu_sys', ms(stats.cpuSystemNs));
  if (stats.memoryUsageBytes !== undefined) emit('mem', stats.memoryUsageBytes);
  if (stats.memoryWorkingSetBytes !== undefined) emit('mem_ws', stats.memoryWorkingSetBytes);
  if (stats.memoryRssBytes !== undefined) emit('mem_rss', stats.memoryRssBytes);
  if (stats.memoryCacheBytes !== undefined) emit('mem_cache', stats.memoryCacheBytes);
  if (stats.memoryLimitBytes !== undefined) emit('mem_limit', memTotal !== undefined && stats.memoryLimitBytes >= memTotal ? 0 : stats.memoryLimitBytes);
  if (stats.blockReadBytes !== undefined) emit('io_rd', stats.blockReadBytes);
  if (stats.blockWriteBytes !== undefined) emit('io_wr', stats.blockWriteBytes);
  if (stats.pids !== undefined) emit('pids', stats.pids);
  emit('restarts', restarts);
}

/** A pod's network, from its infra container (the owner of the pod's network namespace). */
export function emitNetworks(stats: ContainerStats, emit: Emit): void {
  for (const [iface, n] of Object.entries(stats.networks ?? {})) {
    if (iface.includes('|')) continue;
    emit(`net_rxb|${iface}`, n.rxBytes);
    emit(`net_rxp|${iface}`, n.rxPackets);
    emit(`net_rxe|${iface}`, n.rxErrors);
    emit(`net_rxd|${iface}`, n.rxDropped);
    emit(`net_txb|${iface}`, n.txBytes);
    emit(`net_txp|${iface}`, n.txPackets);
    emit(`net_txe|${iface}`, n.txErrors);
    emit(`net_txd|${iface}`, n.txDropped);
  }
}
