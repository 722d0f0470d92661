import { randomUUID } from 'node:crypto';
import { labelSelectorAsSelector, type Selector } from '../../shared/labels/selector.js';
import type { ReplicaSetSpec, ReplicaSetStatus } from '../../shared/resources/deployment.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { Controller, ownerKey, type ControllerContext } from './controller.js';
import { stableSuffix } from './names.js';
import { objectKey, splitKey, type ReconcileResult } from './queue.js';
import { controllerNamed, countReplicas, deletionOrder, isControlledBy, podPhase, podStanding } from './replicaset-pods.js';

/** Kubernetes' burstReplicas: the most pods one pass creates; the rest follow on the next pass. */
export const DEFAULT_BURST = 500;
/** Kubernetes' generated names: a prefix of at most 58 characters and 5 random ones (63 in all). */
const MAX_PREFIX = 58;

export interface ReplicaSetControllerOptions {
  /** The controller's clock (ms since the epoch); tests pass their own. */
  now?: () => number;
  burst?: number;
}

/**
 * Keeps `spec.replicas` pods of a ReplicaSet's template, as Kubernetes' ReplicaSet controller:
 * pods are created without a node (the scheduler binds them), named `<rs>-<5 random>`, and
 * owned by the ReplicaSet. Surplus pods go in Kubernetes' ActivePods order (unscheduled, then
 * not Ready, then newest). Decisions worth knowing:
 * - A pod that has Failed or Succeeded is deleted and replaced: there is no separate pod garbage
 *   collector on the hub, and a finished pod left behind would keep its dead containers on the
 *   device.
 * - A pod bound to a node that no longer exists is deleted and replaced (the pod GC's rule).
 * - A pod with metadata.deletionTimestamp is on its way out: not counted, not touched.
 * - A deleted ReplicaSet takes its pods with it (the garbage collector's cascade).
 * Status counts the active pods: replicas, readyReplicas, and availableReplicas (Ready for the
 * ReplicaSet's minReadySeconds); the key is looked at again when the next pod becomes available.
 */
export class ReplicaSetController extends Controller {
  private readonly now: () => number;
  private readonly burst: number;

  constructor(ctx: ControllerContext, opts: ReplicaSetControllerOptions = {}) {
    super('replicaset', ctx);
    this.now = opts.now ?? Date.now;
    this.burst = opts.burst ?? DEFAULT_BURST;
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => Iterable<string> | string | undefined][] {
    return [
      [{ kind: 'ReplicaSet' }, (e) => objectKey(e.object.metadata.namespace, e.object.metadata.name)],
      [{ kind: 'Pod' }, (e) => ownerKey(e.object, 'ReplicaSet')],
      // A node that goes away strands its pods: the ReplicaSets that had pods there replace them.
      [{ kind: 'Node' }, (e) => (e.type === 'DELETED' ? this.keysWithPodsOn(e.object.metadata.name) : undefined)],
    ];
  }

  protected initialKeys(): Iterable<string> {
    // Also the owners of pods whose ReplicaSet went while the hub was down: their pods go too.
    const keys = new Set(this.keysOfKind('ReplicaSet'));
    for (const pod of this.store.list('Pod').items) {
      const key = ownerKey(pod, 'ReplicaSet');
      if (key) keys.add(key);
    }
    return keys;
  }

