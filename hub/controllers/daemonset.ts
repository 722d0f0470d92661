import type { Logger } from 'pino';
import { matches, selectorFromMap } from '../../shared/labels/selector.js';
import type { DaemonSetSpec, DaemonSetStatus, PodTemplate } from '../../shared/resources/daemonset.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';
import { DaemonSetIndex, REVISION_HASH_LABEL, type DaemonPod } from './daemonset-index.js';
import { objectKey, splitKey, WorkQueue, type ReconcileResult } from './queue.js';
import { stableSuffix, templateHash } from './names.js';

export { REVISION_HASH_LABEL } from './daemonset-index.js';

/**
 * At most this many pods are created, updated or deleted per pass, as Kubernetes' DaemonSet
 * controller's burstReplicas: the rest follow in the next pass, so that the desired sets of the
 * first nodes go out (and their devices start work) while the controller is still busy.
 */
export const BURST_PODS = 250;

/** A revision a node should run: its hash (controller-revision-hash), template, and annotations to add to the pod. */
export interface NodeRevision {
  hash: string;
  template: PodTemplate;
  annotations?: Record<string, string>;
}

/**
 * Asked once per pass of a DaemonSet: undefined for "the current template on every node" (the
 * default); otherwise, per node and the hash of its pod (undefined when it has none), the
 * revision to write, or undefined to leave the node as it is (a rollout decides: see
 * controllers/waves).
 */
export type RevisionChooser = (ds: StoredObject) => ((node: string, podHash: string | undefined) => NodeRevision | undefined) | undefined;

/**
 * One pod per node that the template's nodeSelector matches, as Kubernetes' DaemonSet
 * controller. A pod is only created on a node that is Ready (its agent is connected), but an
 * existing pod stays with its node while the node is unreachable: the device keeps running it
 * (edge autonomy), and a new desired set would only reach it on return anyway.
 */
