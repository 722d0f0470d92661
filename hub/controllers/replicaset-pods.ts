import type { PodCondition, PodPhase, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { StoredObject } from '../store/types.js';

/** Where a pod a ReplicaSet controls stands, for counting and for clean-up. */
export type PodStanding =
  /** Counts towards the replicas: not finished, not being deleted, on a node that exists (or none yet). */
  | 'active'
  /** Has metadata.deletionTimestamp: on its way out, not counted and not touched. */
  | 'terminating'
  /** Failed or Succeeded: replaced, as Kubernetes' FilterActivePods leaves it out. */
  | 'finished'
  /**
   * Bound by the scheduler to a node that no longer exists: nothing will ever run it, and a
   * replacement can be placed elsewhere (Kubernetes' pod GC removes it).
   */
  | 'node-gone';

export function podPhase(pod: StoredObject): PodPhase {
  return (pod.status as PodStatus | undefined)?.phase ?? 'Pending';
}

function nodeNameOf(pod: StoredObject): string | undefined {
  return (pod.spec as PodSpec | undefined)?.nodeName || undefined;
}

/**
 * `pinnedNode` is the node the owner's template names in spec.nodeName, if any. A pod on it is
 * active even when no such node exists: its replacement would be made for the very same node,
 * so deleting it would only start a create/delete loop. As in Kubernetes, a pod bound by
 * spec.nodeName waits Pending until a node of that name joins (the scheduler says so on the pod).
 */
export function podStanding(pod: StoredObject, nodes: ReadonlySet<string>, pinnedNode?: string): PodStanding {
  if (pod.metadata.deletionTimestamp) return 'terminating';
  const phase = podPhase(pod);
  if (phase === 'Failed' || phase === 'Succeeded') return 'finished';
  const node = nodeNameOf(pod);
  if (node !== undefined && node !== pinnedNode && !nodes.has(node)) return 'node-gone';
  return 'active';
}

function readyCondition(pod: StoredObject): PodCondition | undefined {
  return (pod.status as PodStatus | undefined)?.conditions?.find((c) => c.type === 'Ready');
}

export function isPodReady(pod: StoredObject): boolean {
  return readyCondition(pod)?.status === 'True';
}

/**
 * How long until a Ready pod counts as available: Ready for minReadySeconds, measured from the
 * Ready condition's lastTransitionTime (Kubernetes' IsPodAvailable). 0 when it is available now;
 * undefined when it is not Ready, or Ready since an unknown time with minReadySeconds set.
 */
export function msUntilAvailable(pod: StoredObject, minReadySeconds: number, now: number): number | undefined {
  const ready = readyCondition(pod);
  if (ready?.status !== 'True') return undefined;
  if (minReadySeconds <= 0) return 0;
  const since = Date.parse(ready.lastTransitionTime ?? '');
  if (Number.isNaN(since)) return undefined;
  return Math.max(0, since + minReadySeconds * 1000 - now);
}

export interface ReplicaCounts {
  /** Active pods. */
  replicas: number;
  ready: number;
  available: number;
  /** When the next Ready-but-not-yet-available pod becomes available, in ms from now. */
  nextAvailableInMs?: number;
}

/** The counts of a ReplicaSet's status, from its active pods. */
export function countReplicas(active: StoredObject[], minReadySeconds: number, now: number): ReplicaCounts {
  const counts: ReplicaCounts = { replicas: active.length, ready: 0, available: 0 };
  for (const pod of active) {
    if (!isPodReady(pod)) continue;
    counts.ready++;
    const wait = msUntilAvailable(pod, minReadySeconds, now);
    if (wait === 0) counts.available++;
    else if (wait !== undefined) counts.nextAvailableInMs = Math.min(counts.nextAvailableInMs ?? wait, wait);
  }
  return counts;
}

const PHASE_RANK: Partial<Record<PodPhase, number>> = { Pending: 0, Unknown: 1, Running: 2 };

function restarts(pod: StoredObject): number {
  return ((pod.status as PodStatus | undefined)?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0);
}

/**
 * The order in which surplus pods go, first to last, as Kubernetes' ActivePods ranking: not yet
 * on a node before on one; Pending, then Unknown, then Running; not Ready before Ready; Ready
 * for less time before Ready for longer; more restarts before fewer; newer before older.
 */
export function deletionOrder(pods: StoredObject[]): StoredObject[] {
  const readySince = (p: StoredObject) => Date.parse(readyCondition(p)?.lastTransitionTime ?? '') || 0;
  return [...pods].sort(
    (a, b) =>
      Number(nodeNameOf(a) !== undefined) - Number(nodeNameOf(b) !== undefined) ||
      (PHASE_RANK[podPhase(a)] ?? 3) - (PHASE_RANK[podPhase(b)] ?? 3) ||
      Number(isPodReady(a)) - Number(isPodReady(b)) ||
      (isPodReady(a) && isPodReady(b) ? readySince(b) - readySince(a) : 0) ||
      restarts(b) - restarts(a) ||
      b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp) ||
      b.metadata.name.localeCompare(a.metadata.name),
  );
}

/** Whether `obj` names `owner` (this very object, by uid) as its controller. */
export function isControlledBy(obj: StoredObject, owner: StoredObject): boolean {
  return obj.metadata.ownerReferences?.some((o) => o.controller && o.uid === owner.metadata.uid) ?? false;
}

/** Whether `obj`'s controller is a `kind` of this name (any uid: also an earlier object of the name). */
export function controllerNamed(obj: StoredObject, kind: string, name: string): boolean {
  return obj.metadata.ownerReferences?.some((o) => o.controller && o.kind === kind && o.name === name) ?? false;
}
