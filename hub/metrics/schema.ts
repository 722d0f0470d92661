/**
 * The metrics store's fixed tables (hub/store/schema.ts runs this as one migration). Samples
 * themselves live in time partitions, one table per tier and span (partitions.ts), created as
 * data arrives and dropped whole when they fall out of retention: pruning is a DROP TABLE, never
 * a long DELETE that would stall the API.
 *
 * metric_series: one row per series; `key` is its wire key (shared/protocol/metrics.ts), `name`
 *   its Prometheus name, `labels` the JSON object of the labels beyond
 *   node/namespace/pod/container (e.g. {"mode":"user"}), `last_seen` the newest sample time (ms)
 *   known when it was last written, so series without data in any tier can be forgotten.
 * metric_partitions: the catalog of partition tables; `rolled` marks a raw partition whose
 *   samples have been rolled up into the 1-minute and 1-hour tiers.
 */
export const METRICS_MIGRATION = `
CREATE TABLE metric_series (
  id        INTEGER PRIMARY KEY,
  node      TEXT NOT NULL,
  namespace TEXT NOT NULL,
  pod       TEXT NOT NULL,
  container TEXT NOT NULL,
  key       TEXT NOT NULL,
  name      TEXT NOT NULL,
  labels    TEXT NOT NULL,
  kind      TEXT NOT NULL CHECK (kind IN ('counter', 'gauge')),
  last_seen INTEGER NOT NULL,
  UNIQUE (node, namespace, pod, container, key)
);
CREATE TABLE metric_partitions (
  tier   TEXT NOT NULL,
  start  INTEGER NOT NULL,
  end    INTEGER NOT NULL,
  name   TEXT NOT NULL UNIQUE,
  rolled INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tier, start)
) WITHOUT ROWID;
`;
