import { CONTAINER_CODES, NODE_CODES, type MetricCode } from '../../shared/protocol/metrics.js';
import { DROP_REASONS, type MetricsIngest } from './ingest.js';
import { formatFamily, formatSample, type Family } from './prometheus.js';
import type { SeriesRegistry } from './series.js';

/** A node not heard from for this long (or three of its intervals, if longer) has its series left out. */
export const NODE_STALE_MS = 5 * 60_000;

const CODES_BY_NAME = new Map<string, MetricCode>([...Object.values(NODE_CODES), ...Object.values(CONTAINER_CODES)].map((c) => [c.name, c]));

/**
 * The devices' series as /metrics shows them: cAdvisor's and node_exporter's names and labels
 * (plus `node`), each at its newest sample with the device's sample time. A series is shown
 * while its node reports and it was in the node's newest keyframe (a container gone, or a pod
 * deleted, drops out by the next keyframe, within five minutes, as Prometheus' staleness).
 * Counters never go backwards here but for a real reset: samples not newer than the newest are
 * refused at ingest, and the engine's and kernel's counters are cumulative across an agent
 * restart; a recreated container starts again from zero.
 */
export function* deviceFamilies(registry: SeriesRegistry, ingest: MetricsIngest, now: number): Generator<string> {
  const current = (node: string) => {
    const seen = ingest.nodeSeenAt.get(node) ?? 0;
    return now - seen <= Math.max(NODE_STALE_MS, 3 * (ingest.nodeIntervalMs.get(node) ?? 0));
  };
  for (const name of [...registry.byName.keys()].sort()) {
    const code = CODES_BY_NAME.get(name);
    const ids = registry.byName.get(name)!;
    if (!code || ids.size === 0) continue;
    let text = '';
    for (const id of ids) {
      const s = registry.info(id);
      const ts = registry.lastTs[id]!;
      if (!s || !(ts > 0) || !current(s.node) || ts < (ingest.nodeKeyframeAt.get(s.node) ?? 0)) continue;
      text += formatSample(name, { labelText: s.labelText, value: registry.lastValue[id]!, timestampMs: ts });
    }
    if (text) yield `# HELP ${name} ${code.help}\n# TYPE ${name} ${code.kind}\n${text}`;
  }
}

/** The metrics store's own counters. */
export function ingestFamilies(registry: SeriesRegistry, ingest: MetricsIngest): Family[] {
  return [
    { name: 'flotilla_metrics_dropped_total', help: 'Metrics batches or samples from devices that were refused, by reason.', type: 'counter', samples: DROP_REASONS.map((reason) => ({ labels: { reason }, value: ingest.dropped[reason] })) },
    { name: 'flotilla_metrics_samples_ingested_total', help: 'Samples from devices written to the metrics store.', type: 'counter', samples: [{ value: ingest.samplesIngested }] },
    { name: 'flotilla_metrics_batches_ingested_total', help: 'Metrics batches from devices taken in.', type: 'counter', samples: [{ value: ingest.batchesIngested }] },
    { name: 'flotilla_metrics_received_bytes_total', help: 'Payload bytes of the metrics messages devices sent.', type: 'counter', samples: [{ value: ingest.bytesReceived }] },
    { name: 'flotilla_metrics_series', help: 'Series the metrics store knows.', type: 'gauge', samples: [{ value: registry.size }] },
  ];
}

/** The whole /metrics body, family by family. */
export function* exposition(hubFamilies: Family[], registry: SeriesRegistry, ingest: MetricsIngest, now: number): Generator<string> {
  yield* deviceFamilies(registry, ingest, now);
  for (const f of [...hubFamilies, ...ingestFamilies(registry, ingest)]) yield formatFamily(f);
}
