import type { NodeNetworkReport } from '../../shared/protocol/network.js';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import { conditionFromReport, ipamHoldsCondition, withNetworkCondition } from './condition.js';

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
 * derived from it, unless the IPAM's reason stands (the node has no pod CIDR yet). An agent that
 * reports no overlay part (older than the overlay) changes neither.
 */
export function applyOverlayReport(status: NodeStatus, report: NodeNetworkReport | undefined, spec: NodeSpec | undefined, now: string): NodeStatus {
  if (!report) return status;
  const next: NodeStatus = { ...status, overlay: report };
  if (ipamHoldsCondition(status, spec?.podCIDR)) return next;
  next.conditions = withNetworkCondition(status.conditions, conditionFromReport(report), now);
  return next;
}
