import type { StoredObject } from '../../store/types.js';
import type { NodeRevision } from '../daemonset.js';
import { joinWave, type RolloutRuntime } from './progress.js';
import { specOf, statusOf } from './records.js';
import { RELEASED_AT_ANNOTATION } from './view.js';

/**
 * The agent's per-pod update order (agent/reconcile/plan.ts UPDATE_ORDER_ANNOTATION): the hub
 * sets it on the pods of a Waves rollout from `order` (stop-first: kill-then-download).
 */
export const UPDATE_ORDER_ANNOTATION = 'flotilla.io/update-order';

/**
 * Which revision each node runs under the DaemonSet's newest rollout record (whose template is
 * the DaemonSet's): after success the new one everywhere; while rolling back and after, the old
 * one everywhere (pinned until a new template is applied); after abort, each node keeps what it
 * has; while the rollout is running, a released node the new one, others keep theirs, and a node
 * without a pod the revision its wave has reached.
 */
export function nodeRevisions(record: StoredObject, runtimeOf: () => RolloutRuntime, now: number): (node: string, podHash: string | undefined) => NodeRevision | undefined {
  const rs = specOf(record);
  const status = statusOf(record);
  const order = { [UPDATE_ORDER_ANNOTATION]: rs.strategy.order === 'stop-first' ? 'kill-then-download' : 'download-then-kill' };
  const to: NodeRevision = { hash: rs.toHash, template: rs.toTemplate, annotations: order };
  const from: NodeRevision = rs.fromTemplate && rs.fromHash !== undefined ? { hash: rs.fromHash, template: rs.fromTemplate, annotations: order } : to;
  const released = (at: number): NodeRevision => ({ ...to, annotations: { ...order, [RELEASED_AT_ANNOTATION]: new Date(at).toISOString() } });
  switch (status.phase) {
    case 'Succeeded':
      return () => to;
    case 'RollingBack':
    case 'RolledBack':
      return () => from;
    case 'Aborted':
    case 'Superseded':
      return (_node, podHash) => (podHash === undefined ? from : undefined);
    default: {
      const runtime = runtimeOf();
      return (node, podHash) => {
        const pending = runtime.pending.get(node);
        if (pending !== undefined) return released(pending);
        if (podHash !== undefined) return undefined;
        // A device without a pod joins at the revision its wave has reached.
        const w = runtime.planned.get(node) ?? runtime.joined.get(node) ?? joinWave(status);
        return status.waves[w] && status.waves[w].phase !== 'Pending' ? released(now) : from;
      };
    }
  }
}
