import type { Logger } from 'pino';
import { matches, selectorFromMap } from '../../shared/labels/selector.js';
import { isNodeReady, type NodeSpec, type NodeStatus } from '../../shared/resources/node.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';
import { objectKey, splitKey, WorkQueue } from './queue.js';

/**
 * Binds bare pods (those with no nodeName) to a node their nodeSelector matches: Ready, not
 * cordoned, fewest pods first (Swarm's spread). The full filter-and-score scheduler replaces
 * the choice; the shape (a queue of unbound pods, retried when nodes change, an event that
 * counts the reasons when nothing fits) stays.
 */
export class PodBinder {
  readonly queue: WorkQueue;
  private unwatch: (() => void)[] = [];

  constructor(
    private readonly store: ObjectStore,
    private readonly events: EventRecorder,
    log: Logger,
  ) {
    this.queue = new WorkQueue('binder', (key) => this.reconcile(key), log);
  }

  start(): void {
    this.unwatch.push(
      this.store.watch({ kind: 'Pod' }, (e) => {
        if (e.type !== 'DELETED' && !(e.object.spec as PodSpec).nodeName) this.queue.add(objectKey(e.object.metadata.namespace, e.object.metadata.name));
      }),
      this.store.watch({ kind: 'Node' }, () => this.enqueueUnbound()),
    );
    this.enqueueUnbound();
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.queue.stop();
  }

  private enqueueUnbound(): void {
    for (const pod of this.store.list('Pod').items) {
      if (!(pod.spec as PodSpec).nodeName) this.queue.add(objectKey(pod.metadata.namespace, pod.metadata.name));
    }
  }

  reconcile(key: string): void {
    const { namespace, name } = splitKey(key);
    const pod = this.store.get('Pod', namespace, name);
    if (!pod || (pod.spec as PodSpec).nodeName) return;
    const spec = pod.spec as PodSpec;
    const selector = selectorFromMap(spec.nodeSelector ?? {});
    const nodes = this.store.list('Node').items;
    const reasons = new Map<string, number>();
    const count = (why: string) => reasons.set(why, (reasons.get(why) ?? 0) + 1);
    const candidates: StoredObject[] = [];
    for (const node of nodes) {
      if (!isNodeReady(node.status as NodeStatus | undefined)) count('node(s) were not ready');
      else if ((node.spec as NodeSpec | undefined)?.unschedulable) count('node(s) were unschedulable');
      else if (!matches(selector, node.metadata.labels ?? {})) count("node(s) didn't match Pod's node affinity/selector");
      else candidates.push(node);
    }
    if (candidates.length === 0) {
      // Kubernetes' FailedScheduling message, reasons sorted as its FitError sorts them:
      // "0/3 nodes are available: 1 node(s) were not ready, 2 node(s) didn't match ...".
      const detail = [...reasons].map(([why, n]) => `${n} ${why}`).sort().join(', ');
      const message = `0/${nodes.length} nodes are available${detail ? `: ${detail}` : ''}.`;
      const status = (pod.status as PodStatus | undefined) ?? { phase: 'Pending' };
      this.store.mutate('Pod', namespace, name, (cur) => ({
        ...cur,
        status: { ...status, phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }] },
      }));
      this.events.warning(pod, 'FailedScheduling', message);
      return;
    }
    const podsPerNode = new Map<string, number>();
    for (const p of this.store.list('Pod').items) {
      const n = (p.spec as PodSpec).nodeName;
      if (n) podsPerNode.set(n, (podsPerNode.get(n) ?? 0) + 1);
    }
    candidates.sort((a, b) => (podsPerNode.get(a.metadata.name) ?? 0) - (podsPerNode.get(b.metadata.name) ?? 0) || a.metadata.name.localeCompare(b.metadata.name));
    const target = candidates[0]!.metadata.name;
    this.store.transaction(() => {
      this.store.mutate('Pod', namespace, name, (cur) => ({ ...cur, spec: { ...(cur.spec as PodSpec), nodeName: target } }));
      this.store.mutate('Pod', namespace, name, (cur) => ({
        ...cur,
        status: { ...((cur.status as PodStatus | undefined) ?? { phase: 'Pending' }), conditions: [{ type: 'PodScheduled', status: 'True' }] },
      }));
    });
    this.events.normal(pod, 'Scheduled', `Successfully assigned ${namespace}/${name} to ${target}`);
  }
}
