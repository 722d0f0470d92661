import { POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, type DeploymentSpec, type ReplicaSetSpec } from '../../../shared/resources/deployment.js';
import type { PodTemplate } from '../../../shared/resources/daemonset.js';
import { isNodeReady, type NodeStatus } from '../../../shared/resources/node.js';
import { ROLLOUT_KIND, type RolloutStatus } from '../../../shared/resources/rollout.js';
import { UPDATE_LOCK_OVERRIDE_ANNOTATION } from '../../../shared/protocol/update-lock.js';
import { planPodWaves } from '../../../shared/rollout/plan-pods.js';
import type { StoredObject, WatchEvent } from '../../store/types.js';
import type { WatchOptions } from '../../store/watch.js';
import { Controller, ownerKey, type ControllerContext } from '../controller.js';
import { sameTemplate } from '../deployment.js';
import type { WavesScale } from '../deployment-sync.js';
import { templateHash } from '../names.js';
import { objectKey, splitKey, type ReconcileResult } from '../queue.js';
import { controllerNamed, isControlledBy, podStanding } from '../replicaset-pods.js';
import type { ActionResult, RolloutAction } from './controller.js';
import { advanceDeployment, releasedPods, waveSizes, type DeploymentRuntime } from './deployment-progress.js';
import { deploymentWavesStrategy, newDeploymentRolloutRecord, ROLLOUT_DEPLOYMENT_LABEL } from './deployment-records.js';
import { resumeRollout } from './progress.js';
import { endedStatus, fromOf, isActive, isFinished, specOf, statusOf } from './records.js';
import { waveUnavailable } from './release.js';
import type { WaveNode } from './view.js';

export interface DeploymentWavesOptions {
  now?: () => number;
  /** Told when the sizes a Deployment's rollout asks for may have changed (the Deployment controller's queue). */
  onScaleChanged?: (key: string) => void;
  /** A Deployment's rollout is worked at most once per this many ms (default 250). */
  minIntervalMs?: number;
  /** Look again at least this often while a rollout is active (default 10 s). */
  resyncMs?: number;
}

/**
 * Waves rollouts of Deployments (`spec.strategy.type: Waves`, docs/ARCHITECTURE.md, 'Waves rollouts'): one Rollout
 * record per revision, as for DaemonSets, with waves that count pods. This controller decides how
 * many pods each wave releases and judges each wave's health gate; the Deployment controller
 * sizes the ReplicaSets from that (`wavesScale`). All state is in the records, the ReplicaSets
 * and the pods, so a restarted hub goes on where the last one stopped.
 */
export class DeploymentWavesController extends Controller {
  private readonly now: () => number;
  private readonly opts: DeploymentWavesOptions;
  private readonly runtimes = new Map<string, DeploymentRuntime>();
  private readonly lastRun = new Map<string, number>();

  constructor(ctx: ControllerContext, opts: DeploymentWavesOptions = {}) {
    super('deployment-waves', ctx);
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => string | undefined][] {
    return [
      [{ kind: 'Deployment' }, (e) => objectKey(e.object.metadata.namespace, e.object.metadata.name)],
      [{ kind: 'ReplicaSet' }, (e) => ownerKey(e.object, 'Deployment')],
      [{ kind: 'Pod' }, (e) => this.deploymentKeyOf(e.object)],
    ];
  }

  protected initialKeys(): Iterable<string> {
    return this.keysOfKind('Deployment');
  }

