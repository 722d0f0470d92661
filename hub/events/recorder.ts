import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';

export interface InvolvedObject {
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

/**
 * Records Events as Kubernetes' EventRecorder does: one Event object per (object, reason,
 * message), whose count and lastTimestamp grow when the same thing happens again, so a
 * crash-looping pod does not write a new object every time.
 */
export class EventRecorder {
  constructor(
    private readonly store: ObjectStore,
    private readonly component: string,
    private readonly log: Logger,
  ) {}

  normal(obj: StoredObject | InvolvedObject, reason: string, message: string, host?: string): void {
    this.record(obj, 'Normal', reason, message, host);
  }

  warning(obj: StoredObject | InvolvedObject, reason: string, message: string, host?: string): void {
    this.record(obj, 'Warning', reason, message, host);
  }

  record(obj: StoredObject | InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string, host?: string, at = new Date()): void {
    const involved: InvolvedObject = 'metadata' in obj ? { kind: obj.kind, name: obj.metadata.name, namespace: obj.metadata.namespace, uid: obj.metadata.uid } : obj;
    // Events about cluster-scoped objects (nodes) live in the default namespace, as in Kubernetes.
    const namespace = involved.namespace || 'default';
    const digest = createHash('sha256').update(`${involved.kind}/${involved.namespace ?? ''}/${involved.name}/${involved.uid ?? ''}/${reason}/${message}`).digest('hex').slice(0, 12);
    const name = `${involved.name}.${digest}`;
    const now = at.toISOString();
    try {
      // In a transaction of its own (a savepoint inside the caller's): a failed write undoes only itself.
      this.store.transaction(() => {
        const bumped = this.store.mutate('Event', namespace, name, (existing) => ({ ...existing, count: ((existing.count as number | undefined) ?? 1) + 1, lastTimestamp: now }));
        if (bumped) return;
        this.store.create({
          apiVersion: 'flotilla/v1',
          kind: 'Event',
          metadata: { name, namespace },
          involvedObject: involved,
          reason,
          message,
          type,
          count: 1,
          firstTimestamp: now,
          lastTimestamp: now,
          source: { component: this.component, ...(host ? { host } : {}) },
        });
      });
    } catch (err) {
      // An event is a note about work, never a reason for the work to fail.
      this.log.warn({ err, reason }, 'could not record event');
    }
  }
}
