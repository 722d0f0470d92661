import type { ManifestDocument } from '../../shared/resources/manifest.js';
import { isPlainObject } from '../../shared/resources/fields.js';

/**
 * Fields of `metadata` that the hub writes and a manifest may still carry: what
 * `get -o yaml` prints, or what `kubectl create … --dry-run=client -o yaml` prints
 * (`creationTimestamp: null`, Go's zero time). They are ignored on the way in.
 */
const SERVER_METADATA = ['creationTimestamp', 'managedFields', 'selfLink', 'generation', 'uid', 'deletionTimestamp', 'deletionGracePeriodSeconds'] as const;

/** Where a workload keeps the metadata of its pod template (Deployment, DaemonSet, Job, CronJob …). */
const TEMPLATE_PATHS = [['spec', 'template'], ['spec', 'jobTemplate'], ['spec', 'jobTemplate', 'spec', 'template']];

/**
 * A manifest without the server's fields: `creationTimestamp: null` and the like would
 * otherwise be refused or warned about, although Kubernetes takes them. `listItem` also drops
 * resourceVersion and status: the items of a listing are a snapshot whose versions go stale as
 * soon as a device reports, so applying a listing back applies what its items say.
 */
export function withoutServerFields(value: unknown, opts: { listItem?: boolean } = {}): unknown {
  if (!isPlainObject(value) || !isPlainObject(value.metadata)) return value;
  const metadata = { ...value.metadata };
  for (const field of SERVER_METADATA) {
    // A single object's uid and timestamps are accepted as they are (validation ignores them);
    // only the forms that would be refused or warned about go, unless it is a list item.
    if (opts.listItem || metadata[field] === null || field === 'managedFields' || field === 'selfLink') delete metadata[field];
  }
  if (opts.listItem) delete metadata.resourceVersion;
  const out: Record<string, unknown> = { ...value, metadata };
  if (opts.listItem) delete out.status;
  for (const path of TEMPLATE_PATHS) dropNullTimestamp(out, path);
  return out;
}

/** `creationTimestamp: null` in a template's metadata (kubectl prints it there too), on a copy. */
function dropNullTimestamp(root: Record<string, unknown>, path: string[]): void {
  let parent: Record<string, unknown> = root;
  for (const key of path) {
    const child = parent[key];
    if (!isPlainObject(child)) return;
    parent[key] = { ...child };
    parent = parent[key] as Record<string, unknown>;
  }
  if (isPlainObject(parent.metadata) && parent.metadata.creationTimestamp === null) {
    const { creationTimestamp: _null, ...rest } = parent.metadata;
    parent.metadata = rest;
  }
}

/** A list kind as the API and `get -o yaml|json` print it: `PodList`, `DaemonSetList` …, or `List`. */
export function isListing(value: unknown): value is { kind: string; items: unknown[] } {
  return isPlainObject(value) && typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items);
}

/** Listings replaced by their items, each without the server's fields (withoutServerFields). */
export function expandLists(docs: ManifestDocument[]): ManifestDocument[] {
  if (!docs.some((d) => isListing(d.value))) return docs;
  return docs.flatMap((d) => (isListing(d.value) ? d.value.items.map((item, i) => ({ source: `${d.source} item ${i}`, value: withoutServerFields(item, { listItem: true }) })) : [d]));
}
