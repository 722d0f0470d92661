import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { lookupKind, type KindInfo } from '../../shared/resources/kinds.js';
import { parseSelector, SelectorError } from '../../shared/labels/selector.js';
import { validateLabelValue, validateQualifiedName } from '../../shared/labels/validation.js';
import { HubClient, objectPath, type ClientOptions } from './client.js';
import { describe as describeObject } from './describe.js';
import { CliError } from './errors.js';
import { readManifests } from './files.js';
import { formatObjects, table, type OutputFormat } from './print.js';
import { ProgressLines } from './pull-progress.js';
import { applyDryRunPreviews } from './rollout-preview.js';
import { usageHistory } from './top.js';

type Out = (text: string) => void;
type Obj = Record<string, unknown> & { kind: string; metadata: { name: string; namespace?: string; uid: string; resourceVersion: string; labels?: Record<string, string> } };

export function kindArg(name: string): KindInfo {
  const kind = lookupKind(name.split('/')[0]!);
  if (!kind) throw new CliError(`the server doesn't have a resource type "${name}"`);
  return kind;
}

function outputFormat(o: string | undefined): OutputFormat {
  const f = o ?? 'table';
  if (!['table', 'wide', 'json', 'yaml', 'name'].includes(f)) throw CliError.usage(`unknown output format '${f}' (use table, wide, json, yaml or name)`);
  return f as OutputFormat;
}

function checkSelector(s: string | undefined): string | undefined {
  if (!s) return undefined;
  try {
    parseSelector(s);
  } catch (err) {
    if (err instanceof SelectorError) throw CliError.usage(`invalid selector '${s}': ${err.message}`);
    throw err;
  }
  return s;
}

function printWarnings(warnings: string[], err: Out): void {
  for (const w of warnings) err(`Warning: ${w}`);
}

export async function applyCommand(opts: ClientOptions & { filename: string[]; dryRun?: boolean; namespace?: string }, out: Out, err: Out): Promise<void> {
  if (!opts.filename?.length) throw CliError.usage('apply needs -f FILE|DIR|-');
  const docs = readManifests(opts.filename, () => readFileSync(0, 'utf8'));
  const client = new HubClient(opts);
  const query = new URLSearchParams();
  if (opts.dryRun) query.set('dryRun', 'true');
  if (opts.namespace) query.set('namespace', opts.namespace);
  let answer;
  try {
    answer = await client.request<{ results: { kind: string; name: string; action: string; warnings: string[] }[] }>('POST', `/api/v1/apply${query.size ? `?${query}` : ''}`, { items: docs.map((d) => d.value) });
  } catch (e) {
    // Name the file of each bad field: the hub numbers documents in the order they were sent.
    if (e instanceof CliError) {
      const sources = docs.map((d) => d.source);
      // One document: name its file; several: the hub numbers them in the order they were sent.
      const message = docs.length === 1 && e.message.startsWith('invalid manifest') ? `${sources[0]}: ${e.message}` : renameItems(e.message, sources);
      throw new CliError(message, 1, e.details.map((d) => renameItems(d, sources)));
    }
    throw e;
  }
  for (const r of answer.body.results) {
    printWarnings(r.warnings.map((w) => `${r.kind.toLowerCase()}/${r.name}: ${w}`), err);
    out(`${r.kind.toLowerCase()}/${r.name} ${r.action}${opts.dryRun ? ' (dry run)' : ''}`);
  }
  // A DaemonSet in waves whose template would change: the devices of every wave of the rollout it would start.
  if (opts.dryRun) await applyDryRunPreviews(client, docs.map((d) => d.value), answer.body.results, opts.namespace, out);
}

function renameItems(text: string, sources: string[]): string {
  return text.replace(/item (\d+): /g, (m, i: string) => (sources[Number(i)] ? `${sources[Number(i)]}: ` : m));
}

