import { labelSelectorAsSelector, type Selector } from '../../shared/labels/selector.js';
import { POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, type DeploymentSpec, type DeploymentStatus, type ReplicaSetSpec, type ReplicaSetStatus } from '../../shared/resources/deployment.js';
import type { PodTemplate } from '../../shared/resources/daemonset.js';
import { WAVES } from '../../shared/resources/waves.js';
import { canonicalJson } from '../store/shape.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { Controller, ownerKey, type ControllerContext } from './controller.js';
import type { ReplicaSetView } from './deployment-plan.js';
import { planDeployment, type DeploymentAction, type DeploymentPlan, type WavesScale } from './deployment-sync.js';
import { templateHash } from './names.js';
import { objectKey, splitKey, type ReconcileResult } from './queue.js';
import { controllerNamed, countReplicas, isControlledBy, podPhase, podStanding } from './replicaset-pods.js';

/** Kubernetes' annotations on a Deployment's ReplicaSets: the Deployment's size when last scaled, and that plus maxSurge. */
export const DESIRED_REPLICAS_ANNOTATION = 'deployment.kubernetes.io/desired-replicas';
export const MAX_REPLICAS_ANNOTATION = 'deployment.kubernetes.io/max-replicas';

/** A Deployment's annotations that are not copied to its ReplicaSets (Kubernetes' annotationsToSkip). */
const NOT_COPIED = new Set([REVISION_ANNOTATION, DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, 'deployment.kubernetes.io/revision-history', 'kubectl.kubernetes.io/last-applied-configuration']);

export interface DeploymentControllerOptions {
  /** The controller's clock (ms since the epoch); tests pass their own. */
  now?: () => number;
  /** For a Deployment of strategy type Waves: the sizes its rollout asks for (hub/controllers/waves/deployment.ts). */
  wavesScale?: (d: StoredObject) => WavesScale | undefined;
}

/**
 * Deployments as Kubernetes' deployment controller runs them: one ReplicaSet per template
 * revision (`<deployment>-<pod-template-hash>`, owned by the Deployment), rolled from old to new
 * within maxSurge and maxUnavailable (or all at once with Recreate), old revisions kept up to
 * revisionHistoryLimit, the Available and Progressing conditions, and pause. The decisions are
 * planned without I/O (deployment-sync.ts); this class reads the store, and writes the plan.
 *
 * Availability is counted from the pods themselves at each pass rather than from the
 * ReplicaSets' status, so a decision never rests on a count that is behind the pods.
 * A deleted Deployment takes its ReplicaSets and their pods with it.
 */
export class DeploymentController extends Controller {
  private readonly now: () => number;
  private readonly wavesScale: DeploymentControllerOptions['wavesScale'];

  constructor(ctx: ControllerContext, opts: DeploymentControllerOptions = {}) {
    super('deployment', ctx);
    this.now = opts.now ?? Date.now;
    this.wavesScale = opts.wavesScale;
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => string | undefined][] {
    return [
      [{ kind: 'Deployment' }, (e) => objectKey(e.object.metadata.namespace, e.object.metadata.name)],
      [{ kind: 'ReplicaSet' }, (e) => ownerKey(e.object, 'Deployment')],
      [{ kind: 'Pod' }, (e) => this.deploymentKeyOf(e.object)],
    ];
  }

  protected initialKeys(): Iterable<string> {
    // Also the owners of ReplicaSets whose Deployment went while the hub was down.
    const keys = new Set(this.keysOfKind('Deployment'));
    for (const rs of this.store.list('ReplicaSet').items) {
      const key = ownerKey(rs, 'Deployment');
      if (key) keys.add(key);
    }
    return keys;
  }

