import type { DeploymentSpec } from '../../shared/resources/deployment.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import { scaledValue } from '../../shared/resources/workload.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';

/** What evicting one pod would do to the availability its workload promises. */
export interface DisruptionCheck {
  allowed: boolean;
  /** The workload whose budget applies, as kind/name; absent when none does. */
  workload?: string;
  /** Pods of the workload available now, the floor it must stay at, and how many may be unavailable. */
  available?: number;
  minAvailable?: number;
  maxUnavailable?: number;
}

function controllerOf(obj: StoredObject, kind: string): { name: string; uid: string } | undefined {
  const owner = obj.metadata.ownerReferences?.find((o) => o.controller && o.kind === kind);
  return owner ? { name: owner.name, uid: owner.uid } : undefined;
}

/** Ready for minReadySeconds, as a Deployment counts its available replicas. */
function isAvailable(pod: StoredObject, minReadySeconds: number, now: number): boolean {
  const ready = (pod.status as PodStatus | undefined)?.conditions?.find((c) => c.type === 'Ready');
  if (ready?.status !== 'True') return false;
  if (minReadySeconds === 0) return true;
  const since = Date.parse(ready.lastTransitionTime ?? '');
  return Number.isFinite(since) && now - since >= minReadySeconds * 1000;
}

/**
 * The Deployment a pod belongs to (Pod → ReplicaSet → Deployment, by controller references whose
 * uids match the live objects), if any.
 */
export function deploymentOf(store: ObjectStore, pod: StoredObject): StoredObject | undefined {
  const ns = pod.metadata.namespace ?? 'default';
  const rsRef = controllerOf(pod, 'ReplicaSet');
  const rs = rsRef ? store.get('ReplicaSet', ns, rsRef.name) : undefined;
  if (!rs || rs.metadata.uid !== rsRef!.uid) return undefined;
  const depRef = controllerOf(rs, 'Deployment');
  const dep = depRef ? store.get('Deployment', ns, depRef.name) : undefined;
  return dep && dep.metadata.uid === depRef!.uid ? dep : undefined;
}

/**
 * Whether a pod may be evicted now. Kubernetes asks the PodDisruptionBudgets that select the
 * pod; Flotilla has no PodDisruptionBudget kind and takes a Deployment's own rolling-update
 * budget instead: at most maxUnavailable of its replicas (default 25 %, rounded down) may be
 * unavailable, so an eviction must leave `available - 1 >= replicas - maxUnavailable`. The budget
 * is at least one pod, or a Deployment of few replicas (2 × 25 % rounds to 0) could never be
 * drained; the rest wait until the replacement is available. A pod that is not available itself
 * may always go (taking it costs no availability, as Kubernetes' AlwaysAllow policy for
 * unhealthy pods). Pods of other owners (a bare ReplicaSet, a Job) and bare pods have no budget.
 */
export function checkDisruption(store: ObjectStore, pod: StoredObject, now: number): DisruptionCheck {
  const dep = deploymentOf(store, pod);
  if (!dep) return { allowed: true };
  const spec = dep.spec as DeploymentSpec;
  const ns = dep.metadata.namespace ?? 'default';
  const replicas = spec.replicas ?? 1;
  const minReadySeconds = spec.minReadySeconds ?? 0;
  const maxUnavailable = Math.max(1, scaledValue(spec.strategy?.rollingUpdate?.maxUnavailable, replicas, false, '25%'));
  const minAvailable = Math.max(0, replicas - maxUnavailable);
  const workload = `Deployment/${dep.metadata.name}`;
  if (!isAvailable(pod, minReadySeconds, now)) return { allowed: true, workload, minAvailable, maxUnavailable };
  const replicaSets = new Set(store.list('ReplicaSet', { namespace: ns, filter: (rs) => controllerOf(rs, 'Deployment')?.uid === dep.metadata.uid }).items.map((rs) => rs.metadata.uid));
  const available = store.list('Pod', { namespace: ns, filter: (p) => replicaSets.has(controllerOf(p, 'ReplicaSet')?.uid ?? '') && isAvailable(p, minReadySeconds, now) }).items.length;
  return { allowed: available - 1 >= minAvailable, workload, available, minAvailable, maxUnavailable };
}