export class DaemonSetController {
  readonly queue: WorkQueue;
  private unwatch: (() => void)[] = [];
  private index: DaemonSetIndex | undefined;
  private started = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly events: EventRecorder,
    log: Logger,
    private readonly revisions?: RevisionChooser,
  ) {
    this.queue = new WorkQueue('daemonset', (key) => this.reconcile(key), log);
  }

  start(): void {
    this.started = true;
    this.view();
    this.unwatch.push(this.store.watch({ kind: 'DaemonSet' }, (e) => this.queue.add(objectKey(e.object.metadata.namespace, e.object.metadata.name))));
    this.enqueueAll();
  }

  stop(): void {
    this.started = false;
    for (const u of this.unwatch) u();
    this.unwatch = [];
    this.index = undefined;
    this.queue.stop();
  }

  /** The nodes and owned pods, from the store once, then kept current by watches. */
  private view(): DaemonSetIndex {
    if (this.index) return this.index;
    const index = new DaemonSetIndex();
    const { nodesVersion, podsVersion } = index.load(this.store);
    this.index = index;
    this.unwatch.push(
      // A node joining, leaving, relabelled or changing readiness may change where every DaemonSet runs; a heartbeat does not.
      this.store.watch({ kind: 'Node', fromResourceVersion: nodesVersion }, (e) => {
        if (index.onNode(e) && this.started) this.enqueueAll();
      }),
      this.store.watch({ kind: 'Pod', fromResourceVersion: podsVersion }, (e) => {
        for (const key of index.onPod(e)) if (this.started) this.queue.add(key);
      }),
    );
    return index;
  }

  private enqueueAll(): void {
    for (const ds of this.store.list('DaemonSet').items) this.queue.add(objectKey(ds.metadata.namespace, ds.metadata.name));
  }

  reconcile(key: string): ReconcileResult | void {
    const { namespace, name } = splitKey(key);
    const index = this.view();
    const ds = this.store.get('DaemonSet', namespace, name);
    const owned = index.podsOf(key, ds?.metadata.uid);
    let budget = BURST_PODS;
    if (!ds) {
      // A deleted DaemonSet takes its pods with it (Kubernetes' garbage collector, foreground here).
      this.store.transaction(() => {
        for (const pod of owned.slice(0, budget)) this.deletePod(pod);
      });
      return owned.length > budget ? { requeueAfterMs: 0 } : undefined;
    }
    const spec = ds.spec as DaemonSetSpec;
    const nodeSelector = selectorFromMap(spec.template.spec.nodeSelector ?? {});
    const hash = templateHash(spec.template);
    const templateRevision: NodeRevision = { hash, template: spec.template };
    const choose = this.revisions?.(ds);
    const revisionOf = (nodeName: string, podHash: string | undefined) => (choose ? choose(nodeName, podHash) : templateRevision);
    const podsByNode = new Map<string, DaemonPod[]>();
    for (const pod of owned) {
      const onNode = podsByNode.get(pod.node);
      if (onNode) onNode.push(pod);
      else podsByNode.set(pod.node, [pod]);
    }

    let desired = 0;
    let ready = 0;
    let current = 0;
    let updated = 0;
    let misscheduled = 0;
    const spend = () => budget-- > 0;
    this.store.transaction(() => {
      for (const nodeName of index.nodeNames()) {
        const node = index.nodes.get(nodeName)!;
        const pods = podsByNode.get(nodeName) ?? [];
        podsByNode.delete(nodeName);
        if (!matches(nodeSelector, node.labels)) {
          misscheduled += pods.length;
          for (const pod of pods) if (spend()) this.deletePod(pod, `node ${nodeName} no longer matches the nodeSelector`);
          continue;
        }
        desired++;
        const [keep, ...extra] = pods;
        for (const pod of extra) if (spend()) this.deletePod(pod, 'more than one pod on the node');
        if (!keep) {
          const rev = node.ready ? revisionOf(nodeName, undefined) : undefined;
          if (rev && spend()) {
            this.createPod(ds, nodeName, rev);
            current++;
            if (rev.hash === hash) updated++;
          }
          continue;
        }
        current++;
        const rev = revisionOf(nodeName, keep.hash);
        if (!rev || keep.hash === rev.hash) {
          if (keep.hash === hash) updated++;
        } else if (spend()) {
          this.updatePod(keep, rev);
          if (rev.hash === hash) updated++;
        }
        if (keep.ready) ready++;
      }
      // What is left sits on nodes that are gone.
      for (const [nodeName, pods] of podsByNode) for (const pod of pods) if (spend()) this.deletePod(pod, `node ${nodeName} is gone`);
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
    // Out of budget: the rest in the next pass, after other work has had its turn.
    return budget < 0 ? { requeueAfterMs: 0 } : undefined;
  }

  private createPod(ds: StoredObject, nodeName: string, rev: NodeRevision): void {
    const { template, hash } = rev;
    const annotations = { ...(template.metadata?.annotations ?? {}), ...(rev.annotations ?? {}) };
    const name = `${ds.metadata.name}-${stableSuffix(nodeName)}`;
    const namespace = ds.metadata.namespace ?? 'default';
    if (this.store.get('Pod', namespace, name)) return;
    const pod = this.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace,
        labels: { ...(template.metadata?.labels ?? {}), [REVISION_HASH_LABEL]: hash },
        ...(Object.keys(annotations).length ? { annotations } : {}),
        ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'DaemonSet', name: ds.metadata.name, uid: ds.metadata.uid, controller: true }],
      },
      spec: { ...template.spec, nodeName },
      // Created with its status: one write, not two.
      status: { phase: 'Pending' } satisfies PodStatus,
    });
    this.events.normal(ds, 'SuccessfulCreate', `Created pod: ${pod.metadata.name} on node ${nodeName}`);
    this.events.normal(pod, 'Scheduled', `Successfully assigned ${namespace}/${name} to ${nodeName}`);
  }

  private updatePod(facts: DaemonPod, rev: NodeRevision): void {
    const pod = this.store.get('Pod', facts.namespace, facts.name);
    if (!pod) return;
    const { template, hash } = rev;
    const annotations = { ...(template.metadata?.annotations ?? {}), ...(rev.annotations ?? {}) };
    const nodeName = (pod.spec as { nodeName?: string }).nodeName;
    this.store.update({
      ...pod,
      metadata: {
        ...pod.metadata,
        labels: { ...(template.metadata?.labels ?? {}), [REVISION_HASH_LABEL]: hash },
        ...(Object.keys(annotations).length ? { annotations } : {}),
      },
      spec: { ...template.spec, nodeName },
    });
    this.events.normal(pod, 'TemplateChanged', `Pod template changed; node ${nodeName} will replace its containers`);
  }

  private deletePod(facts: DaemonPod, why?: string): void {
    let pod: StoredObject;
    try {
      pod = this.store.delete('Pod', facts.namespace, facts.name);
    } catch {
      return; // already gone
    }
    const owner = pod.metadata.ownerReferences?.[0];
    if (owner && why) this.events.normal({ kind: owner.kind, name: owner.name, namespace: pod.metadata.namespace, uid: owner.uid }, 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name} (${why})`);
  }
}
