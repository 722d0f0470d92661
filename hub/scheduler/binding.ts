import type { PodCondition, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { EventRecorder, InvolvedObject } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';

/**
 * The scheduler's writes, as Kubernetes' binding and its status updates: both check that the pod
 * is still the one that was scheduled (same uid) and still has no node, so a pod deleted,
 * recreated or bound elsewhere meanwhile is left alone.
 */

/** Sets the node and PodScheduled=True, with a Scheduled event; false when the pod is gone or was bound meanwhile. */
export function bindPod(store: ObjectStore, events: EventRecorder, pod: StoredObject, nodeName: string): boolean {
  const { name, uid } = pod.metadata;
  const namespace = pod.metadata.namespace ?? 'default';
  let bound = false;
  store.mutate('Pod', namespace, name, (cur) => {
    const spec = cur.spec as PodSpec;
    if (cur.metadata.uid !== uid || spec.nodeName) return undefined;
    bound = true;
    return { ...cur, spec: { ...spec, nodeName }, status: withScheduled(cur.status as PodStatus | undefined, { type: 'PodScheduled', status: 'True' }) };
  });
  if (bound) events.normal(involved(pod), 'Scheduled', `Successfully assigned ${namespace}/${name} to ${nodeName}`);
  return bound;
}

/**
 * PodScheduled=False (Unschedulable) with the message, and a FailedScheduling Warning with the
 * same, unless `recordEvent` says this failure was told recently enough.
 */
export function markUnschedulable(store: ObjectStore, events: EventRecorder, pod: StoredObject, message: string, recordEvent: (message: string) => boolean = () => true): void {
  const { name, uid } = pod.metadata;
  let current = false;
  store.mutate('Pod', pod.metadata.namespace ?? 'default', name, (cur) => {
    if (cur.metadata.uid !== uid || (cur.spec as PodSpec).nodeName) return undefined;
    current = true;
    return { ...cur, status: withScheduled(cur.status as PodStatus | undefined, { type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }) };
  });
  // The recorder counts a repeat on the same Event rather than adding one.
  if (current && recordEvent(message)) events.warning(involved(pod), 'FailedScheduling', message);
}

function involved(pod: StoredObject): InvolvedObject {
  return { kind: 'Pod', name: pod.metadata.name, namespace: pod.metadata.namespace, uid: pod.metadata.uid };
}

/** The status with its PodScheduled condition replaced (phase Pending when there was none). */
export function withScheduled(status: PodStatus | undefined, condition: PodCondition): PodStatus {
  const others = (status?.conditions ?? []).filter((c) => c.type !== 'PodScheduled');
  return { ...status, phase: status?.phase ?? 'Pending', conditions: [condition, ...others] };
}