  reconcile(key: string): ReconcileResult | void {
    const { namespace, name } = splitKey(key);
    const rs = this.store.get('ReplicaSet', namespace, name);
    const named = this.store.list('Pod', { namespace, ...this.podSelector(rs), filter: (p) => controllerNamed(p, 'ReplicaSet', name) }).items;
    return this.store.transaction(() => {
      if (!rs) {
        for (const pod of named) this.deletePod(pod);
        return undefined;
      }
      const nodes = new Set(this.store.list('Node').items.map((n) => n.metadata.name));
      let active: StoredObject[] = [];
      for (const pod of named) {
        // A pod of an earlier ReplicaSet of the same name belongs to no one now.
        if (!isControlledBy(pod, rs)) this.deletePod(pod);
        else {
          const standing = podStanding(pod, nodes);
          if (standing === 'active') active.push(pod);
          else if (standing === 'finished') this.deletePod(pod, rs, `it has ${podPhase(pod)}; a new pod replaces it`);
          else if (standing === 'node-gone') this.deletePod(pod, rs, `its node ${(pod.spec as PodSpec).nodeName} is gone; a new pod replaces it`);
        }
      }
      const spec = rs.spec as ReplicaSetSpec;
      const want = spec.replicas ?? 1;
      let requeueAfterMs: number | undefined;
      if (active.length < want) {
        const count = Math.min(want - active.length, this.burst);
        for (let i = 0; i < count; i++) active.push(this.createPod(rs, spec));
        if (active.length < want) requeueAfterMs = 0;
      } else if (active.length > want) {
        const surplus = new Set(deletionOrder(active).slice(0, active.length - want));
        for (const pod of surplus) this.deletePod(pod, rs, `more than the ${want} replicas wanted`);
        active = active.filter((p) => !surplus.has(p));
      }
      const counts = countReplicas(active, spec.minReadySeconds ?? 0, this.now());
      const status: ReplicaSetStatus = { replicas: counts.replicas, readyReplicas: counts.ready, availableReplicas: counts.available, observedGeneration: rs.metadata.generation };
      this.store.updateStatus('ReplicaSet', namespace, name, status);
      // Look again when a Ready pod has been Ready for minReadySeconds.
      if (counts.nextAvailableInMs !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, counts.nextAvailableInMs + 1);
      return requeueAfterMs === undefined ? undefined : { requeueAfterMs };
    });
  }

  /**
   * The ReplicaSet's own selector narrows the pods to read (label index) when there is one;
   * pods of an earlier ReplicaSet of the name carry the same pod-template-hash, so they are
   * among them. Without the ReplicaSet, every pod of the namespace is looked at.
   */
  private podSelector(rs: StoredObject | undefined): { selector?: Selector } {
    if (!rs) return {};
    try {
      return { selector: labelSelectorAsSelector((rs.spec as ReplicaSetSpec).selector) };
    } catch {
      return {}; // a selector that does not parse selects by owner alone
    }
  }

  private keysWithPodsOn(node: string): string[] {
    const keys = new Set<string>();
    for (const pod of this.store.list('Pod', { nodeName: node }).items) {
      const key = ownerKey(pod, 'ReplicaSet');
      if (key) keys.add(key);
    }
    return [...keys];
  }

  private createPod(rs: StoredObject, spec: ReplicaSetSpec): StoredObject {
    const namespace = rs.metadata.namespace ?? 'default';
    const prefix = `${rs.metadata.name}-`.slice(0, MAX_PREFIX);
    let name = `${prefix}${stableSuffix(randomUUID())}`;
    while (this.store.get('Pod', namespace, name)) name = `${prefix}${stableSuffix(randomUUID())}`;
    const template = spec.template;
    const pod = this.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace,
        labels: { ...(template.metadata?.labels ?? {}) },
        ...(template.metadata?.annotations ? { annotations: { ...template.metadata.annotations } } : {}),
        ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid, controller: true }],
      },
      spec: { ...template.spec },
      status: { phase: 'Pending' } satisfies PodStatus,
    });
    this.events.normal(rs, 'SuccessfulCreate', `Created pod: ${name}`);
    return pod;
  }

  /** Deletes a pod; with the ReplicaSet and a reason, records the decision. */
  private deletePod(pod: StoredObject, rs?: StoredObject, why?: string): void {
    try {
      this.store.delete('Pod', pod.metadata.namespace ?? 'default', pod.metadata.name);
    } catch {
      return; // already gone
    }
    if (rs && why) this.events.normal(rs, 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name} (${why})`);
  }
}
