import { DEFAULT_MAX_SURGE, DEFAULT_MAX_UNAVAILABLE, type DeploymentSpec } from '../../shared/resources/deployment.js';
import { scaledValue } from '../../shared/resources/workload.js';

// The arithmetic of a Deployment's rollout, as Kubernetes' deployment controller does it
// (pkg/controller/deployment: rolling.go, sync.go, util/deployment_util.go), with no I/O.

/** A ReplicaSet as the Deployment controller's arithmetic sees it. */
export interface ReplicaSetView {
  name: string;
  /** spec.replicas: what the ReplicaSet is asked to keep. */
  replicas: number;
  /** Its active pods now (status.replicas, counted afresh from the pods). */
  current: number;
  ready: number;
  available: number;
  /** Its pods that have not finished, being deleted or not: for Recreate, "old pods still running". */
  remaining: number;
  revision: number;
  created: string;
  /** The deployment.kubernetes.io/desired-replicas annotation: the Deployment's size when last scaled. */
  desiredReplicas?: number;
  /** The deployment.kubernetes.io/max-replicas annotation: that size plus maxSurge. */
  maxReplicas?: number;
}

export function isRollingUpdate(spec: DeploymentSpec): boolean {
  return (spec.strategy?.type ?? 'RollingUpdate') === 'RollingUpdate';
}

export interface Fenceposts {
  maxSurge: number;
  maxUnavailable: number;
}

/**
 * maxSurge and maxUnavailable as pod counts (Kubernetes' ResolveFenceposts, MaxSurge and
 * MaxUnavailable): percentages of spec.replicas, maxSurge rounded up and maxUnavailable down; if
 * both come to 0 (small percentages of few replicas), one pod may be unavailable, or the rollout
 * could never move. Recreate has neither.
 */
export function fenceposts(spec: DeploymentSpec): Fenceposts {
  if (!isRollingUpdate(spec)) return { maxSurge: 0, maxUnavailable: 0 };
  const replicas = spec.replicas ?? 1;
  const rolling = spec.strategy?.rollingUpdate;
  const maxSurge = scaledValue(rolling?.maxSurge, replicas, true, DEFAULT_MAX_SURGE);
  let maxUnavailable = scaledValue(rolling?.maxUnavailable, replicas, false, DEFAULT_MAX_UNAVAILABLE);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable: Math.min(maxUnavailable, replicas) };
}

const sum = (views: ReplicaSetView[], f: (v: ReplicaSetView) => number) => views.reduce((n, v) => n + f(v), 0);

/**
 * Pods a ReplicaSet holds or is about to hold. Kubernetes counts spec.replicas only; a ReplicaSet
 * just scaled down still has its surplus pods until its controller deletes them, and counting
 * those too keeps the pods that exist within replicas + maxSurge at every moment.
 */
const held = (v: ReplicaSetView) => Math.max(v.replicas, v.current);
/**
 * Pods of a ReplicaSet that will still be available once it is down to spec.replicas: surplus
 * pods go not-Ready first, so at most spec.replicas of the available ones stay.
 */
const keptAvailable = (v: ReplicaSetView) => Math.min(v.available, v.replicas);

/** The size of the new ReplicaSet now (Kubernetes' NewRSNewReplicas for RollingUpdate): up to replicas + maxSurge pods in all. */
export function newReplicaSetSize(replicas: number, maxSurge: number, newRS: ReplicaSetView, all: ReplicaSetView[]): number {
  if (newRS.replicas >= replicas) return replicas;
  const room = replicas + maxSurge - sum(all, held);
  if (room <= 0) return newRS.replicas;
  return newRS.replicas + Math.min(room, replicas - newRS.replicas);
}

const byAge = (a: ReplicaSetView, b: ReplicaSetView) => a.created.localeCompare(b.created) || a.name.localeCompare(b.name);

/**
 * How far the old ReplicaSets may shrink now (Kubernetes' reconcileOldReplicaSets): first their
 * unavailable pods, oldest ReplicaSet first, as long as the total stays above what the new
 * ReplicaSet still lacks; then available ones, as long as replicas - maxUnavailable stay
 * available. Returns the new size of each old ReplicaSet that changes.
 */
