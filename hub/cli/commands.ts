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

export { applyCommand } from './apply.js';

/**
 * `KIND NAME…` or `KIND/NAME`, as kubectl takes them: `get pod/web`, `describe pod/web`,
 * `label node/pi-1 k=v`. With KIND/NAME, what follows is not a name.
 */
export function kindAndName(kindName: string, names: string[]): { kind: KindInfo; names: string[]; inline: boolean } {
  const slash = kindName.indexOf('/');
  if (slash < 0) return { kind: kindArg(kindName), names, inline: false };
  const name = kindName.slice(slash + 1);
  if (name === '') throw CliError.usage(`'${kindName}': a name is needed after the slash`);
  return { kind: kindArg(kindName.slice(0, slash)), names: [name], inline: true };
}

export async function getCommand(kindName: string, nameArgs: string[], opts: ClientOptions & { selector?: string; namespace?: string; allNamespaces?: boolean; output?: string; watch?: boolean }, out: Out): Promise<void> {
  const { kind, names, inline } = kindAndName(kindName, nameArgs);
  if (inline && nameArgs.length > 0) throw CliError.usage(`there is no need to name a kind again after ${kindName}: use ${kindName} alone, or ${kind.plural} NAME...`);
  const format = outputFormat(opts.output);
  const selector = checkSelector(opts.selector);
  // As kubectl: names and a selector together would leave one of them unused.
  if (names.length > 0 && selector) throw CliError.usage('a name cannot be given with a selector (-l)');
  const client = new HubClient(opts);
  const namespace = kind.namespaced ? (opts.allNamespaces ? undefined : (opts.namespace ?? 'default')) : undefined;
  const all = kind.namespaced && opts.allNamespaces;
  if (names.length > 0) {
    const found: Obj[] = [];
    for (const name of names) found.push((await client.request<Obj>('GET', objectPath(kind.plural, kind.namespaced, namespace ?? 'default', name))).body);
    // One object prints as itself; several as a list, as kubectl prints them.
    if (found.length === 1) out(formatObjects(kind.kind, found, format, { list: false }));
    else if (format === 'json') out(JSON.stringify({ kind: 'List', apiVersion: 'flotilla/v1', items: found }, null, 2));
    else if (format === 'yaml') out(stringify({ kind: 'List', apiVersion: 'flotilla/v1', items: found }).trimEnd());
    else out(formatObjects(kind.kind, found, format, {}));
    if (!opts.watch) return;
  }
  const query = new URLSearchParams();
  if (selector) query.set('labelSelector', selector);
  const path = objectPath(kind.plural, kind.namespaced, namespace);
  const { body } = await client.request<{ items: Obj[]; metadata: { resourceVersion: string } }>('GET', `${path}${query.size ? `?${query}` : ''}`);
  if (names.length === 0) {
    // -o json|yaml print the list exactly as the API returns it (docs/ARCHITECTURE.md, 'The command line').
    if (format === 'json') out(JSON.stringify(body, null, 2));
    else if (format === 'yaml') out(stringify(body).trimEnd());
    else if (body.items.length === 0 && format !== 'name') out(kind.namespaced && !all ? `No resources found in ${namespace} namespace.` : 'No resources found');
    else out(formatObjects(kind.kind, body.items, format, { allNamespaces: Boolean(all) }));
  }
  if (!opts.watch) return;
  query.set('watch', 'true');
  query.set('resourceVersion', body.metadata.resourceVersion);
  // On a terminal, an image pull's progress events show as one line that grows (docs/ARCHITECTURE.md, 'The command line').
  const progress = kind.kind === 'Event' && process.stdout.isTTY && (format === 'table' || format === 'wide') ? new ProgressLines() : undefined;
  await client.watch(`${path}?${query}`, (event) => {
    const o = event.object as Obj;
    if (names.length > 0 && !names.includes(o.metadata.name)) return;
    if (format === 'json') out(JSON.stringify(event));
    else if (format === 'yaml') out(formatObjects(kind.kind, [o], 'yaml', { list: false }) + '\n---');
    else out(`${progress?.prefix(o) ?? ''}${formatObjects(kind.kind, [o], format, { allNamespaces: Boolean(all), headers: false })}${event.type === 'DELETED' ? '   (deleted)' : ''}`);
  });
}

