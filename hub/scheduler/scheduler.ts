import type { Logger } from 'pino';
import type { PodSpec } from '../../shared/resources/pod.js';
import { objectKey, splitKey } from '../controllers/queue.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import { bindPod, markUnschedulable } from './binding.js';
import { SchedulerCache, type NodeState } from './cache.js';
import { PodSpecError } from './errors.js';
import { countReasons, fitErrorMessage, prepareCycle, unfit, type Cycle } from './filters.js';
import { MissingNodePods } from './missing-node.js';
import { SchedulingQueue, type QueuedPod, type QueueTiming } from './queue.js';
import { boundPodRequirements, isTerminal, podRequirements, podVersion } from './requirements.js';
import { pickNode, strategyScore } from './scores.js';

export interface SchedulerOptions extends Partial<QueueTiming> {
  /**
   * Pods tried per store transaction (default 256, as the controllers' work queues), and at most
   * BATCH_BUDGET_MS of work: the event loop (MQTT, HTTP) is served between batches.
   */
  batchSize?: number;
  /**
   * Kubernetes' percentageOfNodesToScore: stop looking once this share of the nodes is found
   * feasible (at least 100 nodes). 0 (default) is Kubernetes' adaptive share: 50 % less 1 % per
   * 125 nodes, at least 5 %. 100 looks at every node.
   */
  percentageOfNodesToScore?: number;
  /** For the random strategy (and tests). */
  random?: () => number;
  /**
   * A pod that fails again with the same message has its FailedScheduling event counted up at
   * most this often (default 60 s): every change of the fleet retries the waiting pods, and
   * thousands of them must not each write an event on every change.
   */
  failedSchedulingEventEveryMs?: number;
}

const MIN_FEASIBLE_NODES = 100;
const BATCH_BUDGET_MS = 50;

/** Kubernetes' numFeasibleNodesToFind. */
export function feasibleNodesToFind(nodes: number, percentage = 0): number {
  if (nodes < MIN_FEASIBLE_NODES || percentage >= 100) return nodes;
  const share = percentage > 0 ? percentage : Math.max(5, 50 - Math.floor(nodes / 125));
  return Math.max(MIN_FEASIBLE_NODES, Math.floor((nodes * share) / 100));
}

/**
 * Places pods that have no node (docs/ARCHITECTURE.md, 'The parts': hub/scheduler): filters, then scores,
 * over an in-memory cache of the fleet; binds a batch of pods in one store transaction. DaemonSet
 * pods arrive with their node set and are only counted. A pod bound by spec.nodeName to a node
 * that does not exist is left Pending with a condition that says so (MissingNodePods).
 */
export class Scheduler {
  readonly cache = new SchedulerCache();
  readonly queue: SchedulingQueue;
  readonly missingNodes: MissingNodePods;
  private readonly batchSize: number;
  private readonly percentage: number;
  private readonly random: () => number;
  private unwatch: (() => void)[] = [];
  private running = false;
  private stopped = false;
  private nextStart = 0;
  private pendingChange: 'none' | 'pods' | 'all' = 'none';
  private idleWaiters: (() => void)[] = [];
  private readonly failedEventEveryMs: number;
  /** The FailedScheduling message last recorded for each waiting pod, and when (by pod uid). */
  private readonly failureNoted = new Map<string, { message: string; at: number }>();

  constructor(
    private readonly store: ObjectStore,
    private readonly events: EventRecorder,
    private readonly log: Logger,
    options: SchedulerOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 256;
    this.percentage = options.percentageOfNodesToScore ?? 0;
    this.random = options.random ?? Math.random;
    this.failedEventEveryMs = options.failedSchedulingEventEveryMs ?? 60_000;
    const timing: QueueTiming = { initialBackoffMs: options.initialBackoffMs ?? 1_000, maxBackoffMs: options.maxBackoffMs ?? 10_000, unschedulableFlushMs: options.unschedulableFlushMs ?? 300_000 };
    this.queue = new SchedulingQueue(timing, () => this.kick());
    this.missingNodes = new MissingNodePods(store, events, log, (name) => this.cache.node(name) !== undefined);
  }

  start(): void {
    // List, then watch from the list's version: nothing is missed in between.
    const nodes = this.store.list('Node');
    for (const node of nodes.items) this.cache.upsertNode(node);
    this.unwatch.push(this.store.watch({ kind: 'Node', fromResourceVersion: nodes.resourceVersion }, (e) => this.onNode(e)));
    const pods = this.store.list('Pod');
    for (const pod of pods.items) this.onPod({ type: 'ADDED', object: pod });
    this.unwatch.push(this.store.watch({ kind: 'Pod', fromResourceVersion: pods.resourceVersion }, (e) => this.onPod(e)));
  }

  stop(): void {
    this.stopped = true;
    for (const u of this.unwatch) u();
    this.unwatch = [];
    this.queue.stop();
    this.missingNodes.stop();
    this.releaseIdle();
  }

