import type { Logger } from 'pino';
import { matches, selectorFromMap } from '../../shared/labels/selector.js';
import { isNodeReady, type NodeStatus } from '../../shared/resources/node.js';
import type { DaemonSetSpec, DaemonSetStatus } from '../../shared/resources/daemonset.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';
import { objectKey, splitKey, WorkQueue } from './queue.js';
import { stableSuffix, templateHash } from './names.js';

export const REVISION_HASH_LABEL = 'controller-revision-hash';

/**
 * One pod per node that the template's nodeSelector matches, as Kubernetes' DaemonSet
 * controller. A pod is only created on a node that is Ready (its agent is connected), but an
 * existing pod stays with its node while the node is unreachable: the device keeps running it
 * (edge autonomy), and a new desired set would only reach it on return anyway.
 */
export class DaemonSetController {
  readonly queue: WorkQueue;
  private unwatch: (() => void)[] = [];

  constructor(
    private readonly store: ObjectStore,
    private readonly events: EventRecorder,
    log: Logger,
  ) {
    this.queue = new WorkQueue('daemonset', (key) => this.reconcile(key), log);
  }

  start(): void {
    this.unwatch.push(
      this.store.watch({ kind: 'DaemonSet' }, (e) => this.queue.add(objectKey(e.object.metadata.namespace, e.object.metadata.name))),
      // Any node change (join, labels, readiness, deletion) may change where every DaemonSet runs.
      this.store.watch({ kind: 'Node' }, () => this.enqueueAll()),
      this.store.watch({ kind: 'Pod' }, (e) => {
        const owner = e.object.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'DaemonSet');
        if (owner) this.queue.add(objectKey(e.object.metadata.namespace, owner.name));
      }),
    );
    this.enqueueAll();
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.queue.stop();
  }

  private enqueueAll(): void {
    for (const ds of this.store.list('DaemonSet').items) this.queue.add(objectKey(ds.metadata.namespace, ds.metadata.name));
  }

  reconcile(key: string): void {
    const { namespace, name } = splitKey(key);
    const ds = this.store.get('DaemonSet', namespace, name);
    const owned = this.store
      .list('Pod', { namespace })
      .items.filter((p) => p.metadata.ownerReferences?.some((o) => o.controller && o.kind === 'DaemonSet' && o.name === name && (!ds || o.uid === ds.metadata.uid)));
    if (!ds) {
      // A deleted DaemonSet takes its pods with it (Kubernetes' garbage collector, foreground here).
      this.store.transaction(() => {
        for (const pod of owned) this.deletePod(pod);
      });
      return;
    }
    const spec = ds.spec as DaemonSetSpec;
    const nodeSelector = selectorFromMap(spec.template.spec.nodeSelector ?? {});
    const hash = templateHash(spec.template);
    const nodes = this.store.list('Node').items;
    const podsByNode = new Map<string, StoredObject[]>();
    for (const pod of owned) {
      const node = (pod.spec as { nodeName?: string }).nodeName ?? '';
      podsByNode.set(node, [...(podsByNode.get(node) ?? []), pod]);
    }

    let desired = 0;
    let ready = 0;
    let current = 0;
    let updated = 0;
    let misscheduled = 0;
    this.store.transaction(() => {
      const seenNodes = new Set<string>();
      for (const node of nodes) {
        const nodeName = node.metadata.name;
        seenNodes.add(nodeName);
        const pods = podsByNode.get(nodeName) ?? [];
        const shouldRun = matches(nodeSelector, node.metadata.labels ?? {});
        if (!shouldRun) {
          misscheduled += pods.length;
          for (const pod of pods) this.deletePod(pod, `node ${nodeName} no longer matches the nodeSelector`);
          continue;
        }
        desired++;
        const [keep, ...extra] = pods;
        for (const pod of extra) this.deletePod(pod, 'more than one pod on the node');
        if (!keep) {
          if (isNodeReady(node.status as NodeStatus | undefined)) {
            this.createPod(ds, spec, nodeName, hash);
            current++;
            updated++;
          }
          continue;
        }
        if (keep.metadata.labels?.[REVISION_HASH_LABEL] !== hash) {
          this.updatePod(keep, spec, hash);
        }
        current++;
        updated++;
        const status = keep.status as PodStatus | undefined;
        if (status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) ready++;
      }
      for (const [nodeName, pods] of podsByNode) {
        if (!seenNodes.has(nodeName)) for (const pod of pods) this.deletePod(pod, `node ${nodeName} is gone`);
      }
      const status: DaemonSetStatus = {
        desiredNumberScheduled: desired,
        // Nodes that should run the pod and have one (Kubernetes' meaning), not every matching node.
        currentNumberScheduled: current,
        numberReady: ready,
        updatedNumberScheduled: updated,
        numberMisscheduled: misscheduled,
        observedGeneration: ds.metadata.generation,
      };
      this.store.mutate('DaemonSet', namespace, name, (cur) => ({ ...cur, status }));
    });
  }

  private createPod(ds: StoredObject, spec: DaemonSetSpec, nodeName: string, hash: string): void {
    const name = `${ds.metadata.name}-${stableSuffix(nodeName)}`;
    const namespace = ds.metadata.namespace ?? 'default';
    if (this.store.get('Pod', namespace, name)) return;
    const pod = this.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace,
        labels: { ...(spec.template.metadata?.labels ?? {}), [REVISION_HASH_LABEL]: hash },
        ...(spec.template.metadata?.annotations ? { annotations: { ...spec.template.metadata.annotations } } : {}),
        ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'DaemonSet', name: ds.metadata.name, uid: ds.metadata.uid, controller: true }],
      },
      spec: { ...spec.template.spec, nodeName },
    });
    this.store.updateStatus('Pod', namespace, name, { phase: 'Pending' } satisfies PodStatus);
    this.events.normal(ds, 'SuccessfulCreate', `Created pod: ${pod.metadata.name} on node ${nodeName}`);
    this.events.normal(pod, 'Scheduled', `Successfully assigned ${namespace}/${name} to ${nodeName}`);
  }

  private updatePod(pod: StoredObject, spec: DaemonSetSpec, hash: string): void {
    const nodeName = (pod.spec as { nodeName?: string }).nodeName;
    this.store.update({
      ...pod,
      metadata: {
        ...pod.metadata,
        labels: { ...(spec.template.metadata?.labels ?? {}), [REVISION_HASH_LABEL]: hash },
        ...(spec.template.metadata?.annotations ? { annotations: { ...spec.template.metadata.annotations } } : {}),
      },
      spec: { ...spec.template.spec, nodeName },
    });
    this.events.normal(pod, 'TemplateChanged', `Pod template changed; node ${nodeName} will replace its containers`);
  }

  private deletePod(pod: StoredObject, why?: string): void {
    try {
      this.store.delete('Pod', pod.metadata.namespace ?? 'default', pod.metadata.name);
    } catch {
      return; // already gone
    }
    const owner = pod.metadata.ownerReferences?.[0];
    if (owner && why) this.events.normal({ kind: owner.kind, name: owner.name, namespace: pod.metadata.namespace, uid: owner.uid }, 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name} (${why})`);
  }
}
