import { TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE, type ConditionStatus, type Taint } from '../../shared/resources/node.js';
import type { Toleration } from '../../shared/resources/scheduling.js';

/** The NoExecute taint a node's Ready status calls for, as Kubernetes' node lifecycle controller sets it. */
export function readinessTaintKey(ready: ConditionStatus | undefined): string | undefined {
  // No Ready condition yet: a node just joined (or registered ahead of its device) is in its grace period.
  if (ready === 'True' || ready === undefined) return undefined;
  return ready === 'False' ? TAINT_NODE_NOT_READY : TAINT_NODE_UNREACHABLE;
}

function isReadinessTaint(t: Taint): boolean {
  return t.effect === 'NoExecute' && (t.key === TAINT_NODE_UNREACHABLE || t.key === TAINT_NODE_NOT_READY);
}

/**
 * The node's taints with exactly the readiness taint `wantKey` (or none), keeping every other
 * taint and the timeAdded of one already there. Returns undefined when nothing changes.
 */
export function withReadinessTaint(current: Taint[] | undefined, wantKey: string | undefined, nowIso: string): Taint[] | undefined {
  const taints = current ?? [];
  const present = taints.filter(isReadinessTaint);
  if (present.length === (wantKey ? 1 : 0) && (!wantKey || present[0]!.key === wantKey)) return undefined;
  const others = taints.filter((t) => !isReadinessTaint(t));
  return wantKey ? [...others, { key: wantKey, effect: 'NoExecute', timeAdded: nowIso }] : others;
}

export function readinessTaint(taints: Taint[] | undefined): Taint | undefined {
  return taints?.find(isReadinessTaint);
}

/** Kubernetes' Toleration.ToleratesTaint. */
export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (!t.key) return t.operator === 'Exists';
  if (t.key !== taint.key) return false;
  return t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '');
}

/**
 * How long a pod may stay on a node with this NoExecute taint: `Infinity` when a toleration
 * with no tolerationSeconds covers it; the smallest tolerationSeconds of those that do
 * (Kubernetes' getMinTolerationTime, negative meaning at once); and `defaultSeconds` when no
 * toleration covers it, the toleration Kubernetes' DefaultTolerationSeconds admission adds to
 * every pod that has none of its own (300 s: the hub's --eviction-timeout).
 */
export function toleratedSeconds(tolerations: Toleration[] | undefined, taint: Taint, defaultSeconds: number): number {
  const matching = (tolerations ?? []).filter((t) => tolerates(t, taint));
  if (matching.length === 0) return defaultSeconds;
  if (matching.some((t) => t.tolerationSeconds === undefined)) return Infinity;
  return Math.max(0, Math.min(...matching.map((t) => t.tolerationSeconds!)));
}