export async function getCommand(kindName: string, name: string | undefined, opts: ClientOptions & { selector?: string; namespace?: string; allNamespaces?: boolean; output?: string; watch?: boolean }, out: Out): Promise<void> {
  const kind = kindArg(kindName);
  const format = outputFormat(opts.output);
  const selector = checkSelector(opts.selector);
  const client = new HubClient(opts);
  const namespace = kind.namespaced ? (opts.allNamespaces ? undefined : (opts.namespace ?? 'default')) : undefined;
  const all = kind.namespaced && opts.allNamespaces;
  if (name) {
    const { body } = await client.request<Obj>('GET', objectPath(kind.plural, kind.namespaced, namespace ?? 'default', name));
    out(formatObjects(kind.kind, [body], format, { list: false }));
    if (!opts.watch) return;
  }
  const query = new URLSearchParams();
  if (selector) query.set('labelSelector', selector);
  const path = objectPath(kind.plural, kind.namespaced, namespace);
  const { body } = await client.request<{ items: Obj[]; metadata: { resourceVersion: string } }>('GET', `${path}${query.size ? `?${query}` : ''}`);
  const items = name ? body.items.filter((o) => o.metadata.name === name) : body.items;
  if (!name) {
    // -o json|yaml print the list exactly as the API returns it (docs/ARCHITECTURE.md, 'The command line').
    if (format === 'json') out(JSON.stringify(body, null, 2));
    else if (format === 'yaml') out(stringify(body).trimEnd());
    else if (items.length === 0 && format !== 'name') out(kind.namespaced && !all ? `No resources found in ${namespace} namespace.` : 'No resources found');
    else out(formatObjects(kind.kind, items, format, { allNamespaces: Boolean(all) }));
  }
  if (!opts.watch) return;
  query.set('watch', 'true');
  query.set('resourceVersion', body.metadata.resourceVersion);
  // On a terminal, an image pull's progress events show as one line that grows (docs/ARCHITECTURE.md, 'The command line').
  const progress = kind.kind === 'Event' && process.stdout.isTTY && (format === 'table' || format === 'wide') ? new ProgressLines() : undefined;
  await client.watch(`${path}?${query}`, (event) => {
    const o = event.object as Obj;
    if (name && o.metadata.name !== name) return;
    if (format === 'json') out(JSON.stringify(event));
    else if (format === 'yaml') out(formatObjects(kind.kind, [o], 'yaml', { list: false }) + '\n---');
    else out(`${progress?.prefix(o) ?? ''}${formatObjects(kind.kind, [o], format, { allNamespaces: Boolean(all), headers: false })}${event.type === 'DELETED' ? '   (deleted)' : ''}`);
  });
}

export async function describeCommand(kindName: string, name: string, opts: ClientOptions & { namespace?: string }, out: Out): Promise<void> {
  const kind = kindArg(kindName);
  const client = new HubClient(opts);
  const ns = kind.namespaced ? (opts.namespace ?? 'default') : undefined;
  const { body } = await client.request<Obj>('GET', objectPath(kind.plural, kind.namespaced, ns, name));
  const events = await client.request<{ items: never[] }>('GET', objectPath('events', true, kind.namespaced ? ns : 'default'));
  // A Service is shown with its Endpoints, as kubectl does (none yet is not an error).
  const endpoints = kind.kind === 'Service' ? await client.request<Obj>('GET', objectPath('endpoints', true, ns, name)).then((r) => r.body, () => undefined) : undefined;
  const usage = kind.kind === 'Pod' || kind.kind === 'Node' ? await usageHistory(opts, body as Obj & { spec?: unknown }).catch(() => []) : [];
  // A Deployment is shown with its ReplicaSets, old and new, as kubectl does.
  const replicaSets = kind.kind === 'Deployment' ? (await client.request<{ items: Obj[] }>('GET', objectPath('replicasets', true, ns))).body.items : undefined;
  // A DaemonSet or a Deployment in waves is shown with its current rollout (hub/cli/rollout-waves-render.ts).
  const wavesSpec = body.spec as { updateStrategy?: { type?: string }; strategy?: { type?: string } } | undefined;
  const inWaves = (kind.kind === 'DaemonSet' && wavesSpec?.updateStrategy?.type === 'Waves') || (kind.kind === 'Deployment' && wavesSpec?.strategy?.type === 'Waves');
  const rollouts = inWaves ? await client.request<{ items: Obj[] }>('GET', objectPath('rollouts', true, ns)).then((r) => r.body.items, () => []) : undefined;
  out(describeObject(body, events.body.items, { ...(endpoints ? { endpoints } : {}), usage, ...(replicaSets ? { replicaSets } : {}), ...(rollouts ? { rollouts } : {}) }));
}