  /** Resolves when no pod is waiting to be tried now (pods waiting for a change do not count). */
  idle(): Promise<void> {
    if (this.stopped || this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return !this.running && this.queue.activeCount === 0 && this.pendingChange === 'none';
  }

  // ------------------------------------------------------------------------------------------
  // Watches: keep the cache current, and queue pods that need a node.

  private onNode(e: WatchEvent): void {
    const name = e.object.metadata.name;
    if (e.type === 'DELETED') {
      // Its pods leave their topology domains: a domain-wide anti-affinity may now be met.
      this.cache.removeNode(name);
      // Those of them that stay (bound by spec.nodeName, or bare) wait for the node to come back.
      for (const key of this.cache.podKeysOn(name)) this.missingNodes.bound(key, name);
      return this.clusterChanged('all');
    }
    const isNew = this.cache.node(name) === undefined;
    // A heartbeat changes nothing scheduling reads; a new node, a label, a taint or readiness may.
    if (this.cache.upsertNode(e.object)) this.clusterChanged('all');
    if (isNew) this.missingNodes.nodeAdded(name);
  }

  private onPod(e: WatchEvent): void {
    const pod = e.object;
    const key = objectKey(pod.metadata.namespace, pod.metadata.name);
    const nodeName = (pod.spec as PodSpec | undefined)?.nodeName;
    if (e.type === 'DELETED' || isTerminal(pod) || nodeName || pod.metadata.deletionTimestamp) this.failureNoted.delete(pod.metadata.uid);
    if (e.type === 'DELETED' || isTerminal(pod) || (!nodeName && pod.metadata.deletionTimestamp)) {
      this.queue.delete(key);
      this.missingNodes.gone(key);
      // Its resources, ports and anti-affinity no longer stand in anyone's way.
      if (this.cache.removePod(key)) this.clusterChanged('all');
      return;
    }
    if (nodeName) {
      this.queue.delete(key);
      if (pod.metadata.deletionTimestamp) this.missingNodes.gone(key);
      else this.missingNodes.bound(key, nodeName);
      const version = podVersion(pod);
      const counted = this.cache.pod(key);
      if (counted && counted.nodeName === nodeName && counted.req.uid === pod.metadata.uid && (counted.assumed || counted.version === version)) {
        // Our own binding coming back (what was assumed is what was bound), or a status update.
        counted.assumed = false;
        counted.version = version;
        return;
      }
      const { req, problem } = boundPodRequirements(pod);
      if (problem) this.log.warn({ pod: key, problem }, 'bound pod has a malformed spec; its own affinity terms are ignored');
      // News may satisfy pods that wait for pod affinity.
      if (this.cache.addPod(key, req, nodeName, false, version)) this.clusterChanged('pods');
      return;
    }
    if (this.cache.removePod(key)) this.clusterChanged('all');
    this.queue.offer(pod, key);
  }

  /** Coalesced: many changes in one turn of the event loop retry the waiting pods once. */
  private clusterChanged(what: 'pods' | 'all'): void {
    const before = this.pendingChange;
    if (before === 'all' || before === what) return;
    this.pendingChange = what;
    if (before !== 'none') return;
    setImmediate(() => {
      const change = this.pendingChange;
      this.pendingChange = 'none';
      if (this.stopped) return;
      this.queue.moveUnschedulable(change === 'pods' ? (p) => p.waitsForPods : undefined);
      if (this.isIdle()) this.releaseIdle();
    });
  }

  // ------------------------------------------------------------------------------------------
  // The scheduling loop: a batch of pods per turn, bound in one transaction.

  private kick(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    setImmediate(() => this.runBatch());
  }

  private runBatch(): void {
    if (this.stopped) return;
    const batch: QueuedPod[] = [];
    const deadline = performance.now() + BATCH_BUDGET_MS;
    try {
      this.store.transaction(() => {
        while (batch.length < this.batchSize && performance.now() < deadline) {
          const [entry] = this.queue.pop(1);
          if (!entry) break;
          batch.push(entry);
          this.attempt(entry);
        }
      });
    } catch (err) {
      // The transaction itself failed (the database, not a pod): nothing of it was written.
      this.log.error({ err, pods: batch.length }, 'scheduling batch failed; will retry');
      for (const entry of batch) {
        const assumed = this.cache.pod(entry.key);
        if (assumed?.assumed) this.cache.removePod(entry.key);
        this.queue.rolledBack(entry);
      }
    }
    if (this.queue.activeCount > 0 && !this.stopped) {
      setImmediate(() => this.runBatch());
      return;
    }
    this.running = false;
    if (this.isIdle()) this.releaseIdle();
  }

  private releaseIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private attempt(entry: QueuedPod): void {
    try {
      // Through the instance, so that a wrapper put on reconcile (the hub's timing) sees each attempt.
      this.reconcile(entry.key);
    } catch (err) {
      this.log.warn({ err, pod: entry.key }, 'scheduling attempt failed; will retry');
      const assumed = this.cache.pod(entry.key);
      if (assumed?.assumed) this.cache.removePod(entry.key);
      this.queue.retryLater(entry);
    }
  }

  /**
   * One scheduling attempt for the pod `key` (the batch's, or else read from the store): find a
   * node and bind, or record why none fits. Writes join the caller's transaction when there is one.
   */
  reconcile(key: string): void {
    const queued = this.queue.get(key);
    const entry = queued?.state === 'inFlight' ? queued : this.entryFromStore(key);
    if (!entry) return;
    let cycle: Cycle;
    try {
      entry.requirements ??= podRequirements(entry.pod);
      cycle = prepareCycle(this.cache, entry.requirements);
    } catch (err) {
      if (!(err instanceof PodSpecError)) throw err;
      // Only an edit of the pod can help: it is not tried again until then.
      markUnschedulable(this.store, this.events, entry.pod, `the pod cannot be scheduled: ${err.message}`, (m) => this.recordFailure(entry.pod, m));
      this.queue.unschedulable(entry, true);
      return;
    }
    entry.waitsForPods = cycle.affinity.length > 0;
    const node = this.findNode(cycle);
    if (typeof node === 'string') {
      markUnschedulable(this.store, this.events, entry.pod, node, (m) => this.recordFailure(entry.pod, m));
      this.queue.unschedulable(entry);
      return;
    }
    // Assumed: counted on the node now, so the next pod of the batch sees it there.
    const before = this.cache.pod(key);
    this.cache.addPod(key, cycle.req, node.name, true);
    if (!bindPod(this.store, this.events, entry.pod, node.name)) {
      // Gone, or bound by someone else: the watch tells the cache where it really is.
      this.cache.removePod(key);
      if (before) this.cache.addPod(key, before.req, before.nodeName, before.assumed);
    }
    this.queue.done(entry);
  }

  /** Whether this failure of the pod is worth an event: a new message, or the same one not told for a while. */
  private recordFailure(pod: StoredObject, message: string): boolean {
    const now = Date.now();
    const last = this.failureNoted.get(pod.metadata.uid);
    if (last && last.message === message && now - last.at < this.failedEventEveryMs) return false;
    this.failureNoted.set(pod.metadata.uid, { message, at: now });
    return true;
  }

  private entryFromStore(key: string): QueuedPod | undefined {
    const { namespace, name } = splitKey(key);
    const pod = this.store.get('Pod', namespace, name);
    if (!pod || (pod.spec as PodSpec).nodeName || isTerminal(pod)) return undefined;
    this.queue.offer(pod, key);
    const entry = this.queue.get(key)!;
    entry.state = 'inFlight';
    return entry;
  }

  /** A feasible node with the best score, or the FailedScheduling message when none is feasible. */
  private findNode(c: Cycle): NodeState | string {
    const all = this.cache.nodeList;
    const candidates = this.candidates(c);
    const want = feasibleNodesToFind(all.length, this.percentage);
    const n = candidates.length;
    // Look at the nodes from a rotating start, as Kubernetes does, so that a sample of the
    // fleet is not always the same nodes.
    const start = n > want ? this.nextStart % n : 0;
    const feasible: NodeState[] = [];
    // Without preferences the strategy alone ranks the nodes (unless a PreferNoSchedule taint is
    // in play): scored as they are found, the same choice as pickNode's without a second pass.
    const strategyOnly = c.req.preferredNodeTerms.length === 0 && c.preferred.length === 0;
    let best: NodeState | undefined;
    let bestScore = -Infinity;
    let softTaints = false;
    let i = start;
    let looked = 0;
    for (; looked < n && feasible.length < want; looked++) {
      const node = candidates[i]!;
      if (unfit(c, node) === undefined) {
        feasible.push(node);
        if (strategyOnly) {
          if (node.softTaints.length > 0) softTaints = true;
          const score = strategyScore(c.req, node, this.random);
          if (score > bestScore || (score === bestScore && node.name < best!.name)) {
            best = node;
            bestScore = score;
          }
        }
      }
      if (++i === n) i = 0;
    }
    if (n > want) this.nextStart = i;
    if (feasible.length === 0) return fitErrorMessage(all.length, countReasons(c, all));
    return strategyOnly && !softTaints ? best! : pickNode(c, feasible, this.random);
  }

  /** The nodes worth looking at: those with the rarest label of the nodeSelector, or all. */
  private candidates(c: Cycle): readonly NodeState[] {
    let best: readonly NodeState[] = this.cache.nodeList;
    for (const [key, value] of c.req.nodeSelector) {
      const nodes = this.cache.nodesWithLabel(key, value);
      if (nodes.length < best.length) best = nodes;
    }
    return best;
  }
}