/** `describe KIND NAME…` or `describe KIND/NAME`; `describe KIND` alone describes every object of the kind, as kubectl does. */
export async function describeCommand(kindName: string, nameArgs: string[], opts: ClientOptions & { namespace?: string }, out: Out): Promise<void> {
  const { kind, names, inline } = kindAndName(kindName, nameArgs);
  if (inline && nameArgs.length > 0) throw CliError.usage(`there is no need to name a kind again after ${kindName}: use ${kindName} alone, or ${kind.plural} NAME...`);
  const client = new HubClient(opts);
  const ns = kind.namespaced ? (opts.namespace ?? 'default') : undefined;
  const targets = names.length > 0 ? names : (await client.request<{ items: Obj[] }>('GET', objectPath(kind.plural, kind.namespaced, ns))).body.items.map((o) => o.metadata.name);
  if (targets.length === 0) return out(kind.namespaced ? `No resources found in ${ns} namespace.` : 'No resources found');
  const texts: string[] = [];
  for (const name of targets) texts.push(await describeOne(client, kind, ns, name, opts));
  out(texts.join('\n\n'));
}

async function describeOne(client: HubClient, kind: KindInfo, ns: string | undefined, name: string, opts: ClientOptions): Promise<string> {
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
  return describeObject(body, events.body.items, { ...(endpoints ? { endpoints } : {}), usage, ...(replicaSets ? { replicaSets } : {}), ...(rollouts ? { rollouts } : {}) });
}

/**
 * `delete KIND NAME…`, `delete KIND/NAME…` or `delete -f FILE`: each object is deleted on its
 * own, and each one the hub refuses is reported once, on stderr (as kubectl: `Error from
 * server`); the others are still deleted, and the exit status is 1.
 */
export async function deleteCommand(kindName: string | undefined, names: string[], opts: ClientOptions & { filename?: string[]; namespace?: string; dryRun?: boolean }, out: Out, err: Out): Promise<void> {
  const targets: { kind: KindInfo; name: string; namespace?: string }[] = [];
  if (opts.filename?.length) {
    if (kindName) throw CliError.usage('delete takes KIND NAME or -f FILE, not both');
    for (const o of await readManifests(opts.filename)) {
      if (!o.kind || !o.name) throw new CliError(`${o.source}: kind and metadata.name are required`);
      const kind = kindArg(o.kind);
      targets.push({ kind, name: o.name, ...(kind.namespaced ? { namespace: o.namespace ?? opts.namespace ?? 'default' } : {}) });
    }
  } else {
    if (!kindName) throw CliError.usage('delete needs KIND NAME or -f FILE');
    // `delete pod/a pod/b` and `delete pods a b` both work, as in kubectl.
    if (kindName.includes('/')) {
      for (const arg of [kindName, ...names]) {
        if (!arg.includes('/')) throw CliError.usage(`'${arg}': after ${kindName}, name each object as KIND/NAME`);
        const { kind, names: [name] } = kindAndName(arg, []);
        targets.push({ kind, name: name!, ...(kind.namespaced ? { namespace: opts.namespace ?? 'default' } : {}) });
      }
    } else {
      const kind = kindArg(kindName);
      if (names.length === 0) throw CliError.usage(`delete ${kindName} needs a NAME`);
      for (const name of names) targets.push({ kind, name, ...(kind.namespaced ? { namespace: opts.namespace ?? 'default' } : {}) });
    }
  }
  const client = new HubClient(opts);
  let failed = 0;
  for (const t of targets) {
    try {
      await client.request('DELETE', `${objectPath(t.kind.plural, t.kind.namespaced, t.namespace, t.name)}${opts.dryRun ? '?dryRun=All' : ''}`);
      out(`${t.kind.singular}/${t.name} deleted${opts.dryRun ? ' (server dry run)' : ''}`);
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      failed++;
      err(`error: ${e.message}`);
    }
  }
  if (failed > 0) throw CliError.reported(`${failed} of ${targets.length} deletions failed`);
}

/** `label KIND NAME k=v k2-` or `label KIND/NAME k=v k2-`. */
export async function labelCommand(kindName: string, args: string[], opts: ClientOptions & { overwrite?: boolean; namespace?: string; dryRun?: boolean }, out: Out): Promise<void> {
  const { kind, names, inline } = kindAndName(kindName, args.slice(0, 1));
  const name = names[0];
  if (!name) throw CliError.usage(`label ${kindName} needs a NAME, then key=value or key-`);
  const changes = inline ? args : args.slice(1);
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
  await client.request('PATCH', `${path}${opts.dryRun ? '?dryRun=All' : ''}`, patch, 'application/merge-patch+json');
  out(`${kind.singular}/${name} labeled${opts.dryRun ? ' (server dry run)' : ''}`);
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