export async function deleteCommand(kindName: string | undefined, names: string[], opts: ClientOptions & { filename?: string[]; namespace?: string }, out: Out): Promise<void> {
  const client = new HubClient(opts);
  const targets: { kind: KindInfo; name: string; namespace?: string }[] = [];
  if (opts.filename?.length) {
    for (const doc of readManifests(opts.filename, () => readFileSync(0, 'utf8'))) {
      const v = doc.value as { kind?: string; metadata?: { name?: string; namespace?: string } };
      if (!v?.kind || !v.metadata?.name) throw new CliError(`${doc.source}: kind and metadata.name are required`);
      const kind = kindArg(v.kind);
      targets.push({ kind, name: v.metadata.name, ...(kind.namespaced ? { namespace: v.metadata.namespace ?? opts.namespace ?? 'default' } : {}) });
    }
  } else {
    if (!kindName) throw CliError.usage('delete needs KIND NAME or -f FILE');
    const [k, inlineName] = kindName.split('/');
    const kind = kindArg(k!);
    const all = inlineName ? [inlineName, ...names] : names;
    if (all.length === 0) throw CliError.usage(`delete ${kindName} needs a NAME`);
    for (const name of all) targets.push({ kind, name, ...(kind.namespaced ? { namespace: opts.namespace ?? 'default' } : {}) });
  }
  let failed: CliError | undefined;
  for (const t of targets) {
    try {
      await client.request('DELETE', objectPath(t.kind.plural, t.kind.namespaced, t.namespace, t.name));
      out(`${t.kind.singular}/${t.name} deleted`);
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      failed = e;
      process.stderr.write(`Error: ${e.message}\n`);
    }
  }
  if (failed) throw new CliError(failed.message, 1, [], );
}

export async function labelCommand(kindName: string, name: string, changes: string[], opts: ClientOptions & { overwrite?: boolean; namespace?: string }, out: Out): Promise<void> {
  const kind = kindArg(kindName);
  if (changes.length === 0) throw CliError.usage('label needs at least one change: key=value or key-');
  const set: Record<string, string> = {};
  const remove: string[] = [];
  for (const change of changes) {
    if (change.endsWith('-') && !change.includes('=')) {
      remove.push(change.slice(0, -1));
      continue;
    }
    const eq = change.indexOf('=');
    if (eq <= 0) throw CliError.usage(`invalid label change '${change}': use key=value to set or key- to remove`);
    const key = change.slice(0, eq);
    const value = change.slice(eq + 1);
    const problems = [...validateQualifiedName(key), ...validateLabelValue(value)];
    if (problems.length) throw CliError.usage(`invalid label '${change}': ${problems.join('; ')}`);
    set[key] = value;
  }
  const client = new HubClient(opts);
  const ns = kind.namespaced ? (opts.namespace ?? 'default') : undefined;
  const path = objectPath(kind.plural, kind.namespaced, ns, name);
  const { body: current } = await client.request<Obj>('GET', path);
  const labels = current.metadata.labels ?? {};
  for (const [k, v] of Object.entries(set)) {
    // kubectl refuses to change an existing value unless --overwrite is given.
    if (k in labels && labels[k] !== v && !opts.overwrite) throw new CliError(`'${k}' already has a value (${labels[k]}), and --overwrite is false`);
  }
  const patch = { metadata: { resourceVersion: current.metadata.resourceVersion, labels: { ...set, ...Object.fromEntries(remove.map((k) => [k, null])) } } };
  const { warnings } = await client.request('PATCH', path, patch, 'application/merge-patch+json');
  void warnings;
  out(`${kind.singular}/${name} labeled`);
}

