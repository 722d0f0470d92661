import type { NodeNetworkReport } from '../../shared/protocol/network.js';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import { conditionFromReport, IPAM_REASONS, ipamHoldsCondition, NETWORK_CONDITION, withNetworkCondition } from './condition.js';

/**
 * The overlay part of a node's status (status.overlay), as the status ingest writes it. Its
 * figures (bytes each way, handshake times) move on every report of a busy device: they are
 * left out of what decides whether a report is a change, and reach the store with the periodic
 * heartbeat write (hub/dispatch/status.ts), not with every report.
 */

/** The report without its ever-moving figures: what a change of the overlay is. */
export function steadyNetworkReport(report: NodeNetworkReport | undefined): unknown {
  if (!report) return undefined;
  const { peers, relay, ...rest } = report;
  return { ...rest, peers: peers?.map((p) => [p.node, p.path, p.endpoint]), relay: relay !== undefined };
}

/** A node status with its overlay's figures left out, to compare two statuses. */
export function withoutOverlayFigures(status: NodeStatus): NodeStatus {
  return status.overlay ? { ...status, overlay: steadyNetworkReport(status.overlay) as NodeNetworkReport } : status;
}

/**
 * The status with the agent's overlay report taken in: status.overlay, and NetworkUnavailable
 * derived from it, unless the IPAM's reason stands (the node has no pod CIDR yet). A report
 * without an overlay part (an agent older than the overlay) leaves neither: what an earlier
 * agent reported no longer holds.
 */
export function applyOverlayReport(status: NodeStatus, report: NodeNetworkReport | undefined, spec: NodeSpec | undefined, now: string): NodeStatus {
  if (!report) {
    if (!status.overlay) return status;
    const { overlay: _gone, ...rest } = status;
    const conditions = rest.conditions?.filter((c) => c.type !== NETWORK_CONDITION || (c.reason !== undefined && IPAM_REASONS.has(c.reason)));
    return { ...rest, ...(conditions ? { conditions } : {}) };
  }
  const next: NodeStatus = { ...status, overlay: report };
  if (ipamHoldsCondition(status, spec?.podCIDR)) return next;
  next.conditions = withNetworkCondition(status.conditions, conditionFromReport(report), now);
  return next;
}