  private deploymentKeyOf(pod: StoredObject): string | undefined {
    const owner = pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'ReplicaSet');
    if (!owner) return undefined;
    const rs = this.store.get('ReplicaSet', pod.metadata.namespace, owner.name);
    return rs ? ownerKey(rs, 'Deployment') : undefined;
  }

  /** The newest record of a Deployment (of that incarnation), if any. */
  latestRecord(namespace: string, name: string, uid?: string): StoredObject | undefined {
    const records = this.store.list(ROLLOUT_KIND, { namespace, filter: (r) => r.metadata.labels?.[ROLLOUT_DEPLOYMENT_LABEL] === name && (uid === undefined || specOf(r).target.uid === uid) }).items;
    return records.reduce<StoredObject | undefined>((best, r) => (!best || specOf(r).revision > specOf(best).revision ? r : best), undefined);
  }

  private ownedReplicaSets(d: StoredObject): StoredObject[] {
    return this.store.list('ReplicaSet', { namespace: d.metadata.namespace ?? 'default', filter: (rs) => isControlledBy(rs, d) }).items;
  }

  private note(d: StoredObject, record: StoredObject | undefined, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.events.record(d, type, reason, message, undefined, new Date(this.now()));
    if (record) this.events.record(record, type, reason, message, undefined, new Date(this.now()));
  }

  reconcile(key: string): ReconcileResult | void {
    const minInterval = this.opts.minIntervalMs ?? 250;
    const realNow = Date.now();
    const last = this.lastRun.get(key);
    if (minInterval > 0 && last !== undefined && realNow - last < minInterval) return { requeueAfterMs: minInterval - (realNow - last) };
    this.lastRun.set(key, realNow);

    const { namespace, name } = splitKey(key);
    const d = this.store.get('Deployment', namespace, name);
    if (!d) return this.forget(key, namespace, name);
    const spec = d.spec as DeploymentSpec;
    const strategy = deploymentWavesStrategy(spec);
    let record = this.latestRecord(namespace, name, d.metadata.uid);
    if (!strategy) {
      if (record && isActive(statusOf(record).phase)) this.finish(d, record, 'Superseded', 'strategy is no longer Waves', 'RolloutSuperseded');
      return;
    }
    const now = this.now();
    const hash = templateHash(spec.template);
    if (!record || specOf(record).toHash !== hash || statusOf(record).phase === 'Superseded') {
      record = this.startRollout(d, record, hash, now);
      this.opts.onScaleChanged?.(key);
    }
    if (isFinished(statusOf(record).phase)) {
      this.runtimes.delete(key);
      return;
    }
    let runtime = this.runtimes.get(key);
    if (!runtime || runtime.record !== record.metadata.name) this.runtimes.set(key, (runtime = { record: record.metadata.name, releases: [] }));
    const nodes = this.nodes();
    const newRS = this.ownedReplicaSets(d).find((rs) => sameTemplate(rs, spec.template));
    const pods = newRS ? this.store.list('Pod', { namespace, filter: (p) => controllerNamed(p, 'ReplicaSet', newRS.metadata.name) }).items : [];
    const pinnedNode = newRS ? (newRS.spec as ReplicaSetSpec).template.spec.nodeName || undefined : undefined;
    const newPods = pods.filter((p) => podStanding(p, new Set(nodes.keys()), pinnedNode) === 'active').sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp) || a.metadata.name.localeCompare(b.metadata.name));
    // A rollback is over once the new ReplicaSet is asked for no pods and has none left.
    const newRemaining = pods.filter((p) => !p.metadata.deletionTimestamp).length + (newRS ? ((newRS.spec as ReplicaSetSpec).replicas ?? 1) : 0);
    let nextAt: number | undefined;
    let changed = false;
    // A wave that starts (its predecessor passed, or a pause ended) releases its first pods in the same pass.
    for (let pass = 0; ; pass++) {
      const before = statusOf(record);
      const current: StoredObject = record;
      const result = advanceDeployment({
        record: current,
        replicas: spec.replicas ?? 1,
        newPods,
        newRemaining,
        nodes,
        runtime,
        now,
        note: (type, reason, message) => this.note(d, current, type, reason, message),
        overrideLock: (pod, lockTime) => this.overrideLock(pod, lockTime),
      });
      nextAt = result.nextAt;
      record = this.writeStatus(current, result.status);
      changed ||= record !== current;
      const moved = result.status.wave !== before.wave || (result.status.phase === 'Progressing' && before.phase === 'Paused') || (result.status.phase === 'RollingBack' && before.phase !== 'RollingBack');
      if (!moved || pass >= specOf(record).waves.length) break;
    }
    if (changed) this.opts.onScaleChanged?.(key);
    if (isFinished(statusOf(record).phase)) return;
    const resync = this.opts.resyncMs ?? 10_000;
    return { requeueAfterMs: nextAt !== undefined ? Math.min(resync, Math.max(0, nextAt - now)) : resync };
  }

  private nodes(): Map<string, WaveNode> {
    const nodes = new Map<string, WaveNode>();
    for (const n of this.store.list('Node').items) {
      const status = n.status as NodeStatus | undefined;
      nodes.set(n.metadata.name, { uid: n.metadata.uid, labels: n.metadata.labels ?? {}, ready: isNodeReady(status), ...(status?.desiredRevision !== undefined ? { desiredRevision: status.desiredRevision } : {}), ...(status?.observedRevision !== undefined ? { observedRevision: status.observedRevision } : {}) });
    }
    return nodes;
  }

  /**
   * What the pods run before: after the previous record, as fromOf says; without one, the newest
   * ReplicaSet that still has pods of another template (the Deployment rolled by RollingUpdate
   * before it became Waves); otherwise nothing (the first revision goes to every pod at once).
   */
  private fromFor(d: StoredObject, previous: StoredObject | undefined): { revision: number; hash: string; template: PodTemplate } | undefined {
    if (previous) return fromOf(previous);
    const spec = d.spec as DeploymentSpec;
    const old = this.ownedReplicaSets(d)
      .filter((rs) => ((rs.spec as ReplicaSetSpec).replicas ?? 1) > 0 && !sameTemplate(rs, spec.template))
      .sort((a, b) => b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp))[0];
    if (!old) return undefined;
    const t = (old.spec as ReplicaSetSpec).template;
    const { [POD_TEMPLATE_HASH_LABEL]: hash, ...labels } = t.metadata?.labels ?? {};
    return { revision: Number(old.metadata.annotations?.[REVISION_ANNOTATION] ?? 0) || 0, hash: hash ?? templateHash(t), template: { ...t, metadata: { ...t.metadata, labels } } };
  }

  private startRollout(d: StoredObject, previous: StoredObject | undefined, hash: string, now: number): StoredObject {
    const spec = d.spec as DeploymentSpec;
    const strategy = deploymentWavesStrategy(spec)!;
    const revision = previous ? specOf(previous).revision + 1 : 1;
    if (previous && (isActive(statusOf(previous).phase) || statusOf(previous).phase === 'RollingBack')) {
      this.finish(d, previous, 'Superseded', `superseded by revision ${revision}`, 'RolloutSuperseded');
    }
    // Records of an earlier Deployment of the same name (deleted and made again before this controller saw it) go.
    const ns = d.metadata.namespace ?? 'default';
    for (const stale of this.store.list(ROLLOUT_KIND, { namespace: ns, filter: (r) => r.metadata.labels?.[ROLLOUT_DEPLOYMENT_LABEL] === d.metadata.name && specOf(r).target.uid !== d.metadata.uid }).items) {
      this.store.delete(ROLLOUT_KIND, ns, stale.metadata.name);
    }
    const from = this.fromFor(d, previous);
    const doneAtOnce = !from ? 'first revision: every pod at once' : from.hash === hash ? `the template is that of revision ${from.revision}, which the pods run: nothing to roll` : undefined;
    const waves = doneAtOnce === undefined ? planPodWaves(strategy.waves, spec.replicas ?? 1) : [];
    const record = this.store.create(newDeploymentRolloutRecord({ d, revision, ...(from ? { from } : {}), to: { hash, template: spec.template }, strategy, waves, now, ...(doneAtOnce !== undefined ? { doneAtOnce } : {}) }));
    if (doneAtOnce !== undefined) {
      this.note(d, record, 'Normal', 'RolloutSucceeded', `revision ${revision}: ${doneAtOnce}`);
    } else {
      const sizes = waves.map((w) => `${w.name} (${w.replicas})`).join(', ');
      this.note(d, record, 'Normal', 'RolloutStarted', `rollout of revision ${revision} from revision ${from!.revision} started by ${specOf(record).startedBy}: waves ${sizes}`);
      if (waves[0]) this.note(d, record, 'Normal', 'WaveStarted', `wave ${waves[0].name} started: ${waves[0].replicas} pod(s)`);
    }
    return record;
  }

  private finish(d: StoredObject, record: StoredObject, phase: 'Superseded' | 'Aborted', message: string, reason: string): StoredObject {
    const status = endedStatus(record, phase, message, this.now());
    const written = this.writeStatus(record, status);
    this.note(d, record, phase === 'Aborted' ? 'Warning' : 'Normal', reason, `revision ${specOf(record).revision}: ${message}`);
    return written;
  }

  private writeStatus(record: StoredObject, status: RolloutStatus): StoredObject {
    if (JSON.stringify(record.status) === JSON.stringify(status)) return record;
    return this.store.updateStatus(ROLLOUT_KIND, record.metadata.namespace, record.metadata.name, status);
  }

  private overrideLock(pod: { namespace: string; name: string }, lockTime: string): void {
    if (!this.store.get('Pod', pod.namespace, pod.name)) return;
    this.store.mutate('Pod', pod.namespace, pod.name, (cur) => ({ ...cur, metadata: { ...cur.metadata, annotations: { ...(cur.metadata.annotations ?? {}), [UPDATE_LOCK_OVERRIDE_ANNOTATION]: lockTime } } }));
  }

  /** A deleted Deployment takes its records with it (they are owned by it). */
  private forget(key: string, namespace: string, name: string): void {
    this.runtimes.delete(key);
    this.lastRun.delete(key);
    const records = this.store.list(ROLLOUT_KIND, { namespace, filter: (r) => r.metadata.labels?.[ROLLOUT_DEPLOYMENT_LABEL] === name });
    this.store.transaction(() => {
      for (const r of records.items) this.store.delete(ROLLOUT_KIND, namespace, r.metadata.name);
    });
  }

  /**
   * The sizes a Waves Deployment's rollout asks of its ReplicaSets, for the Deployment
   * controller: undefined (hold every ReplicaSet as it is) until the rollout of its template
   * has started; then the new one at the pods released so far (all of them once it succeeded,
   * none while and after it rolls back: pinned at the old template until a new one is applied).
   */
  readonly wavesScale = (d: StoredObject): WavesScale | undefined => {
    const spec = d.spec as DeploymentSpec;
    const record = this.latestRecord(d.metadata.namespace ?? 'default', d.metadata.name, d.metadata.uid);
    if (!record || specOf(record).toHash !== templateHash(spec.template) || statusOf(record).phase === 'Superseded') return undefined;
    const rs = specOf(record);
    const status = statusOf(record);
    const replicas = spec.replicas ?? 1;
    const newReplicas = status.phase === 'Succeeded' ? replicas : status.phase === 'RollingBack' || status.phase === 'RolledBack' ? 0 : releasedPods(status);
    const from = rs.fromTemplate ? this.ownedReplicaSets(d).find((r) => sameTemplate(r, rs.fromTemplate!)) : undefined;
    const size = waveSizes(rs.waves, replicas)[status.wave] ?? replicas;
    return { newReplicas, ...(from ? { fromName: from.metadata.name } : {}), order: rs.strategy.order, maxUnavailable: waveUnavailable(rs.strategy, size) };
  };

  /** pause, resume or abort the Deployment's rollout (the API's `rollout` action). */
  act(namespace: string, name: string, action: RolloutAction): ActionResult {
    const d = this.store.get('Deployment', namespace, name);
    if (!d) return { ok: false, status: 404, message: `deployments "${name}" not found` };
    const record = this.latestRecord(namespace, name, d.metadata.uid);
    if (!record) return { ok: false, status: 409, message: `deployment ${name} has no rollout${deploymentWavesStrategy(d.spec as DeploymentSpec) ? ' yet' : ' (its strategy is not Waves)'}` };
    const status = structuredClone(statusOf(record));
    const revision = specOf(record).revision;
    const key = objectKey(namespace, name);
    let written: StoredObject;
    if (action === 'abort') {
      if (!isActive(status.phase)) return { ok: false, status: 409, message: `rollout of revision ${revision} is ${status.phase}: nothing to abort` };
      written = this.finish(d, record, 'Aborted', 'aborted: nothing more is released', 'RolloutAborted');
    } else if (action === 'pause') {
      if (status.phase === 'Paused' && status.pauseUntil === undefined) return { ok: true, record };
      if (!isActive(status.phase)) return { ok: false, status: 409, message: `rollout of revision ${revision} is ${status.phase}: nothing to pause` };
      const ws = status.waves[status.wave];
      if (ws?.phase === 'Progressing') ws.phase = 'Paused';
      status.phase = 'Paused';
      delete status.pauseUntil;
      status.message = 'paused by rollout pause; resume to go on';
      written = this.writeStatus(record, status);
      this.note(d, written, 'Normal', 'RolloutPaused', `revision ${revision}: ${status.message}`);
    } else {
      if (status.phase !== 'Paused') return { ok: false, status: 409, message: `rollout of revision ${revision} is ${status.phase}, not Paused: nothing to resume` };
      const startedWave = status.wave;
      const what = resumeRollout(status, this.now());
      written = this.writeStatus(record, status);
      this.note(d, written, 'Normal', 'RolloutResumed', `revision ${revision}: ${what}`);
      if (status.wave !== startedWave) this.note(d, written, 'Normal', 'WaveStarted', `wave ${status.waves[status.wave]!.name} started: ${status.waves[status.wave]!.total} pod(s)`);
    }
    this.lastRun.delete(key);
    this.queue.add(key);
    this.opts.onScaleChanged?.(key);
    return { ok: true, record: written };
  }

  /** What `rollout status --dry-run` shows for a Deployment: the revision its template would be, and the pods of each wave. */
  preview(namespace: string, name: string, spec: DeploymentSpec, stored: StoredObject | undefined): { revision: number; waves: ReturnType<typeof planPodWaves>; reason?: string } {
    const replicas = spec.replicas ?? 1;
    const strategy = deploymentWavesStrategy(spec);
    const everyone = () => [{ name: 'all', nodes: [], replicas }];
    if (!strategy) return { revision: 0, waves: everyone(), reason: 'strategy is not Waves: the Deployment controller rolls every pod as its strategy says' };
    const record = stored ? this.latestRecord(namespace, name, stored.metadata.uid) : undefined;
    if (!record) return { revision: 1, waves: everyone(), reason: 'first revision: every pod at once (nothing to roll from)' };
    const rs = specOf(record);
    if (rs.toHash === templateHash(spec.template)) return { revision: rs.revision, waves: rs.waves, reason: `no change: the template is that of revision ${rs.revision} (${statusOf(record).phase})` };
    return { revision: rs.revision + 1, waves: planPodWaves(strategy.waves, replicas) };
  }
}