export async function tokenCommand(action: string, id: string | undefined, opts: ClientOptions & { description?: string; ttl?: string; output?: string; labels?: string; labelPrefix?: string[] }, out: Out): Promise<void> {
  // Flags are checked before the hub is asked anything: a usage error needs no hub.
  const labels = opts.labels === undefined ? undefined : parseLabelPairs(opts.labels, '--labels');
  const client = new HubClient(opts);
  if (action === 'create') {
    const ttlSeconds = opts.ttl ? parseDuration(opts.ttl) : undefined;
    const labelPrefixes = opts.labelPrefix?.flatMap((p) => p.split(',')).map((p) => p.trim());
    const { body } = await client.request<{ token: string }>('POST', '/api/v1/tokens', {
      ...(opts.description ? { description: opts.description } : {}),
      ...(ttlSeconds ? { ttlSeconds } : {}),
      ...(labels ? { labels } : {}),
      ...(labelPrefixes ? { labelPrefixes } : {}),
    });
    out(body.token);
    return;
  }
  if (action === 'list') {
    const { body } = await client.request<{ items: { id: string; kind: string; node: string | null; description: string; createdAt: string; expiresAt: string | null; revokedAt: string | null; labels?: Record<string, string>; labelPrefixes?: string[] }[] }>('GET', '/api/v1/tokens');
    if (opts.output === 'json') return out(JSON.stringify(body, null, 2));
    // A join token's label rule: its labels, and its prefixes ending in '*'; '*' for no rule (any label outside the reserved prefix).
    const rule = (t: (typeof body.items)[number]) => (t.kind !== 'join' ? '-' : t.labels || t.labelPrefixes ? [...Object.entries(t.labels ?? {}).map(([k, v]) => `${k}=${v}`), ...(t.labelPrefixes ?? []).map((p) => `${p}*`)].join(',') || '(none)' : '*');
    out(table([['ID', 'KIND', 'NODE', 'CREATED', 'EXPIRES', 'REVOKED', 'LABELS', 'DESCRIPTION'], ...body.items.map((t) => [t.id, t.kind, t.node ?? '-', t.createdAt, t.expiresAt ?? '-', t.revokedAt ?? '-', rule(t), t.description])]));
    return;
  }
  if (action === 'revoke') {
    if (!id) throw CliError.usage('token revoke needs a token id (see `flotilla token list`)');
    await client.request('DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
    out(`token ${id} revoked`);
    return;
  }
  throw CliError.usage(`unknown token action '${action}' (use create, list or revoke)`);
}

/** Durations as Kubernetes and Go write them: 90s, 10m, 1h30m, 7d. */
export function parseDuration(text: string): number {
  const re = /(\d+)(d|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    total += Number(m[1]) * { d: 86400, h: 3600, m: 60, s: 1 }[m[2] as 'd' | 'h' | 'm' | 's'];
    consumed += m[0].length;
  }
  if (consumed !== text.length || total <= 0) throw CliError.usage(`invalid duration '${text}' (use e.g. 90s, 10m, 24h, 7d)`);
  return total;
}

/** `k=v,k2=v2` as a map; the hub checks the keys and values. */
function parseLabelPairs(text: string, flag: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of text.split(',').filter((p) => p.trim() !== '')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw CliError.usage(`${flag}: '${pair}' is not key=value`);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return labels;
}
