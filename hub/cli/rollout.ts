import type { Command } from 'commander';
import { CHANGE_CAUSE_ANNOTATION, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, type DeploymentSpec, type DeploymentStatus, type ReplicaSetSpec } from '../../shared/resources/deployment.js';
import type { DaemonSetSpec, DaemonSetStatus, PodTemplate } from '../../shared/resources/daemonset.js';
import { lookupKind, type KindInfo } from '../../shared/resources/kinds.js';
import { HubClient, objectPath, type ClientOptions } from './client.js';
import { parseDuration } from './commands.js';
import { CliError } from './errors.js';
import { table } from './print.js';
import { isWaves, wavesControl, wavesHistory, wavesStatus, wavesUndo, type WavesDaemonSet, type WavesOptions } from './rollout-waves.js';

type Out = (text: string) => void;
type Verb = 'status' | 'history' | 'undo' | 'pause' | 'resume' | 'abort';

interface Meta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
}
export interface DeploymentObj { apiVersion: string; kind: string; metadata: Meta; spec: DeploymentSpec; status?: DeploymentStatus }
export interface ReplicaSetObj { metadata: Meta; spec: ReplicaSetSpec }
export interface DaemonSetObj { metadata: Meta; spec: DaemonSetSpec; status?: DaemonSetStatus }

/** Where a status check stands: a line to print, and whether the rollout is done. */
export interface RolloutProgress {
  message: string;
  done: boolean;
}

/** How often `rollout status` looks again while it waits. */
const POLL_MS = 500;

interface Target {
  kind: KindInfo;
  name: string;
  namespace: string;
  client: HubClient;
}

interface Options extends ClientOptions, WavesOptions {
  namespace?: string;
}

/**
 * What `rollout` does for each kind. A kind without a verb is a usage error. A DaemonSet with
 * `updateStrategy.type: Waves` has every verb (hub/cli/rollout-waves.ts); any other DaemonSet
 * has status only, as in Kubernetes.
 */
const KINDS: Record<string, Partial<Record<Verb, (t: Target, o: Options, out: Out) => Promise<void>>>> = {
  Deployment: {
    status: (t, o, out) => deploymentVerb('status', t, o, out),
    history: (t, o, out) => deploymentVerb('history', t, o, out),
    undo: (t, o, out) => deploymentVerb('undo', t, o, out),
    pause: (t, o, out) => deploymentVerb('pause', t, o, out),
    resume: (t, o, out) => deploymentVerb('resume', t, o, out),
    abort: (t, o, out) => deploymentVerb('abort', t, o, out),
  },
  DaemonSet: {
    status: (t, o, out) => daemonSetVerb('status', t, o, out),
    history: (t, o, out) => daemonSetVerb('history', t, o, out),
    undo: (t, o, out) => daemonSetVerb('undo', t, o, out),
    pause: (t, o, out) => daemonSetVerb('pause', t, o, out),
    resume: (t, o, out) => daemonSetVerb('resume', t, o, out),
    abort: (t, o, out) => daemonSetVerb('abort', t, o, out),
  },
};

/** `flotilla rollout status|history|undo|pause|resume KIND/NAME`, on the program of hub/cli/main.ts. */
export function registerRolloutCommands(program: Command, client: () => ClientOptions, out: Out): void {
  const rollout = program.command('rollout').description('manage the rollout of a deployment, or of a daemonset that rolls out in waves');
  const run = (verb: Verb) => (target: string, name: string | undefined, o: Options) => rolloutCommand(verb, target, name, { ...client(), ...o }, out);
  rollout
    .command('status <kind/name> [name]')
    .description('wait until the rollout has finished, printing its progress')
    .option('-w, --watch [bool]', 'keep watching until the rollout finishes (false: print once)', parseBool, true)
    .option('--timeout <duration>', 'give up after this long (0: wait for ever)', '0')
    .option('--dry-run', 'daemonset in waves: list the devices of every wave of its next rollout, change nothing')
    .option('-n, --namespace <ns>', 'namespace')
    .action(run('status'));
  rollout
    .command('history <kind/name> [name]')
    .description('list the revisions with their change causes')
    .option('--revision <n>', 'show the pod template of one revision')
    .option('-n, --namespace <ns>', 'namespace')
    .action(run('history'));
  rollout
    .command('undo <kind/name> [name]')
    .description('roll back to the previous revision, or to --to-revision')
    .option('--to-revision <n>', 'the revision to go back to (0: the previous one)', '0')
    .option('-n, --namespace <ns>', 'namespace')
    .action(run('undo'));
  rollout.command('pause <kind/name> [name]').description('stop rolling out new templates (a daemonset in waves: release no more devices)').option('-n, --namespace <ns>', 'namespace').action(run('pause'));
  rollout.command('resume <kind/name> [name]').description('roll out again (a daemonset in waves: also ends a pause after a wave early)').option('-n, --namespace <ns>', 'namespace').action(run('resume'));
  rollout.command('abort <kind/name> [name]').description('daemonset in waves: stop the rollout where it is, for good').option('-n, --namespace <ns>', 'namespace').action(run('abort'));
}

