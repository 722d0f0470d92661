import type { Logger } from 'pino';
import { matches, selectorFromMap } from '../../shared/labels/selector.js';
import type { DaemonSetSpec, DaemonSetStatus, PodTemplate } from '../../shared/resources/daemonset.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import { DaemonSetIndex, REVISION_HASH_LABEL, type DaemonPod } from './daemonset-index.js';
import { ControllerExpectations, EXPECTATIONS_TIMEOUT_MS } from './expectations.js';
import { objectKey, splitKey, WorkQueue, type ReconcileResult } from './queue.js';
import { stableSuffix, templateHash } from './names.js';

export { REVISION_HASH_LABEL } from './daemonset-index.js';

/**
 * At most this many pods are created, updated or deleted per pass, as Kubernetes' DaemonSet
 * controller's burstReplicas: the rest follow in the next pass, so that the desired sets of the
 * first nodes go out (and their devices start work) while the controller is still busy.
 */
export const BURST_PODS = 250;

/** How long a DaemonSet's status may lag its pods' readiness (numberReady), at most. */
export const READY_PASS_MS = 1_000;

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
 * Controller expectations, as Kubernetes' DaemonSet controller: the pods a pass created or
 * deleted must be seen back in the controller's view before the next pass creates or deletes
 * more for that DaemonSet.
 */
