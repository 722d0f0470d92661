import { labelSelectorAsSelector, type Selector } from '../../../shared/labels/selector.js';
import type { DaemonSetSpec } from '../../../shared/resources/daemonset.js';
import { isNodeReady, type NodeStatus } from '../../../shared/resources/node.js';
import type { PodStatus } from '../../../shared/resources/pod.js';
import { UPDATE_LOCK_OVERRIDE_ANNOTATION, UPDATE_LOCKED_CONDITION } from '../../../shared/protocol/update-lock.js';
import type { ObjectStore } from '../../store/objects.js';
import type { StoredObject, WatchEvent } from '../../store/types.js';
import { REVISION_HASH_LABEL } from '../daemonset-index.js';
import { objectKey } from '../queue.js';

/** When the hub released a pod's update (ISO 8601): written with the pod, so a restarted hub knows. */
export const RELEASED_AT_ANNOTATION = 'flotilla.io/rollout-released-at';

/** The container waiting reasons that fail a device at once (docs/ARCHITECTURE.md, 'Waves rollouts': the health gate). */
export const FAILING_REASONS = new Set(['CrashLoopBackOff', 'ImagePullBackOff', 'ErrImagePull']);

/** What the rollout reads of a node. */
export interface WaveNode {
  uid: string;
  labels: Record<string, string>;
  ready: boolean;
  /** The desired-set revision the hub last published to the node. */
  desiredRevision?: number;
  /** The desired-set revision the device last reported working to; its pods' statuses are of that set. */
  observedRevision?: number;
}

/** What the rollout reads of a DaemonSet's pod. */
export interface WavePod {
  namespace: string;
  name: string;
  ownerUid: string;
  node: string;
  hash: string | undefined;
  /** The Ready condition is True, and since when. */
  ready: boolean;
  readySince?: string;
  /** Every container reported running. */
  running: boolean;
  /** The first container waiting for a reason that fails a device, with its message. */
  failure?: { reason: string; message?: string };
  /** Images by container name, as the agent reports them (the spec it works to). */
  images: Record<string, string>;
  /** An update lock is held (the UpdateLocked condition is True) since this time (the lock file's mtime). */
  lockedSince?: string;
  /** The override annotation's value, when set. */
  overriddenAt?: string;
  releasedAt?: string;
}

function daemonSetOwner(pod: StoredObject): { name: string; uid: string } | undefined {
  return pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'DaemonSet');
}

export function podFacts(pod: StoredObject, owner: { uid: string }): WavePod {
  const status = pod.status as PodStatus | undefined;
  const readyCond = status?.conditions?.find((c) => c.type === 'Ready');
  const lock = status?.conditions?.find((c) => c.type === UPDATE_LOCKED_CONDITION);
  const statuses = status?.containerStatuses ?? [];
  const images: Record<string, string> = {};
  for (const c of statuses) images[c.name] = c.image;
  const failing = statuses.find((c) => c.state.waiting?.reason !== undefined && FAILING_REASONS.has(c.state.waiting.reason));
  const annotations = pod.metadata.annotations ?? {};
  return {
    namespace: pod.metadata.namespace ?? 'default',
    name: pod.metadata.name,
    ownerUid: owner.uid,
    node: (pod.spec as { nodeName?: string } | undefined)?.nodeName ?? '',
    hash: pod.metadata.labels?.[REVISION_HASH_LABEL],
    ready: readyCond?.status === 'True',
    ...(readyCond?.status === 'True' && readyCond.lastTransitionTime ? { readySince: readySince(readyCond.lastTransitionTime, statuses) } : {}),
    running: statuses.length > 0 && statuses.every((c) => c.state.running !== undefined),
    ...(failing ? { failure: { reason: failing.state.waiting!.reason!, ...(failing.state.waiting!.message ? { message: failing.state.waiting!.message } : {}) } } : {}),
    images,
    ...(lock?.status === 'True' ? { lockedSince: lock.lastTransitionTime ?? '' } : {}),
    ...(annotations[UPDATE_LOCK_OVERRIDE_ANNOTATION] ? { overriddenAt: annotations[UPDATE_LOCK_OVERRIDE_ANNOTATION] } : {}),
    ...(annotations[RELEASED_AT_ANNOTATION] ? { releasedAt: annotations[RELEASED_AT_ANNOTATION] } : {}),
  };
}

/**
 * Ready since when, for the health gate: the later of the Ready condition's last transition and
 * every container's last start. A container that crashes and is restarted at once may never be
 * reported not Ready, but its new start time shows it: the minReadySeconds window starts again.
 */
function readySince(condition: string, statuses: { state: { running?: { startedAt?: string } } }[]): string {
  let latest = condition;
  let latestMs = Date.parse(condition);
  for (const c of statuses) {
    const started = c.state.running?.startedAt;
    const ms = started ? Date.parse(started) : NaN;
    if (ms > latestMs) {
      latest = started!;
      latestMs = ms;
    }
  }
  return latest;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The rollout controller's view of nodes and DaemonSet pods, kept current by watches (as
 * daemonset-index.ts does for the DaemonSet controller): a pod or node event costs O(1) and says
 * which DaemonSets it may matter to, so a reconcile never lists pods. Only the pods of the
 * DaemonSets it is asked to track (those of type Waves) are kept: a fleet of other DaemonSets
 * costs it neither memory nor work.
 */