/** `-w=false` reaches the parser as '=false'; `--watch=false` as 'false'. */
function parseBool(value: string): boolean {
  const v = value.replace(/^=/, '');
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw CliError.usage(`expected true or false, not '${value}'`);
}

export async function rolloutCommand(verb: Verb, target: string, name: string | undefined, opts: Options, out: Out): Promise<void> {
  const [kindName, inlineName] = target.split('/');
  const kind = lookupKind(kindName ?? '');
  const objectName = inlineName ?? name;
  const supported = Object.entries(KINDS).filter(([, verbs]) => verbs[verb]).map(([k]) => `${lookupKind(k)!.singular}/NAME`);
  if (!kind) throw CliError.usage(`rollout ${verb}: unknown resource type "${kindName}" (use ${supported.join(' or ')})`);
  const handler = KINDS[kind.kind]?.[verb];
  if (!handler) throw CliError.usage(`rollout ${verb} is not supported for ${kind.plural} (use ${supported.join(' or ')})`);
  if (!objectName || (inlineName && name)) throw CliError.usage(`rollout ${verb} needs one ${kind.singular}: ${kind.singular}/NAME`);
  if (opts.dryRun && kind.kind !== 'DaemonSet' && kind.kind !== 'Deployment') throw CliError.usage(`rollout ${verb} --dry-run is only available for daemonset/NAME or deployment/NAME (that roll out in waves)`);
  await handler({ kind, name: objectName, namespace: opts.namespace ?? 'default', client: new HubClient(opts) }, opts, out);
}

async function getObject<T>(t: Target): Promise<T> {
  return (await t.client.request<T>('GET', objectPath(t.kind.plural, true, t.namespace, t.name))).body;
}

/** A DaemonSet that rolls out in waves gets the wave verbs; any other the RollingUpdate status. */
async function daemonSetVerb(verb: Verb, t: Target, o: Options, out: Out): Promise<void> {
  const ds = await getObject<WavesDaemonSet>(t);
  if (!isWaves(ds)) {
    if (verb === 'status' && !o.dryRun) return waitForRollout(t, o, out, (obj) => daemonSetProgress(obj as DaemonSetObj));
    throw new CliError(`rollout ${verb}${o.dryRun ? ' --dry-run' : ''} is only available for a daemonset with updateStrategy type Waves; daemonset/${t.name} has ${ds.spec.updateStrategy?.type ?? 'RollingUpdate'}`);
  }
  if (verb === 'status') return wavesStatus(t, o, out, (d) => daemonSetProgress(d as DaemonSetObj));
  if (verb === 'history') return wavesHistory(t, ds, o, out);
  if (verb === 'undo') return wavesUndo(t, ds, o, out);
  return wavesControl(t, verb, out);
}

/**
 * A Deployment with `strategy.type: Waves` gets the wave verbs (its pause, resume and abort go
 * through its rollout endpoint, not spec.paused); any other the RollingUpdate verbs as before.
 */
async function deploymentVerb(verb: Verb, t: Target, o: Options, out: Out): Promise<void> {
  const d = await getObject<DeploymentObj>(t);
  const waves = { ...t, wavesKind: 'deployment' as const };
  if (!isWaves(d as unknown as WavesDaemonSet)) {
    if (verb === 'status' && !o.dryRun) return waitForRollout(t, o, out, (obj) => deploymentProgress(obj as DeploymentObj));
    if (verb === 'history') return deploymentHistory(t, o, out);
    if (verb === 'undo') return deploymentUndo(t, o, out);
    if (verb === 'pause' || verb === 'resume') return setPaused(t, verb === 'pause', out);
    throw new CliError(`rollout ${verb}${o.dryRun ? ' --dry-run' : ''} is only available for a deployment with strategy type Waves; deployment/${t.name} has ${d.spec.strategy?.type ?? 'RollingUpdate'}`);
  }
  if (verb === 'status') return wavesStatus(waves, o, out, (x) => deploymentProgress(x as unknown as DeploymentObj));
  if (verb === 'history') return wavesHistory(waves, d as unknown as WavesDaemonSet, o, out);
  if (verb === 'undo') return wavesUndo(waves, d as unknown as WavesDaemonSet, o, out);
  return wavesControl(waves, verb, out);
}