export function oldReplicaSetSizes(replicas: number, maxUnavailable: number, newRS: ReplicaSetView | undefined, olds: ReplicaSetView[]): Map<string, number> {
  const sizes = new Map<string, number>();
  const active = olds.filter((v) => v.replicas > 0).sort(byAge);
  if (active.length === 0) return sizes;
  const all = newRS ? [...olds, newRS] : olds;
  const minAvailable = replicas - maxUnavailable;
  const newUnavailable = newRS ? newRS.replicas - keptAvailable(newRS) : 0;
  const maxScaledDown = sum(all, (v) => v.replicas) - minAvailable - newUnavailable;
  if (maxScaledDown <= 0) return sizes;

  let cleaned = 0;
  for (const v of active) {
    if (cleaned >= maxScaledDown) break;
    const unhealthy = v.replicas - keptAvailable(v);
    if (unhealthy <= 0) continue;
    const down = Math.min(maxScaledDown - cleaned, unhealthy);
    sizes.set(v.name, v.replicas - down);
    cleaned += down;
  }

  const canLose = sum(all, keptAvailable) - minAvailable;
  let lost = 0;
  for (const v of active) {
    if (lost >= canLose) break;
    const size = sizes.get(v.name) ?? v.replicas;
    if (size === 0) continue;
    const down = Math.min(size, canLose - lost);
    sizes.set(v.name, size - down);
    lost += down;
  }
  return sizes;
}

/**
 * A change of spec.replicas in the middle of a rollout, spread over the active ReplicaSets in
 * proportion to their sizes (Kubernetes' proportional scaling): each gets its share of the new
 * replicas + maxSurge by the max-replicas it was last sized for, and what rounding leaves goes
 * to the largest (newest on a tie when adding, oldest when removing).
 */
export function proportionalSizes(replicas: number, maxSurge: number, statusReplicas: number, active: ReplicaSetView[]): Map<string, number> {
  const sizes = new Map<string, number>();
  const allowed = replicas > 0 ? replicas + maxSurge : 0;
  const toAdd = allowed - sum(active, (v) => v.replicas);
  if (toAdd === 0 || active.length === 0) return sizes;
  const sorted = [...active].sort((a, b) => b.replicas - a.replicas || (toAdd > 0 ? -byAge(a, b) : byAge(a, b)));
  let added = 0;
  for (const v of sorted) {
    let share = 0;
    if (v.replicas > 0 && added !== toAdd) {
      const fraction = replicaSetFraction(v, replicas, maxSurge, statusReplicas);
      share = toAdd > 0 ? Math.min(fraction, toAdd - added) : Math.max(fraction, toAdd - added);
    }
    sizes.set(v.name, v.replicas + share);
    added += share;
  }
  const first = sorted[0]!;
  sizes.set(first.name, Math.max(0, sizes.get(first.name)! + toAdd - added));
  return sizes;
}

function replicaSetFraction(v: ReplicaSetView, replicas: number, maxSurge: number, statusReplicas: number): number {
  if (replicas === 0) return -v.replicas;
  const annotated = v.maxReplicas ?? statusReplicas;
  if (annotated <= 0) return 0;
  return Math.round((v.replicas * (replicas + maxSurge)) / annotated) - v.replicas;
}

/**
 * The only active ReplicaSet, or the newest when none is active; undefined when several are
 * active (Kubernetes' FindActiveOrLatest).
 */
export function activeOrLatest(newRS: ReplicaSetView | undefined, olds: ReplicaSetView[]): ReplicaSetView | undefined {
  const all = newRS ? [...olds, newRS] : olds;
  const active = all.filter((v) => v.replicas > 0);
  if (active.length === 1) return active[0];
  if (active.length > 1) return undefined;
  return newRS ?? [...olds].sort(byAge).at(-1);
}

/**
 * Old ReplicaSets to delete beyond revisionHistoryLimit, oldest revision first; only those that
 * are scaled to zero and have no pods left (Kubernetes' cleanupDeployment).
 */
export function replicaSetsToPrune(olds: ReplicaSetView[], limit: number): ReplicaSetView[] {
  const excess = olds.length - limit;
  if (excess <= 0) return [];
  return [...olds]
    .sort((a, b) => a.revision - b.revision || byAge(a, b))
    .slice(0, excess)
    .filter((v) => v.replicas === 0 && v.remaining === 0);
}
