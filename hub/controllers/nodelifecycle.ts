import { nodeCondition, type NodeCondition, type NodeSpec, type NodeStatus, type Taint } from '../../shared/resources/node.js';
import type { PodCondition, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { Controller, type ControllerContext } from './controller.js';
import { readinessTaint, readinessTaintKey, toleratedSeconds, withReadinessTaint } from './nodelifecycle-taints.js';
import type { ReconcileResult } from './queue.js';

export interface NodeLifecycleOptions {
  /** Silence after which a node's Ready turns Unknown (Kubernetes' node-monitor-grace-period). */
  nodeGraceSeconds: number;
  /** How long pods with no toleration of their own stay on a NotReady/Unknown node (DefaultTolerationSeconds). */
  evictionTimeoutSeconds: number;
  /** When the hub last heard anything from the node's device (hub/dispatch/heartbeats.ts). */
  lastHeardAt?: (node: string) => number | undefined;
  /** The controller's clock (ms since the epoch); tests pass their own. */
  now?: () => number;
}

const SILENT_MESSAGE = 'Agent stopped posting node status.';

/**
 * Kubernetes' node lifecycle controller and its NoExecute taint manager, in one loop per node:
 *
 * - A node not heard from for the grace period (no status report, no MQTT keepalive ping) turns
 *   Ready=Unknown. A device whose connection closes is marked Unknown at once by the status
 *   ingest (its MQTT last will); this timer is the backstop for a device gone silent behind a
 *   connection that has not dropped, and for a node whose agent never comes back after a hub
 *   restart.
 * - A node whose Ready is Unknown carries node.kubernetes.io/unreachable:NoExecute, one whose
 *   Ready is False node.kubernetes.io/not-ready:NoExecute; both go when it is Ready again.
 * - Its pods' Ready condition turns False (reason NodeNotReady), so Services stop sending to them.
 * - A pod that does not tolerate the taint for longer is deleted once it has been there for its
 *   tolerationSeconds (the eviction timeout when the pod has no toleration of its own); the
 *   owner's controller makes a replacement that the scheduler places on a Ready node. The time
 *   counts from the taint, or from the pod's creation when it came later. DaemonSet pods stay
 *   with their node (Kubernetes gives them tolerations without a limit), and so do pods whose
 *   controller's template pins them to it by spec.nodeName (a replacement would come back to
 *   the same node) and pods that have finished: there is nothing left to move. A bare pod is
 *   deleted as well, and is gone for good, as in Kubernetes.
 * - After a (hub) restart, every node gets a fresh grace period and every taint a fresh
 *   toleration period, as Kubernetes' controllers restart their clocks: a node whose last
 *   heartbeat is old is not evicted the moment the hub comes back.
 *
 * Every deadline is computed from store state and the clock; reconcile returns the next one.
 */
export class NodeLifecycleController extends Controller {
  private readonly graceMs: number;
  private readonly evictionTimeoutSeconds: number;
  private readonly now: () => number;
  private readonly lastHeardAt: (node: string) => number | undefined;
  private startedAt: number;
  /** Nodes last seen not Ready: a pod bound to one of them wakes its node. */
  private readonly unready = new Set<string>();
  /**
   * What the last event of each node said of what this controller decides on (its Ready status
   * and taints): a status report that moves only heartbeats or revisions needs no pass, since
   * the pass already scheduled for the end of the node's grace period reads the latest anyway.
   */
  private readonly seen = new Map<string, string>();

  constructor(ctx: ControllerContext, opts: NodeLifecycleOptions) {
    super('nodelifecycle', ctx);
    this.graceMs = opts.nodeGraceSeconds * 1000;
    this.evictionTimeoutSeconds = opts.evictionTimeoutSeconds;
    this.now = opts.now ?? Date.now;
    this.lastHeardAt = opts.lastHeardAt ?? (() => undefined);
    this.startedAt = this.now();
  }

  override start(): void {
    this.startedAt = this.now();
    super.start();
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => string | undefined][] {
    return [
      [
        { kind: 'Node' },
        (e) => {
          const name = e.object.metadata.name;
          if (e.type === 'DELETED') {
            this.unready.delete(name);
            this.seen.delete(name);
            return undefined;
          }
          const facts = `${nodeCondition(e.object.status as NodeStatus | undefined, 'Ready')?.status ?? ''}|${JSON.stringify((e.object.spec as NodeSpec | undefined)?.taints ?? [])}`;
          if (this.seen.get(name) === facts) return undefined;
          this.seen.set(name, facts);
          return name;
        },
      ],
      [
        { kind: 'Pod' },
        (e) => {
          const node = (e.object.spec as PodSpec | undefined)?.nodeName;
          return e.type !== 'DELETED' && node && this.unready.has(node) ? node : undefined;
        },
      ],
    ];
  }

  protected initialKeys(): Iterable<string> {
    return this.store.list('Node').items.map((n) => n.metadata.name);
  }

  reconcile(name: string): ReconcileResult | void {
    const node = this.store.get('Node', '', name);
    if (!node) {
      this.unready.delete(name);
      return;
    }
    const now = this.now();
    const nowIso = new Date(now).toISOString();
    let wakeAt = Infinity;

    const status = node.status as NodeStatus | undefined;
    let ready = nodeCondition(status, 'Ready')?.status;
    if (ready !== 'Unknown') {
      // A node's grace period runs from the last word of its device, but never from before this
      // controller started or the node was created (a node that just joined has not spoken yet).
      const heardAt = Math.max(this.lastHeardAt(name) ?? 0, Date.parse(status?.lastHeartbeatTime ?? '') || 0, Date.parse(node.metadata.creationTimestamp) || 0, this.startedAt);
      const silentAt = heardAt + this.graceMs;
      if (now >= silentAt) {
        this.markUnknown(node, nowIso);
        ready = 'Unknown';
      } else wakeAt = silentAt;
    }

    const taints = this.syncTaint(node, readinessTaintKey(ready), nowIso);
    const taint = readinessTaint(taints);
    if (!taint) {
      this.unready.delete(name);
      return after(wakeAt, now);
    }
    this.unready.add(name);
    // Toleration periods count from the taint, or from this controller's start if that is later.
    const taintedAt = Math.max(Date.parse(taint.timeAdded ?? '') || now, this.startedAt);
    // From the store's node index: a fleet with many unready nodes must not read every pod per node.
    const pods = this.store.list('Pod', { nodeName: name }).items;
    const pinned = new Map<string, boolean>();
    this.store.transaction(() => {
      for (const pod of pods) {
        const phase = (pod.status as PodStatus | undefined)?.phase;
        if (phase === 'Succeeded' || phase === 'Failed') continue;
        this.markPodNotReady(pod, nowIso);
        if (pod.metadata.ownerReferences?.some((o) => o.controller && o.kind === 'DaemonSet')) continue;
        if (this.pinnedByOwner(pod, name, pinned)) continue;
        const seconds = toleratedSeconds((pod.spec as PodSpec).tolerations, taint, this.evictionTimeoutSeconds);
        if (seconds === Infinity) continue;
        // A pod's time counts from when it came to the tainted node, as the taint manager starts
        // a pod's timer when it first sees it there: a pod bound after the taint gets its full time.
        const dueAt = Math.max(taintedAt, Date.parse(pod.metadata.creationTimestamp) || 0) + seconds * 1000;
        if (now >= dueAt) this.evict(pod, name, taint);
        else wakeAt = Math.min(wakeAt, dueAt);
      }
    });
    return after(wakeAt, now);
  }

  /**
   * Whether the pod's controller (a ReplicaSet, a Job) pins its pods to this node by the
   * template's spec.nodeName. Such a pod stays, as a DaemonSet's does: its replacement would be
   * made for this same node, so an eviction would only start a delete/create loop, once per
   * toleration period. Answers are kept per owner for the pass in `cache`.
   */
  private pinnedByOwner(pod: StoredObject, nodeName: string, cache: Map<string, boolean>): boolean {
    const owner = pod.metadata.ownerReferences?.find((o) => o.controller);
    if (!owner) return false;
    let pinned = cache.get(owner.uid);
    if (pinned === undefined) {
      const obj = this.store.get(owner.kind, pod.metadata.namespace, owner.name);
      const template = (obj?.spec as { template?: { spec?: PodSpec } } | undefined)?.template;
      pinned = obj?.metadata.uid === owner.uid && template?.spec?.nodeName === nodeName;
      cache.set(owner.uid, pinned);
    }
    return pinned;
  }

  /** Ready=Unknown for a node gone silent, as Kubernetes' tryUpdateNodeHealth does past the grace period. */
  private markUnknown(node: StoredObject, nowIso: string): void {
    const name = node.metadata.name;
    this.store.mutate('Node', '', name, (cur) => {
      const status = { ...((cur.status as NodeStatus | undefined) ?? {}) };
      const others = (status.conditions ?? []).filter((c) => c.type !== 'Ready');
      const condition: NodeCondition = { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: SILENT_MESSAGE, lastTransitionTime: nowIso };
      status.conditions = [condition, ...others];
      return { ...cur, status };
    });
    this.log.warn({ node: name, graceSeconds: this.graceMs / 1000 }, 'node silent past its grace period; Ready is now Unknown');
    this.events.warning({ kind: 'Node', name }, 'NodeNotReady', `Node ${name} status is now: NodeStatusUnknown (${SILENT_MESSAGE})`, name);
  }

  /** Puts the readiness taint `wantKey` on the node (or takes it off); returns the node's taints after. */
  private syncTaint(node: StoredObject, wantKey: string | undefined, nowIso: string): Taint[] | undefined {
    const name = node.metadata.name;
    const current = (node.spec as NodeSpec | undefined)?.taints;
    const next = withReadinessTaint(current, wantKey, nowIso);
    if (!next) return current;
    this.store.mutate('Node', '', name, (cur) => ({ ...cur, spec: { ...((cur.spec as NodeSpec | undefined) ?? {}), taints: next } }));
    if (wantKey) {
      this.events.normal({ kind: 'Node', name }, 'TaintAdded', `Added taint ${wantKey}:NoExecute; pods that do not tolerate it are evicted after ${this.evictionTimeoutSeconds}s or their own tolerationSeconds`, name);
    } else {
      this.events.normal({ kind: 'Node', name }, 'TaintRemoved', 'Node is Ready again; removed its NoExecute readiness taint', name);
    }
    return next;
  }

  /** Kubernetes' MarkPodsNotReady: the pod's Ready condition False, reason NodeNotReady; its phase stays. */
  private markPodNotReady(pod: StoredObject, nowIso: string): void {
    const ns = pod.metadata.namespace;
    let changed = false;
    this.store.mutate('Pod', ns, pod.metadata.name, (cur) => {
      const status = (cur.status as PodStatus | undefined) ?? { phase: 'Pending' };
      const conditions = status.conditions ?? [];
      const prev = conditions.find((c) => c.type === 'Ready');
      if (prev?.status === 'False' && prev.reason === 'NodeNotReady') return undefined;
      changed = true;
      const ready: PodCondition = { type: 'Ready', status: 'False', reason: 'NodeNotReady', message: 'Node is not ready', lastTransitionTime: prev?.status === 'False' && prev.lastTransitionTime ? prev.lastTransitionTime : nowIso };
      const next = prev ? conditions.map((c) => (c.type === 'Ready' ? ready : c)) : [...conditions, ready];
      return { ...cur, status: { ...status, conditions: next } };
    });
    if (changed) this.events.warning(pod, 'NodeNotReady', 'Node is not ready');
  }

  /** The taint manager's eviction: the pod is deleted; its owner (if any) makes a replacement elsewhere. */
  private evict(pod: StoredObject, nodeName: string, taint: Taint): void {
    const ns = pod.metadata.namespace ?? 'default';
    const who = `${ns}/${pod.metadata.name}`;
    const owner = pod.metadata.ownerReferences?.find((o) => o.controller);
    this.store.delete('Pod', ns, pod.metadata.name);
    if (owner) this.events.normal(pod, 'TaintManagerEviction', `Marking for deletion Pod ${who}`);
    else this.events.warning(pod, 'TaintManagerEviction', `Marking for deletion Pod ${who}: it has no controller, so nothing will recreate it`);
    this.log.info({ pod: who, node: nodeName, taint: taint.key, owner: owner ? `${owner.kind}/${owner.name}` : undefined }, 'evicted pod from a node that is not ready');
  }
}

function after(wakeAt: number, now: number): ReconcileResult | void {
  return wakeAt === Infinity ? undefined : { requeueAfterMs: Math.max(0, wakeAt - now) };
}