/** Polls the object until `progress` says done: each new line printed, as kubectl rollout status. */
async function waitForRollout(t: Target, o: Options, out: Out, progress: (obj: unknown) => RolloutProgress): Promise<void> {
  const timeoutSeconds = o.timeout === undefined || /^0[smhd]?$/.test(o.timeout) ? 0 : parseDuration(o.timeout);
  const deadline = timeoutSeconds ? Date.now() + timeoutSeconds * 1000 : Infinity;
  let last = '';
  for (;;) {
    const p = progress(await getObject(t));
    if (p.message !== last || !o.watch) out(p.message);
    last = p.message;
    if (p.done || o.watch === false) return;
    if (Date.now() >= deadline) throw new CliError(`timed out waiting for the rollout of ${t.kind.singular}/${t.name} after ${o.timeout}`);
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(0, deadline - Date.now()))));
  }
}

/** kubectl's DeploymentStatusViewer; a rollout past its progress deadline is an error (exit 1). */
export function deploymentProgress(d: DeploymentObj): RolloutProgress {
  const name = d.metadata.name;
  const s = d.status ?? {};
  if ((d.metadata.generation ?? 0) > (s.observedGeneration ?? 0)) return { message: 'Waiting for deployment spec update to be observed...', done: false };
  if (s.conditions?.some((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded')) throw new CliError(`deployment "${name}" exceeded its progress deadline`);
  const replicas = d.spec.replicas ?? 1;
  const updated = s.updatedReplicas ?? 0;
  const total = s.replicas ?? 0;
  const available = s.availableReplicas ?? 0;
  const waiting = `Waiting for deployment "${name}" rollout to finish:`;
  if (updated < replicas) return { message: `${waiting} ${updated} out of ${replicas} new replicas have been updated...`, done: false };
  if (total > updated) return { message: `${waiting} ${total - updated} old replicas are pending termination...`, done: false };
  if (available < updated) return { message: `${waiting} ${available} of ${updated} updated replicas are available...`, done: false };
  return { message: `deployment "${name}" successfully rolled out`, done: true };
}

/** kubectl's DaemonSetStatusViewer: desired nodes against updated and available (or Ready) pods. */
export function daemonSetProgress(ds: DaemonSetObj): RolloutProgress {
  const name = ds.metadata.name;
  if (ds.spec.updateStrategy?.type === 'OnDelete') throw new CliError('rollout status is only available for the RollingUpdate strategy type');
  const s = ds.status;
  if (!s || (ds.metadata.generation ?? 0) > (s.observedGeneration ?? 0)) return { message: 'Waiting for daemon set spec update to be observed...', done: false };
  const waiting = `Waiting for daemon set "${name}" rollout to finish:`;
  const available = s.numberAvailable ?? s.numberReady;
  if (s.updatedNumberScheduled < s.desiredNumberScheduled) return { message: `${waiting} ${s.updatedNumberScheduled} out of ${s.desiredNumberScheduled} new pods have been updated...`, done: false };
  if (available < s.desiredNumberScheduled) return { message: `${waiting} ${available} of ${s.desiredNumberScheduled} updated pods are available...`, done: false };
  return { message: `daemon set "${name}" successfully rolled out`, done: true };
}

/** The Deployment's ReplicaSets (by controller uid), oldest revision first. */
async function revisionsOf(t: Target, d: DeploymentObj): Promise<ReplicaSetObj[]> {
  const { body } = await t.client.request<{ items: ReplicaSetObj[] }>('GET', objectPath('replicasets', true, t.namespace));
  return sortedRevisions(d, body.items);
}

export function sortedRevisions(d: DeploymentObj, replicaSets: ReplicaSetObj[]): ReplicaSetObj[] {
  return replicaSets
    .filter((rs) => rs.metadata.ownerReferences?.some((o) => o.controller && o.kind === 'Deployment' && o.uid === d.metadata.uid) && revisionOf(rs) > 0)
    .sort((a, b) => revisionOf(a) - revisionOf(b));
}

function revisionOf(rs: ReplicaSetObj): number {
  const n = Number(rs.metadata.annotations?.[REVISION_ANNOTATION] ?? '');
  return Number.isInteger(n) ? n : 0;
}

export function historyTable(revisions: ReplicaSetObj[]): string {
  return table([['REVISION', 'CHANGE-CAUSE'], ...revisions.map((rs) => [String(revisionOf(rs)), rs.metadata.annotations?.[CHANGE_CAUSE_ANNOTATION] ?? '<none>'])]);
}

async function deploymentHistory(t: Target, o: Options, out: Out): Promise<void> {
  const d = await getObject<DeploymentObj>(t);
  const revisions = await revisionsOf(t, d);
  if (o.revision === undefined) {
    out(`deployment/${t.name}`);
    out(revisions.length === 0 ? 'No rollout history found.' : historyTable(revisions));
    return;
  }
  const rs = revisions.find((r) => String(revisionOf(r)) === o.revision);
  if (!rs) throw new CliError(`unable to find the specified revision ${o.revision} in the history of deployment/${t.name}`);
  const template = templateOf(rs);
  out(`deployment/${t.name} with revision #${o.revision}`);
  out('Pod Template:');
  out(`  Labels:  ${Object.entries(template.metadata?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '<none>'}`);
  const cause = rs.metadata.annotations?.[CHANGE_CAUSE_ANNOTATION];
  if (cause) out(`  Annotations:  ${CHANGE_CAUSE_ANNOTATION}: ${cause}`);
  out('  Containers:');
  for (const c of template.spec.containers) out(`   ${c.name}:\n    Image:  ${c.image}${c.command ? `\n    Command:  ${c.command.join(' ')}` : ''}`);
}

/** A ReplicaSet's template as its Deployment wrote it: without the pod-template-hash label. */
export function templateOf(rs: ReplicaSetObj): PodTemplate {
  const { [POD_TEMPLATE_HASH_LABEL]: _hash, ...labels } = rs.spec.template.metadata?.labels ?? {};
  return { ...rs.spec.template, metadata: { ...rs.spec.template.metadata, labels } };
}

/**
 * The Deployment to write for an undo (kubectl's DeploymentRollbacker): the template of the
 * chosen revision (the previous one by default) and its change cause, guarded by the
 * Deployment's resourceVersion. No body when the template already is that revision's.
 */
export function undoTarget(d: DeploymentObj, revisions: ReplicaSetObj[], toRevision: number): { body?: DeploymentObj; revision: number } {
  if (d.spec.paused) throw new CliError(`you cannot roll back a paused deployment; resume it first with 'flotilla rollout resume deployment/${d.metadata.name}' and try again`);
  if (revisions.length === 0) throw new CliError(`no rollout history found for deployment "${d.metadata.name}"`);
  const current = Math.max(...revisions.map(revisionOf));
  const rs = toRevision === 0 ? [...revisions].reverse().find((r) => revisionOf(r) < current) : revisions.find((r) => revisionOf(r) === toRevision);
  if (!rs) throw new CliError(toRevision === 0 ? `no previous revision of deployment "${d.metadata.name}" to roll back to` : `unable to find the specified revision ${toRevision} in history`);
  const template = templateOf(rs);
  if (JSON.stringify(sortKeys(template)) === JSON.stringify(sortKeys(d.spec.template))) return { revision: revisionOf(rs) };
  const { [CHANGE_CAUSE_ANNOTATION]: _cause, ...annotations } = d.metadata.annotations ?? {};
  const cause = rs.metadata.annotations?.[CHANGE_CAUSE_ANNOTATION];
  if (cause !== undefined) annotations[CHANGE_CAUSE_ANNOTATION] = cause;
  const m = d.metadata;
  const metadata: Meta = { name: m.name, uid: m.uid, resourceVersion: m.resourceVersion, ...(m.namespace ? { namespace: m.namespace } : {}), ...(m.labels ? { labels: m.labels } : {}), ...(Object.keys(annotations).length ? { annotations } : {}) };
  return { body: { apiVersion: d.apiVersion, kind: d.kind, metadata, spec: { ...d.spec, template } }, revision: revisionOf(rs) };
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
}

/**
 * Done here, in the client, by a replace of the Deployment that carries its resourceVersion:
 * the hub needs no endpoint of its own, a concurrent change makes the replace fail rather than
 * be lost, and the controller rolls the old template out as it would any new one (re-using its
 * ReplicaSet, which becomes the newest revision).
 */
async function deploymentUndo(t: Target, o: Options, out: Out): Promise<void> {
  const toRevision = Number(o.toRevision ?? '0');
  if (!Number.isInteger(toRevision) || toRevision < 0) throw CliError.usage(`--to-revision must be a revision number, not '${o.toRevision}'`);
  const d = await getObject<DeploymentObj>(t);
  const target = undoTarget(d, await revisionsOf(t, d), toRevision);
  if (!target.body) {
    out(`deployment/${t.name} skipped rollback (current template already matches revision ${target.revision})`);
    return;
  }
  await t.client.request('PUT', objectPath('deployments', true, t.namespace, t.name), target.body);
  out(`deployment/${t.name} rolled back`);
}

async function setPaused(t: Target, paused: boolean, out: Out): Promise<void> {
  const d = await getObject<DeploymentObj>(t);
  if (Boolean(d.spec.paused) === paused) throw new CliError(`deployment/${t.name} is ${paused ? 'already paused' : 'not paused'}`);
  const patch = { metadata: { resourceVersion: d.metadata.resourceVersion }, spec: { paused: paused ? true : null } };
  await t.client.request('PATCH', objectPath('deployments', true, t.namespace, t.name), patch, 'application/merge-patch+json');
  out(`deployment/${t.name} ${paused ? 'paused' : 'resumed'}`);
}
