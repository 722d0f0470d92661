import type { NodeNetworkReport } from '../../shared/protocol/network.js';
import type { NodeCondition, NodeStatus } from '../../shared/resources/node.js';

/**
 * The node condition NetworkUnavailable, as Kubernetes' network plugins set it. Two writers
 * share it: the IPAM, while it cannot give the node a pod CIDR (its reasons below), and the
 * status ingest, from what the agent reports of its overlay. The scheduler does not look at it:
 * a node without the overlay (--overlay none) or with it down still runs pods on its own bridge.
 */
export const NETWORK_CONDITION = 'NetworkUnavailable';

/** No block is free in the cluster CIDR. */
export const CIDR_NOT_AVAILABLE = 'CIDRNotAvailable';
/** The podCIDR an operator set cannot be the node's (outside the cluster CIDR, taken, quarantined). */
export const POD_CIDR_NOT_USABLE = 'PodCIDRNotUsable';
export const IPAM_REASONS: ReadonlySet<string> = new Set([CIDR_NOT_AVAILABLE, POD_CIDR_NOT_USABLE]);

export type ConditionFields = Pick<NodeCondition, 'status' | 'reason' | 'message'>;

/** NetworkUnavailable as the agent's report of its overlay says it is. */
export function conditionFromReport(report: NodeNetworkReport): ConditionFields {
  if (report.overlay === 'none') return { status: 'False', reason: 'OverlayDisabled', message: 'The agent runs with --overlay none: its pods are on a local bridge, out of reach of other nodes\' pods.' };
  if (report.ready) return { status: 'False', reason: 'WireGuardUp', message: `WireGuard is up (${report.implementation ?? 'unknown implementation'}${report.interface ? ` on ${report.interface}` : ''}).` };
  return { status: 'True', reason: report.reason ?? 'OverlayNotReady', message: report.message ?? 'The agent has not built the overlay yet.' };
}

/** Whether the IPAM's word stands over the agent's: while the node has no pod CIDR and the IPAM said why. */
export function ipamHoldsCondition(status: NodeStatus | undefined, podCIDR: string | undefined): boolean {
  if (podCIDR) return false;
  const current = status?.conditions?.find((c) => c.type === NETWORK_CONDITION);
  return current?.reason !== undefined && IPAM_REASONS.has(current.reason);
}

/** The conditions with NetworkUnavailable set; lastTransitionTime moves only when its status changes. */
export function withNetworkCondition(conditions: readonly NodeCondition[] | undefined, next: ConditionFields, now: string): NodeCondition[] {
  const list = conditions ?? [];
  const prev = list.find((c) => c.type === NETWORK_CONDITION);
  const condition: NodeCondition = { type: NETWORK_CONDITION, ...next, lastTransitionTime: prev && prev.status === next.status && prev.lastTransitionTime ? prev.lastTransitionTime : now };
  return prev ? list.map((c) => (c === prev ? condition : c)) : [...list, condition];
}

/** The conditions without the IPAM's NetworkUnavailable (the node has its block now; the agent's report says the rest). */
export function withoutIpamCondition(conditions: readonly NodeCondition[] | undefined): NodeCondition[] | undefined {
  if (!conditions) return undefined;
  return conditions.filter((c) => !(c.type === NETWORK_CONDITION && c.reason !== undefined && IPAM_REASONS.has(c.reason)));
}