export class DaemonSetController {
  readonly queue: WorkQueue;
  private unwatch: (() => void)[] = [];
  private index: DaemonSetIndex | undefined;
  private started = false;
  private readonly expectations = new ControllerExpectations();
  /** The pods the running pass created and deleted, for its expectations. */
  private made = 0;
  private removed = 0;

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
      // Writes rolled back are never seen: what was expected of them is forgotten.
      this.store.onRollback(() => this.expectations.forgetAll()),
      this.store.watch({ kind: 'Pod', fromResourceVersion: podsVersion }, (e) => {
        this.observe(e);
        const { keys, readinessOnly } = index.onPod(e);
        if (!this.started) return;
        // A pod turning Ready changes only the DaemonSet's status counts: while a fleet reports
        // in, those passes (each a walk of every node) are made at most once per READY_PASS_MS.
        for (const key of keys) {
          if (readinessOnly) this.queue.addWithin(key, READY_PASS_MS);
          else this.queue.add(key);
        }
      }),
    );
    return index;
  }

  /** A pod of a DaemonSet created or deleted: an observation for its expectations. */
  private observe(e: WatchEvent): void {
    if (e.type === 'MODIFIED') return;
    const owner = e.object.metadata.ownerReferences?.find((o) => o.controller && o.kind === 'DaemonSet');
    if (!owner) return;
    const key = objectKey(e.object.metadata.namespace, owner.name);
    if (e.type === 'ADDED') this.expectations.creationObserved(key);
    else this.expectations.deletionObserved(key);
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
      this.expectations.forget(key);
      // A deleted DaemonSet takes its pods with it (Kubernetes' garbage collector, foreground here).
      this.store.transaction(() => {
        for (const pod of owned.sort(byName).slice(0, budget)) this.deletePod(pod);
      });
      return owned.length > budget ? { requeueAfterMs: 0 } : undefined;
    }
    // While the last pass's pods are not seen back, this pass counts and writes status only.
    const manage = this.expectations.satisfied(key);
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
    const spend = () => manage && budget-- > 0;
    const createdPods: { pod: StoredObject; node: string }[] = [];
    const changedPods: { pod: StoredObject; node: string }[] = [];
    this.made = 0;
    this.removed = 0;
    this.store.transaction(() => {
      for (const nodeName of index.nodeNames()) {
        const node = index.nodes.get(nodeName)!;
        const pods = podsByNode.get(nodeName) ?? [];
        podsByNode.delete(nodeName);
        // Which pod a node keeps, when it has several, must not depend on the index's order.
        if (pods.length > 1) pods.sort(byName);
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
            const created = this.createPod(ds, nodeName, rev);
            if (created) createdPods.push(created);
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
          const changed = this.updatePod(keep, rev);
          if (changed) changedPods.push(changed);
          if (rev.hash === hash) updated++;
        }
        if (keep.ready) ready++;
      }
      this.recordPass(ds, createdPods, changedPods);
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
      if (manage) this.expectations.expect(key, this.made, this.removed);
    });
    // The view wakes the key when the pods are seen; this is the backstop.
    if (!manage) return { requeueAfterMs: EXPECTATIONS_TIMEOUT_MS };
    // Out of budget: the rest in the next pass, after other work has had its turn.
    return budget < 0 ? { requeueAfterMs: 0 } : undefined;
  }

  /**
   * The pass's creations and template changes as Events: one per pod for a few pods; for a
   * fleet-wide pass (up to BURST_PODS pods) one on the DaemonSet naming the first few and the
   * count, since an Event per pod cost as much as the pods themselves. Each pod still gets its
   * Scheduled event.
   */
  private recordPass(ds: StoredObject, created: { pod: StoredObject; node: string }[], changed: { pod: StoredObject; node: string }[]): void {
    if (created.length <= PASS_EVENTS_PER_POD) {
      for (const { pod, node } of created) this.events.normal(ds, 'SuccessfulCreate', `Created pod: ${pod.metadata.name} on node ${node}`);
    } else {
      this.events.normal(ds, 'SuccessfulCreate', `Created ${created.length} pods: ${listed(created)}`);
    }
    if (changed.length <= PASS_EVENTS_PER_POD) {
      for (const { pod, node } of changed) this.events.normal(pod, 'TemplateChanged', `Pod template changed; node ${node} will replace its containers`);
    } else {
      this.events.normal(ds, 'TemplateChanged', `Pod template changed on ${changed.length} pods, whose nodes will replace their containers: ${listed(changed)}`);
    }
  }

  /** Creates the node's pod; the pod, or undefined when it exists already. */
  private createPod(ds: StoredObject, nodeName: string, rev: NodeRevision): { pod: StoredObject; node: string } | undefined {
    const { template, hash } = rev;
    const annotations = { ...(template.metadata?.annotations ?? {}), ...(rev.annotations ?? {}) };
    const namespace = ds.metadata.namespace ?? 'default';
    const name = this.podName(ds.metadata.name, namespace, nodeName);
    if (!name) return undefined;
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
    this.made++;
    this.events.normal(pod, 'Scheduled', `Successfully assigned ${namespace}/${name} to ${nodeName}`);
    return { pod, node: nodeName };
  }

  /**
   * The pod's name on `nodeName`: the DaemonSet's name and a 5-character hash of the node's, or
   * a 10-character one when another node's pod holds the short name (at 10,000 nodes a few pairs
   * of node names share a 5-character hash). Undefined when the node's pod exists already.
   */
  private podName(dsName: string, namespace: string, nodeName: string): string | undefined {
    for (const length of [5, 10]) {
      const name = `${dsName}-${stableSuffix(nodeName, length)}`;
      const existing = this.store.get('Pod', namespace, name);
      if (!existing) return name;
      if ((existing.spec as { nodeName?: string } | undefined)?.nodeName === nodeName) return undefined;
    }
    return undefined;
  }

  /** Writes the revision into the pod; the pod and its node, or undefined when the pod is gone. */
  private updatePod(facts: DaemonPod, rev: NodeRevision): { pod: StoredObject; node: string } | undefined {
    const pod = this.store.get('Pod', facts.namespace, facts.name);
    if (!pod) return undefined;
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
    return { pod, node: nodeName ?? facts.node };
  }

  private deletePod(facts: DaemonPod, why?: string): void {
    let pod: StoredObject;
    try {
      pod = this.store.delete('Pod', facts.namespace, facts.name);
    } catch {
      return; // already gone
    }
    this.removed++;
    const owner = pod.metadata.ownerReferences?.[0];
    if (owner && why) this.events.normal({ kind: owner.kind, name: owner.name, namespace: pod.metadata.namespace, uid: owner.uid }, 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name} (${why})`);
  }
}

/** Up to this many pods of a pass get an Event each (see recordPass). */
const PASS_EVENTS_PER_POD = 3;

/** "a on node x, b on node y, c on node z and 247 more". */
function listed(pods: { pod: StoredObject; node: string }[]): string {
  const named = pods.slice(0, PASS_EVENTS_PER_POD).map(({ pod, node }) => `${pod.metadata.name} on node ${node}`).join(', ');
  return pods.length > PASS_EVENTS_PER_POD ? `${named} and ${pods.length - PASS_EVENTS_PER_POD} more` : named;
}

function byName(a: DaemonPod, b: DaemonPod): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
