import { randomUUID } from 'node:crypto';
import { labelSelectorAsSelector, type Selector } from '../../shared/labels/selector.js';
import type { ReplicaSetSpec, ReplicaSetStatus } from '../../shared/resources/deployment.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { Controller, ownerKey, type ControllerContext } from './controller.js';
import { ControllerExpectations, EXPECTATIONS_TIMEOUT_MS } from './expectations.js';
import { stableSuffix } from './names.js';
import { ReplacementBackoff } from './replacement-backoff.js';
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
  /** The first wait before replacing pods that keep finishing (default 10 s; see ReplacementBackoff). */
  replacementBackoffMs?: number;
}

/**
 * Keeps `spec.replicas` pods of a ReplicaSet's template, as Kubernetes' ReplicaSet controller:
 * pods are created without a node (the scheduler binds them), named `<rs>-<5 random>`, and
 * owned by the ReplicaSet. Surplus pods go in Kubernetes' ActivePods order (unscheduled, then
 * not Ready, then newest). Decisions worth knowing:
 * - A pod that has Failed or Succeeded is deleted and replaced: there is no separate pod garbage
 *   collector on the hub, and a finished pod left behind would keep its dead containers on the
 *   device. When that keeps happening, replacements back off (10 s doubling to 5 min, see
 *   ReplacementBackoff), so a template whose pods exit at once is not replaced in a loop.
 * - A pod the scheduler bound to a node that no longer exists is deleted and replaced (the pod
 *   GC's rule). A pod the template pins to a node by spec.nodeName stays, Pending, whether that
 *   node exists or not: its replacement would go to the same node (see podStanding).
 * - Controller expectations, as Kubernetes': the creations and deletions of a pass must be seen
 *   back through the pod watch before the next pass creates or deletes for the same ReplicaSet.
 * - A pod with metadata.deletionTimestamp is on its way out: not counted, not touched.
 * - A deleted ReplicaSet takes its pods with it (the garbage collector's cascade).
 * Status counts the active pods: replicas, readyReplicas, and availableReplicas (Ready for the
 * ReplicaSet's minReadySeconds); the key is looked at again when the next pod becomes available.
 */
export class ReplicaSetController extends Controller {
  private readonly now: () => number;
  private readonly burst: number;
  private readonly expectations: ControllerExpectations;
  private readonly replacements: ReplacementBackoff;

  constructor(ctx: ControllerContext, opts: ReplicaSetControllerOptions = {}) {
    super('replicaset', ctx);
    this.now = opts.now ?? Date.now;
    this.burst = opts.burst ?? DEFAULT_BURST;
    this.expectations = new ControllerExpectations(this.now);
    this.replacements = new ReplacementBackoff(opts.replacementBackoffMs);
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
    this.observePods('ReplicaSet', this.expectations);
    const { namespace, name } = splitKey(key);
    const rs = this.store.get('ReplicaSet', namespace, name);
    const named = this.store.list('Pod', { namespace, ...this.podSelector(rs), filter: (p) => controllerNamed(p, 'ReplicaSet', name) }).items;
    return this.store.transaction(() => (rs ? this.sync(key, rs, named) : this.cascade(key, named)));
  }

  /** A deleted ReplicaSet takes its pods with it (the garbage collector's cascade). */
  private cascade(key: string, named: StoredObject[]): undefined {
    this.replacements.delete(key);
    // Nothing waits on these deletes (they are idempotent): no expectation is kept for a ReplicaSet that is gone.
    this.expectations.forget(key);
    for (const pod of named) this.deletePod(key, pod);
    return undefined;
  }

  private sync(key: string, rs: StoredObject, named: StoredObject[]): ReconcileResult | undefined {
    const spec = rs.spec as ReplicaSetSpec;
    const want = spec.replicas ?? 1;
    const now = this.now();
    // Pods pinned by the template stay with their node, whether it exists or not (see podStanding).
    const pinnedNode = spec.template.spec.nodeName || undefined;
    const nodes = new Set(this.store.list('Node').items.map((n) => n.metadata.name));
    let active: StoredObject[] = [];
    const stale: StoredObject[] = [];
    const finished: StoredObject[] = [];
    const stranded: StoredObject[] = [];
    for (const pod of named) {
      // A pod of an earlier ReplicaSet of the same name belongs to no one now.
      if (!isControlledBy(pod, rs)) stale.push(pod);
      else {
        const standing = podStanding(pod, nodes, pinnedNode);
        if (standing === 'active') active.push(pod);
        else if (standing === 'finished') finished.push(pod);
        else if (standing === 'node-gone') stranded.push(pod);
      }
    }
    let requeueAfterMs: number | undefined;
    // Controller expectations: no creations or deletions while earlier ones are not seen back.
    if (this.expectations.satisfied(key)) {
      if (finished.length > 0) this.replacements.failed(key, now);
      const waitMs = this.replacements.waitMs(key, now);
      let create = 0;
      let surplus: StoredObject[] = [];
      if (active.length < want) create = waitMs > 0 ? 0 : Math.min(want - active.length, this.burst);
      else if (active.length > want) surplus = deletionOrder(active).slice(0, active.length - want);
      this.expectations.expect(key, create, stale.length + finished.length + stranded.length + surplus.length);
      for (const pod of stale) this.deletePod(key, pod);
      for (const pod of finished) this.deletePod(key, pod, rs, `it has ${podPhase(pod)}; a new pod replaces it`);
      for (const pod of stranded) this.deletePod(key, pod, rs, `its node ${(pod.spec as PodSpec).nodeName} is gone; a new pod replaces it`);
      for (const pod of surplus) this.deletePod(key, pod, rs, `more than the ${want} replicas wanted`);
      if (surplus.length > 0) active = active.filter((p) => !surplus.includes(p));
      for (let i = 0; i < create; i++) active.push(this.createPod(rs, spec));
      if (active.length < want) {
        if (waitMs > 0) this.announceBackOff(key, rs, now + waitMs, waitMs);
        requeueAfterMs = waitMs;
      }
    } else {
      // The watch wakes the key when the writes are seen; this is the backstop for a lost event.
      requeueAfterMs = EXPECTATIONS_TIMEOUT_MS;
    }
    const counts = countReplicas(active, spec.minReadySeconds ?? 0, now);
    const status: ReplicaSetStatus = { replicas: counts.replicas, readyReplicas: counts.ready, availableReplicas: counts.available, observedGeneration: rs.metadata.generation };
    this.store.updateStatus('ReplicaSet', rs.metadata.namespace, rs.metadata.name, status);
    // Look again when a Ready pod has been Ready for minReadySeconds.
    if (counts.nextAvailableInMs !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, counts.nextAvailableInMs + 1);
    return requeueAfterMs === undefined ? undefined : { requeueAfterMs };
  }

  /** One BackOff event per wait, not one per pass. */
  private announceBackOff(key: string, rs: StoredObject, until: number, waitMs: number): void {
    if (!this.replacements.announce(key, until)) return;
    // No count in the message: at the longest wait the same Event is counted up, not made anew.
    this.events.warning(rs, 'BackOff', `Back-off ${Math.ceil(waitMs / 1000)}s before replacing pods that exited: its template's pods do not keep running`);
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
  private deletePod(key: string, pod: StoredObject, rs?: StoredObject, why?: string): void {
    try {
      this.store.delete('Pod', pod.metadata.namespace ?? 'default', pod.metadata.name);
    } catch {
      this.expectations.deletionObserved(key); // already gone: no deletion of ours to see
      return;
    }
    if (rs && why) this.events.normal(rs, 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name} (${why})`);
  }
}
