import { DEFAULT_BODY_LIMIT } from '../api/body.js';
import { withoutServerFields } from '../api/server-fields.js';
import { validateManifest } from '../../shared/resources/validate.js';
import { HubClient, type ClientOptions } from './client.js';
import { CliError } from './errors.js';
import { readManifests, type ManifestObject } from './files.js';
import { applyDryRunPreviews } from './rollout-preview.js';

type Out = (text: string) => void;

interface ApplyResult {
  kind: string;
  name: string;
  namespace?: string;
  action: string;
  warnings: string[];
}

/** What one request to /api/v1/apply may hold: the hub's body limit, less the envelope. */
const BATCH_BYTES = DEFAULT_BODY_LIMIT - 1024;

/**
 * `flotilla apply -f`: the objects go to the hub in as few requests as fit its body limit, so
 * a file of any size can be applied (kubectl sends one request per object). A file that fits
 * in one request is applied all or nothing, in one transaction of the hub. A larger one is
 * checked here first, every object by the hub's own validation, so that a bad field anywhere
 * sends nothing; then each request is all or nothing, and a request that fails does not stop
 * the next ones (as kubectl goes on after an object that fails).
 */
export async function applyCommand(opts: ClientOptions & { filename: string[]; dryRun?: boolean; namespace?: string }, out: Out, err: Out): Promise<void> {
  if (!opts.filename?.length) throw CliError.usage('apply needs -f FILE|DIR|-');
  const objects = await readManifests(opts.filename);
  const client = new HubClient(opts);
  const query = new URLSearchParams();
  if (opts.dryRun) query.set('dryRun', 'All');
  if (opts.namespace) query.set('namespace', opts.namespace);
  const path = `/api/v1/apply${query.size ? `?${query}` : ''}`;

  // Namespaces first, so that a file may create a namespace and fill it, across requests too.
  const namespaces = objects.filter((o) => o.kind === 'Namespace');
  const ordered = [...namespaces, ...objects.filter((o) => o.kind !== 'Namespace')];
  // A dry run writes nothing: a later request would not find the namespaces an earlier one
  // would create, so each request of a dry run carries them again (their lines print once).
  const carried = opts.dryRun ? namespaces : [];
  const batches = packBatches(ordered, BATCH_BYTES - carried.reduce((n, o) => n + o.bytes + 1, 0));
  if (batches.length > 1) validateLocally(ordered);

  const results: ApplyResult[] = [];
  const printed = new Set<string>();
  let failed = 0;
  for (const [i, batch] of batches.entries()) {
    const sent = i > 0 && carried.length ? [...carried, ...batch.filter((o) => o.kind !== 'Namespace')] : batch;
    let answer;
    try {
      answer = await client.request<{ results: ApplyResult[] }>('POST', path, `{"items":[${sent.map((o) => o.json).join(',')}]}`);
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      const named = nameSources(e, sent);
      if (batches.length === 1) throw named;
      failed += batch.length;
      err(`error: ${named.message}`);
      for (const d of named.details) err(`  ${d}`);
      continue;
    }
    for (const r of answer.body.results) {
      const key = `${r.kind}/${r.namespace ?? ''}/${r.name}`;
      if (printed.has(key)) continue;
      printed.add(key);
      // The answer carries each object as stored; what follows needs only its name and action.
      results.push({ kind: r.kind, name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}), action: r.action, warnings: [] });
      for (const w of r.warnings) err(`Warning: ${r.kind.toLowerCase()}/${r.name}: ${w}`);
      out(`${r.kind.toLowerCase()}/${r.name} ${r.action}${opts.dryRun ? ' (dry run)' : ''}`);
    }
  }
  if (failed > 0) throw new CliError(`${failed} of ${objects.length} objects were not applied (sent in ${batches.length} requests; the objects of the requests that succeeded were applied)`);
  // A DaemonSet or Deployment in waves whose template would change: the devices of every wave of the rollout it would start.
  if (opts.dryRun) {
    const workloads = objects.filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment').map((o) => JSON.parse(o.json) as unknown);
    await applyDryRunPreviews(client, workloads, results, opts.namespace, out);
  }
}

/** Objects in order, in groups whose JSON (with the envelope's commas) fits in `capacity` bytes. */
export function packBatches(objects: ManifestObject[], capacity: number): ManifestObject[][] {
  const batches: ManifestObject[][] = [];
  let batch: ManifestObject[] = [];
  let size = 0;
  for (const o of objects) {
    if (batch.length > 0 && size + o.bytes + 1 > capacity) {
      batches.push(batch);
      batch = [];
      size = 0;
    }
    batch.push(o);
    size += o.bytes + 1;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** The hub's validation, on every object, before the first of several requests is sent. */
function validateLocally(objects: ManifestObject[]): void {
  const errors: string[] = [];
  for (const o of objects) {
    const result = validateManifest(withoutServerFields(JSON.parse(o.json)));
    for (const e of result.errors) errors.push(`${o.source}: ${e.path}: ${e.message}`);
  }
  if (errors.length === 0) return;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
  throw new CliError(`invalid manifest: ${errors[0]}${more}; nothing was sent`, 1, errors.length > 1 ? errors : []);
}

/** The hub numbers the objects of a request (`item N`); name their files instead. */
function nameSources(e: CliError, sent: ManifestObject[]): CliError {
  const sources = sent.map((o) => o.source);
  const rename = (text: string) => text.replace(/item (\d+): /g, (m, i: string) => (sources[Number(i)] ? `${sources[Number(i)]}: ` : m));
  // One object: name its file; several: the hub numbers them in the order they were sent.
  const message = sent.length === 1 && e.message.startsWith('invalid manifest') ? `${sources[0]}: ${e.message}` : rename(e.message);
  return new CliError(message, e.exitCode, e.details.map(rename));
}