export class WavesView {
  readonly nodes = new Map<string, WaveNode>();
  /** Bumped when a node comes, goes, or changes its labels or uid: what the targets of a rollout depend on (not readiness). */
  targetsVersion = 0;
  /** By DaemonSet key, then node name. */
  private readonly pods = new Map<string, Map<string, WavePod>>();
  /** The DaemonSet key and node of each indexed pod, by pod key. */
  private readonly placeOf = new Map<string, { owner: string; node: string }>();
  /** The DaemonSets whose pods are kept, by key. */
  private readonly tracked = new Set<string>();
  private store: ObjectStore | undefined;
  private unwatch: (() => void)[] = [];

  /**
   * Lists once, then follows the watches. `onPods(key)` is told of a change to a DaemonSet's
   * pods; `onNodes()` of a change to a node that may matter to every rollout.
   */
  start(store: ObjectStore, onPods: (dsKey: string) => void, onNodes: () => void): void {
    this.store = store;
    const nodes = store.list('Node');
    for (const node of nodes.items) this.onNode({ type: 'ADDED', object: node });
    this.unwatch.push(
      store.watch({ kind: 'Node', fromResourceVersion: nodes.resourceVersion }, (e) => {
        if (this.onNode(e)) onNodes();
      }),
      // Pods of a DaemonSet tracked later are listed then (track()); from now on, every change.
      store.watch({ kind: 'Pod' }, (e) => {
        for (const key of this.onPod(e)) onPods(key);
      }),
    );
  }

  /**
   * Keeps the pods of DaemonSet `ds` (key `key`) from now on: lists them once (by the
   * DaemonSet's selector, from the label index), then follows them by the watch.
   */
  track(key: string, ds: StoredObject): void {
    if (this.tracked.has(key) || !this.store) return;
    this.tracked.add(key);
    let selector: Selector | undefined;
    try {
      selector = labelSelectorAsSelector((ds.spec as DaemonSetSpec).selector);
    } catch {
      selector = undefined; // owned pods are still found by their owner
    }
    const pods = this.store.list('Pod', { namespace: ds.metadata.namespace ?? 'default', ...(selector ? { selector } : {}), filter: (p) => daemonSetOwner(p)?.name === ds.metadata.name });
    for (const pod of pods.items) this.onPod({ type: 'ADDED', object: pod });
  }

  /** Forgets the pods of DaemonSet `key` (no longer of type Waves, or gone). */
  untrack(key: string): void {
    if (!this.tracked.delete(key)) return;
    for (const pod of this.pods.get(key)?.values() ?? []) this.placeOf.delete(objectKey(pod.namespace, pod.name));
    this.pods.delete(key);
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
  }

  /** Applies a node change; true when it may matter to a rollout (not a heartbeat). */
  onNode(e: WatchEvent): boolean {
    const name = e.object.metadata.name;
    if (e.type === 'DELETED') {
      if (this.nodes.has(name)) this.targetsVersion++;
      return this.nodes.delete(name);
    }
    const status = e.object.status as NodeStatus | undefined;
    const next: WaveNode = {
      uid: e.object.metadata.uid,
      labels: e.object.metadata.labels ?? {},
      ready: isNodeReady(status),
      ...(status?.desiredRevision !== undefined ? { desiredRevision: status.desiredRevision } : {}),
      ...(status?.observedRevision !== undefined ? { observedRevision: status.observedRevision } : {}),
    };
    const prev = this.nodes.get(name);
    if (sameJson(prev, next)) return false;
    if (!prev || prev.uid !== next.uid || !sameJson(prev.labels, next.labels)) this.targetsVersion++;
    this.nodes.set(name, next);
    return true;
  }

  /** Applies a pod change; the keys of the DaemonSets it matters to. */
  onPod(e: WatchEvent): string[] {
    const pod = e.object;
    const podKey = objectKey(pod.metadata.namespace ?? 'default', pod.metadata.name);
    const before = this.placeOf.get(podKey);
    const owner = e.type === 'DELETED' ? undefined : daemonSetOwner(pod);
    const prev = before ? this.pods.get(before.owner)?.get(before.node) : undefined;
    if (before) {
      const map = this.pods.get(before.owner);
      if (map?.get(before.node)?.name === pod.metadata.name) map.delete(before.node);
      this.placeOf.delete(podKey);
    }
    if (!owner) return before ? [before.owner] : [];
    const key = objectKey(pod.metadata.namespace ?? 'default', owner.name);
    if (!this.tracked.has(key)) return before ? [before.owner] : [];
    const facts = podFacts(pod, owner);
    let byNode = this.pods.get(key);
    if (!byNode) this.pods.set(key, (byNode = new Map()));
    const changed = !before || before.owner !== key || !sameJson(prev, facts);
    byNode.set(facts.node, facts);
    this.placeOf.set(podKey, { owner: key, node: facts.node });
    if (!changed) return [];
    return before && before.owner !== key ? [before.owner, key] : [key];
  }

  /** The pod of DaemonSet `key` on `node` (of that uid when given). */
  podOn(key: string, node: string, uid?: string): WavePod | undefined {
    const pod = this.pods.get(key)?.get(node);
    return pod && (uid === undefined || pod.ownerUid === uid) ? pod : undefined;
  }

  /** Forgets nothing: pods are dropped by their own DELETED events. */
  podsOf(key: string): ReadonlyMap<string, WavePod> {
    return this.pods.get(key) ?? new Map();
  }
}