  reconcile(key: string): ReconcileResult | void {
    const { namespace, name } = splitKey(key);
    const d = this.store.get('Deployment', namespace, name);
    const named = this.store.list('ReplicaSet', { namespace, filter: (rs) => controllerNamed(rs, 'Deployment', name) }).items;
    return this.store.transaction(() => {
      if (!d) {
        for (const rs of named) this.deleteReplicaSet(rs);
        if (named.length > 0) this.log.info({ deployment: key, replicaSets: named.map((rs) => rs.metadata.name) }, 'deleted the replica sets of a deleted deployment');
        return undefined;
      }
      const spec = d.spec as DeploymentSpec;
      const now = this.now();
      const nodes = new Set(this.store.list('Node').items.map((n) => n.metadata.name));
      const owned = named.filter((rs) => {
        if (isControlledBy(rs, d)) return true;
        this.deleteReplicaSet(rs); // an earlier Deployment's of the same name
        return false;
      });
      owned.sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp) || a.metadata.name.localeCompare(b.metadata.name));
      const newRS = owned.find((rs) => sameTemplate(rs, spec.template));
      let nextAvailableInMs: number | undefined;
      const viewOf = (rs: StoredObject): ReplicaSetView => {
        const { view, nextAvailableInMs: next } = this.view(rs, spec.minReadySeconds ?? 0, nodes, now);
        if (next !== undefined) nextAvailableInMs = Math.min(nextAvailableInMs ?? next, next);
        return view;
      };
      const waves = spec.strategy?.type === WAVES ? this.wavesScale?.(d) : undefined;
      const plan = planDeployment({
        ...(waves ? { waves } : {}),
        name,
        generation: d.metadata.generation,
        spec,
        status: (d.status as DeploymentStatus | undefined) ?? {},
        newRS: newRS ? viewOf(newRS) : undefined,
        olds: owned.filter((rs) => rs !== newRS).map(viewOf),
        candidate: this.candidate(d, spec),
        now,
      });
      this.execute(d, spec, plan);
      // Look again when a Ready pod has been Ready for minReadySeconds, or for the progress deadline.
      const waits = [plan.requeueAfterMs, nextAvailableInMs === undefined ? undefined : nextAvailableInMs + 1].filter((w): w is number => w !== undefined);
      return waits.length > 0 ? { requeueAfterMs: Math.min(...waits) } : undefined;
    });
  }

  /** The Deployment a pod's ReplicaSet belongs to. */
  private deploymentKeyOf(pod: StoredObject): string | undefined {
    const owner = pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'ReplicaSet');
    if (!owner) return undefined;
    const rs = this.store.get('ReplicaSet', pod.metadata.namespace, owner.name);
    return rs ? ownerKey(rs, 'Deployment') : undefined;
  }

  private podsOf(rs: StoredObject): StoredObject[] {
    let selector: Selector | undefined;
    try {
      selector = labelSelectorAsSelector((rs.spec as ReplicaSetSpec).selector);
    } catch {
      selector = undefined; // a bad selector on a hand-made ReplicaSet: fall back to owners alone
    }
    return this.store.list('Pod', { namespace: rs.metadata.namespace ?? 'default', ...(selector ? { selector } : {}), filter: (p) => isControlledBy(p, rs) }).items;
  }

  private view(rs: StoredObject, minReadySeconds: number, nodes: ReadonlySet<string>, now: number): { view: ReplicaSetView; nextAvailableInMs?: number } {
    const pods = this.podsOf(rs);
    const pinnedNode = (rs.spec as ReplicaSetSpec).template.spec.nodeName || undefined;
    const active = pods.filter((p) => podStanding(p, nodes, pinnedNode) === 'active');
    const counts = countReplicas(active, minReadySeconds, now);
    const annotations = rs.metadata.annotations ?? {};
    const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
    const view: ReplicaSetView = {
      name: rs.metadata.name,
      replicas: (rs.spec as ReplicaSetSpec).replicas ?? 1,
      current: counts.replicas,
      ready: counts.ready,
      available: counts.available,
      remaining: pods.filter((p) => podPhase(p) !== 'Failed' && podPhase(p) !== 'Succeeded').length,
      revision: num(annotations[REVISION_ANNOTATION]) ?? 0,
      created: rs.metadata.creationTimestamp,
      ...(num(annotations[DESIRED_REPLICAS_ANNOTATION]) !== undefined ? { desiredReplicas: num(annotations[DESIRED_REPLICAS_ANNOTATION]) } : {}),
      ...(num(annotations[MAX_REPLICAS_ANNOTATION]) !== undefined ? { maxReplicas: num(annotations[MAX_REPLICAS_ANNOTATION]) } : {}),
    };
    return { view, ...(counts.nextAvailableInMs !== undefined ? { nextAvailableInMs: counts.nextAvailableInMs } : {}) };
  }

  /** The name a new ReplicaSet gets: `<deployment>-<hash of the template>`, rehashed while the name is taken (Kubernetes' collisionCount). */
  private candidate(d: StoredObject, spec: DeploymentSpec): { name: string; hash: string } {
    for (let collisions = 0; ; collisions++) {
      const hash = templateHash(collisions === 0 ? spec.template : { template: spec.template, collisions });
      const name = `${d.metadata.name}-${hash}`;
      if (!this.store.get('ReplicaSet', d.metadata.namespace, name)) return { name, hash };
    }
  }

  private execute(d: StoredObject, spec: DeploymentSpec, plan: DeploymentPlan): void {
    const ns = d.metadata.namespace ?? 'default';
    for (const action of plan.actions) this.apply(d, spec, action);
    for (const e of plan.events) this.events.record(d, e.type, e.reason, e.message);
    this.store.mutate('Deployment', ns, d.metadata.name, (cur) => {
      const annotations = { ...(cur.metadata.annotations ?? {}) };
      if (plan.revision !== undefined) annotations[REVISION_ANNOTATION] = String(plan.revision);
      return { ...cur, metadata: { ...cur.metadata, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) }, status: plan.status };
    });
  }

  private apply(d: StoredObject, spec: DeploymentSpec, action: DeploymentAction): void {
    const ns = d.metadata.namespace ?? 'default';
    switch (action.type) {
      case 'create':
        this.createReplicaSet(d, spec, action);
        return;
      case 'scale':
        this.store.mutate('ReplicaSet', ns, action.name, (rs) => {
          const annotations = { ...(rs.metadata.annotations ?? {}), [DESIRED_REPLICAS_ANNOTATION]: String(action.desiredReplicas), [MAX_REPLICAS_ANNOTATION]: String(action.maxReplicas) };
          return { ...rs, metadata: { ...rs.metadata, annotations }, spec: { ...(rs.spec as ReplicaSetSpec), replicas: action.replicas } };
        });
        return;
      case 'sync-new':
        this.store.mutate('ReplicaSet', ns, action.name, (rs) => {
          const annotations = { ...(rs.metadata.annotations ?? {}), ...copiedAnnotations(d), [REVISION_ANNOTATION]: String(action.revision) };
          const { minReadySeconds: _old, ...rest } = rs.spec as ReplicaSetSpec;
          return { ...rs, metadata: { ...rs.metadata, annotations }, spec: { ...rest, ...(spec.minReadySeconds !== undefined ? { minReadySeconds: spec.minReadySeconds } : {}) } };
        });
        return;
      case 'delete': {
        const rs = this.store.get('ReplicaSet', ns, action.name);
        if (rs) this.deleteReplicaSet(rs);
        return;
      }
    }
  }

  private createReplicaSet(d: StoredObject, spec: DeploymentSpec, action: Extract<DeploymentAction, { type: 'create' }>): void {
    const labels = { ...(spec.template.metadata?.labels ?? {}), [POD_TEMPLATE_HASH_LABEL]: action.hash };
    const template: PodTemplate = { ...spec.template, metadata: { ...spec.template.metadata, labels } };
    const rsSpec: ReplicaSetSpec = {
      replicas: action.replicas,
      selector: { ...spec.selector, matchLabels: { ...(spec.selector.matchLabels ?? {}), [POD_TEMPLATE_HASH_LABEL]: action.hash } },
      template,
      ...(spec.minReadySeconds !== undefined ? { minReadySeconds: spec.minReadySeconds } : {}),
    };
    this.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'ReplicaSet',
      metadata: {
        name: action.name,
        namespace: d.metadata.namespace ?? 'default',
        labels,
        annotations: { ...copiedAnnotations(d), [REVISION_ANNOTATION]: String(action.revision), [DESIRED_REPLICAS_ANNOTATION]: String(action.desiredReplicas), [MAX_REPLICAS_ANNOTATION]: String(action.maxReplicas) },
        ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid, controller: true }],
      },
      spec: rsSpec,
      status: { replicas: 0 } satisfies ReplicaSetStatus,
    });
  }

  /** A ReplicaSet and its pods, in one go (the garbage collector's cascade). */
  private deleteReplicaSet(rs: StoredObject): void {
    const ns = rs.metadata.namespace ?? 'default';
    for (const pod of this.store.list('Pod', { namespace: ns, filter: (p) => controllerNamed(p, 'ReplicaSet', rs.metadata.name) }).items) {
      this.store.delete('Pod', ns, pod.metadata.name);
    }
    this.store.delete('ReplicaSet', ns, rs.metadata.name);
  }
}

function copiedAnnotations(d: StoredObject): Record<string, string> {
  return Object.fromEntries(Object.entries(d.metadata.annotations ?? {}).filter(([k]) => !NOT_COPIED.has(k)));
}

/** A ReplicaSet's template is the Deployment's, once its pod-template-hash label is set aside (Kubernetes' EqualIgnoreHash). */
export function sameTemplate(rs: StoredObject, template: PodTemplate): boolean {
  const rsTemplate = (rs.spec as ReplicaSetSpec).template;
  const { [POD_TEMPLATE_HASH_LABEL]: _hash, ...labels } = rsTemplate.metadata?.labels ?? {};
  const stripped: PodTemplate = { ...rsTemplate, metadata: { ...rsTemplate.metadata, labels } };
  const normalize = (t: PodTemplate) => canonicalJson({ ...t, metadata: { ...t.metadata, labels: t.metadata?.labels ?? {} } });
  return normalize(stripped) === normalize(template);
}
