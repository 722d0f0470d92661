import type { Logger } from 'pino';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { splitKey } from '../controllers/queue.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import { withScheduled } from './binding.js';
import { isTerminal } from './requirements.js';

/** The PodScheduled reason of a pod bound by spec.nodeName to a node that does not exist. */
export const NODE_NOT_FOUND = 'NodeNotFound';

const RETRY_MS = 1_000;
/** Pods marked or cleared per store transaction. */
const BATCH = 256;

/** Takes up to `n` entries out of `set`, oldest first. */
function take(set: Set<string>, n: number): string[] {
  const out: string[] = [];
  for (const key of set) {
    if (out.length >= n) break;
    out.push(key);
  }
  for (const key of out) set.delete(key);
  return out;
}

export function nodeNotFoundMessage(node: string): string {
  return `node "${node}" not found: the pod is bound to it by spec.nodeName and stays Pending until a node of that name joins`;
}

/**
 * Pods bound by spec.nodeName to a node that does not exist. Kubernetes accepts such a pod and
 * leaves it Pending until a kubelet of that name registers; here it also says so, once per pod:
 * PodScheduled=False with reason NodeNotFound, and a Warning Event of the same reason. When a
 * node of that name joins, PodScheduled turns True and its device gets the pod. Nothing is
 * deleted or made again: the pod waits, and costs no writes while it does.
 *
 * The watch handlers only note which pods to look at; the writes are made after the events of
 * the turn, up to 256 pods per store transaction and turn of the event loop.
 */
export class MissingNodePods {
  /** Pod keys waiting for each missing node. */
  private readonly waiting = new Map<string, Set<string>>();
  private readonly nodeOf = new Map<string, string>();
  private readonly toMark = new Set<string>();
  private readonly toClear = new Set<string>();
  /** Cancels the flush that is scheduled, if one is. */
  private flushing: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly events: EventRecorder,
    private readonly log: Logger,
    private readonly nodeExists: (name: string) => boolean,
  ) {}

  /** A pod seen bound to `nodeName`. */
  bound(key: string, nodeName: string): void {
    if (this.nodeExists(nodeName)) {
      this.gone(key);
      return;
    }
    if (this.nodeOf.get(key) === nodeName) return;
    this.gone(key);
    let keys = this.waiting.get(nodeName);
    if (!keys) this.waiting.set(nodeName, (keys = new Set()));
    keys.add(key);
    this.nodeOf.set(key, nodeName);
    this.toMark.add(key);
    this.schedule();
  }

  /** A pod deleted, finished, or no longer bound. */
  gone(key: string): void {
    const node = this.nodeOf.get(key);
    if (node === undefined) return;
    this.nodeOf.delete(key);
    this.toMark.delete(key);
    const keys = this.waiting.get(node);
    keys?.delete(key);
    if (keys?.size === 0) this.waiting.delete(node);
  }

  /** A node joined: the pods that waited for it are bound to something real now. */
  nodeAdded(name: string): void {
    const keys = this.waiting.get(name);
    if (!keys) return;
    this.waiting.delete(name);
    for (const key of keys) {
      this.nodeOf.delete(key);
      this.toMark.delete(key);
      this.toClear.add(key);
    }
    this.schedule();
  }

  /** How many pods wait for a node that does not exist (for tests and logs). */
  get size(): number {
    return this.nodeOf.size;
  }

  stop(): void {
    this.stopped = true;
    this.flushing?.();
    this.flushing = undefined;
  }

  private schedule(delayMs = 0): void {
    if (this.flushing || this.stopped) return;
    const run = () => {
      this.flushing = undefined;
      this.flush();
    };
    if (delayMs > 0) {
      const timer = setTimeout(run, delayMs).unref();
      this.flushing = () => clearTimeout(timer);
    } else {
      const immediate = setImmediate(run);
      this.flushing = () => clearImmediate(immediate);
    }
  }

  private flush(): void {
    if (this.stopped) return;
    // A batch per turn of the event loop: thousands of pods pinned at once must not hold it.
    const mark = take(this.toMark, BATCH);
    const clear = take(this.toClear, BATCH - mark.length);
    try {
      this.store.transaction(() => {
        for (const key of mark) this.mark(key);
        for (const key of clear) this.clear(key);
      });
    } catch (err) {
      this.log.warn({ err, pods: mark.length + clear.length }, 'could not record pods bound to missing nodes; will retry');
      for (const key of mark) if (this.nodeOf.has(key)) this.toMark.add(key);
      for (const key of clear) this.toClear.add(key);
      this.schedule(RETRY_MS);
      return;
    }
    if (this.toMark.size > 0 || this.toClear.size > 0) this.schedule();
  }

  private mark(key: string): void {
    const { namespace, name } = splitKey(key);
    let message: string | undefined;
    const pod = this.store.mutate('Pod', namespace, name, (cur) => {
      const node = (cur.spec as PodSpec | undefined)?.nodeName;
      if (!node || this.nodeExists(node) || cur.metadata.deletionTimestamp || isTerminal(cur)) return undefined;
      const status = cur.status as PodStatus | undefined;
      const text = nodeNotFoundMessage(node);
      const scheduled = status?.conditions?.find((c) => c.type === 'PodScheduled');
      if (scheduled?.status === 'False' && scheduled.reason === NODE_NOT_FOUND && scheduled.message === text) return undefined;
      message = text;
      return { ...cur, status: withScheduled(status, { type: 'PodScheduled', status: 'False', reason: NODE_NOT_FOUND, message: text }) };
    });
    if (pod && message) this.events.warning(pod, NODE_NOT_FOUND, message);
  }

  private clear(key: string): void {
    const { namespace, name } = splitKey(key);
    this.store.mutate('Pod', namespace, name, (cur) => {
      const status = cur.status as PodStatus | undefined;
      const scheduled = status?.conditions?.find((c) => c.type === 'PodScheduled');
      if (scheduled?.reason !== NODE_NOT_FOUND) return undefined;
      return { ...cur, status: withScheduled(status, { type: 'PodScheduled', status: 'True' }) };
    });
  }
}
