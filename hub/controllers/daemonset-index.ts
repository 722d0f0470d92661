import { isNodeReady, type NodeStatus } from '../../shared/resources/node.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import { objectKey } from './queue.js';

export const REVISION_HASH_LABEL = 'controller-revision-hash';

/** What the DaemonSet controller reads of a pod it owns. */
export interface DaemonPod {
  namespace: string;
  name: string;
  ownerUid: string;
  node: string;
  hash: string | undefined;
  ready: boolean;
}

/** What it reads of a node: where a DaemonSet runs depends on these alone. */
export interface DaemonNode {
  labels: Record<string, string>;
  ready: boolean;
}

function daemonSetOwner(pod: StoredObject): { name: string; uid: string } | undefined {
  return pod.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'DaemonSet');
}

function samePod(a: DaemonPod | undefined, b: DaemonPod): boolean {
  return a !== undefined && a.ownerUid === b.ownerUid && a.node === b.node && a.hash === b.hash && a.ready === b.ready;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

/**
 * The DaemonSet controller's view of the store, kept current by watches: every node (labels and
 * readiness) and the pods of each DaemonSet (node, revision, readiness), as a Kubernetes
 * controller reads its informers' caches. A reconcile reads this view rather than parsing every
 * pod and node of the store; each watch event says whether the change matters to a DaemonSet
 * (a node's heartbeat or a pod's restart count does not).
 */
export class DaemonSetIndex {
  readonly nodes = new Map<string, DaemonNode>();
  /** By DaemonSet key (namespace/name), then pod name. */
  private readonly pods = new Map<string, Map<string, DaemonPod>>();
  /** The DaemonSet key of each indexed pod, by pod key. */
  private readonly ownerOf = new Map<string, string>();
  /** nodeNames(), kept until a node joins or leaves: every pass of every DaemonSet walks it. */
  private sortedNodes: string[] | undefined;

  /** Fills the view from the store; call once, then feed it the watch events after the lists' version. */
  load(store: ObjectStore): { nodesVersion: string; podsVersion: string } {
    const nodes = store.list('Node');
    for (const node of nodes.items) this.onNode({ type: 'ADDED', object: node });
    const pods = store.list('Pod', { filter: (p) => daemonSetOwner(p) !== undefined });
    for (const pod of pods.items) this.onPod({ type: 'ADDED', object: pod });
    return { nodesVersion: nodes.resourceVersion, podsVersion: pods.resourceVersion };
  }

  /** Applies a node change; true when it may change where some DaemonSet runs. */
  onNode(e: WatchEvent): boolean {
    const name = e.object.metadata.name;
    if (e.type === 'DELETED') {
      if (!this.nodes.delete(name)) return false;
      this.sortedNodes = undefined;
      return true;
    }
    const next: DaemonNode = { labels: e.object.metadata.labels ?? {}, ready: isNodeReady(e.object.status as NodeStatus | undefined) };
    const prev = this.nodes.get(name);
    if (prev && prev.ready === next.ready && sameLabels(prev.labels, next.labels)) return false;
    if (!prev) this.sortedNodes = undefined;
    this.nodes.set(name, next);
    return true;
  }

  /**
   * Applies a pod change; the key of each DaemonSet it matters to, and whether all that changed
   * is the pod's readiness (which only the DaemonSet's status counts, not where pods run).
   */
  onPod(e: WatchEvent): { keys: string[]; readinessOnly: boolean } {
    const pod = e.object;
    const namespace = pod.metadata.namespace ?? 'default';
    const podKey = objectKey(namespace, pod.metadata.name);
    const before = this.ownerOf.get(podKey);
    const owner = e.type === 'DELETED' ? undefined : daemonSetOwner(pod);
    if (!owner) {
      if (before === undefined) return { keys: [], readinessOnly: false };
      this.pods.get(before)?.delete(pod.metadata.name);
      this.ownerOf.delete(podKey);
      return { keys: [before], readinessOnly: false };
    }
    const key = objectKey(namespace, owner.name);
    const facts: DaemonPod = {
      namespace,
      name: pod.metadata.name,
      ownerUid: owner.uid,
      node: (pod.spec as { nodeName?: string } | undefined)?.nodeName ?? '',
      hash: pod.metadata.labels?.[REVISION_HASH_LABEL],
      ready: (pod.status as PodStatus | undefined)?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    };
    const touched = before !== undefined && before !== key ? [before, key] : [key];
    if (before !== undefined && before !== key) this.pods.get(before)?.delete(pod.metadata.name);
    let owned = this.pods.get(key);
    if (!owned) this.pods.set(key, (owned = new Map()));
    const prev = owned.get(pod.metadata.name);
    if (samePod(prev, facts)) return { keys: [], readinessOnly: false };
    owned.set(pod.metadata.name, facts);
    this.ownerOf.set(podKey, key);
    return { keys: touched, readinessOnly: touched.length === 1 && samePod(prev, { ...facts, ready: prev?.ready ?? !facts.ready }) };
  }

  /** The pods whose controlling owner is the DaemonSet `key` (of that uid when given), in no particular order. */
  podsOf(key: string, uid?: string): DaemonPod[] {
    const owned: DaemonPod[] = [];
    for (const pod of this.pods.get(key)?.values() ?? []) if (uid === undefined || pod.ownerUid === uid) owned.push(pod);
    return owned;
  }

  /** Node names, sorted (the same array until a node joins or leaves: do not change it). */
  nodeNames(): readonly string[] {
    return (this.sortedNodes ??= [...this.nodes.keys()].sort());
  }
}
