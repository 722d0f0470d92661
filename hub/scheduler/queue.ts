import type { StoredObject } from '../store/types.js';
import { podVersion, type PodRequirements } from './requirements.js';

/**
 * The pods waiting for a node, in the three queues of Kubernetes' scheduling queue: active (to
 * be tried now, oldest first), backoff (tried and failed recently: 1 s doubling to 10 s), and
 * unschedulable (nothing fits; tried again only when the cluster changes in a way that may make
 * room, or after a long while), so that a pod that fits nowhere costs nothing until then.
 */

export interface QueuedPod {
  readonly key: string;
  pod: StoredObject;
  /** Read from `pod` at the first attempt; cleared when the pod's spec or labels change. */
  requirements?: PodRequirements;
  state: 'active' | 'inFlight' | 'backoff' | 'unschedulable';
  attempts: number;
  /** When the last attempt failed (ms since the epoch). */
  failedAt: number;
  /** For state backoff: when the pod becomes active again. */
  backoffUntil: number;
  /** Only a change to the pod itself can help (its spec is malformed). */
  needsPodChange: boolean;
  /** Needs other pods to be placed first (required pod affinity). */
  waitsForPods: boolean;
}

export interface QueueTiming {
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** An unschedulable pod is tried again after this long even if nothing seemed to change. */
  unschedulableFlushMs: number;
}

export class SchedulingQueue {
  private readonly entries = new Map<string, QueuedPod>();
  private readonly versions = new Map<string, string>();
  private active: string[] = [];
  private head = 0;
  private backoffTimer: NodeJS.Timeout | undefined;
  private readonly flushTimer: NodeJS.Timeout;

  constructor(
    private readonly timing: QueueTiming,
    /** Called when pods become active, so that the scheduler runs. */
    private readonly onActive: () => void,
    private readonly now: () => number = Date.now,
  ) {
    this.flushTimer = setInterval(() => this.flushLongWaiting(), Math.min(30_000, timing.unschedulableFlushMs));
    this.flushTimer.unref();
  }

  get activeCount(): number {
    return this.active.length - this.head;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): QueuedPod | undefined {
    return this.entries.get(key);
  }

  /**
   * An unbound pod seen in the store. A new pod, or one whose spec or labels changed, is tried
   * now; anything else (such as the status the scheduler wrote itself) leaves it where it is.
   */
  offer(pod: StoredObject, key: string): void {
    const version = podVersion(pod);
    const entry = this.entries.get(key);
    if (entry && this.versions.get(key) === version) {
      entry.pod = pod;
      return;
    }
    this.versions.set(key, version);
    const sameUid = entry?.pod.metadata.uid === pod.metadata.uid;
    const next: QueuedPod = { key, pod, state: 'active', attempts: sameUid ? entry!.attempts : 0, failedAt: 0, backoffUntil: 0, needsPodChange: false, waitsForPods: false };
    this.entries.set(key, next);
    // An entry in flight is re-added by its attempt's outcome: the newer object replaces it then.
    if (entry?.state !== 'inFlight') this.activate(next);
  }

  delete(key: string): void {
    this.entries.delete(key);
    this.versions.delete(key);
  }

  /** Up to `n` active pods, oldest first, now in flight. */
  pop(n: number): QueuedPod[] {
    const out: QueuedPod[] = [];
    while (out.length < n && this.head < this.active.length) {
      const key = this.active[this.head++]!;
      const entry = this.entries.get(key);
      if (!entry || entry.state !== 'active') continue;
      entry.state = 'inFlight';
      out.push(entry);
    }
    if (this.head > 1024 && this.head * 2 > this.active.length) {
      this.active = this.active.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  /** The attempt placed the pod: it leaves the queue. */
  done(entry: QueuedPod): void {
    if (this.entries.get(entry.key) === entry) this.delete(entry.key);
    else this.reactivateNewer(entry.key);
  }

  /** Nothing fits: wait for a change of the cluster (or of the pod, when `needsPodChange`). */
  unschedulable(entry: QueuedPod, needsPodChange = false): void {
    entry.attempts++;
    entry.failedAt = this.now();
    entry.needsPodChange = needsPodChange;
    if (this.entries.get(entry.key) !== entry) return this.reactivateNewer(entry.key);
    entry.state = 'unschedulable';
  }

  /** The attempt failed for a passing reason (a write error): try again after the back-off. */
  retryLater(entry: QueuedPod): void {
    entry.attempts++;
    entry.failedAt = this.now();
    if (this.entries.get(entry.key) !== entry) return this.reactivateNewer(entry.key);
    this.toBackoff(entry);
  }

  /** The attempt's writes were rolled back with its transaction: the pod waits again, after the back-off. */
  rolledBack(entry: QueuedPod): void {
    const current = this.entries.get(entry.key);
    if (current && current !== entry) return this.reactivateNewer(entry.key);
    if (!current) {
      this.entries.set(entry.key, entry);
      this.versions.set(entry.key, podVersion(entry.pod));
    }
    this.retryLater(entry);
  }

  /**
   * The cluster changed in a way that may let waiting pods fit (Kubernetes'
   * MoveAllToActiveOrBackoffQueue): they are tried again, each after its back-off.
   */
  moveUnschedulable(only?: (entry: QueuedPod) => boolean): void {
    for (const entry of this.entries.values()) {
      if (entry.state !== 'unschedulable' || entry.needsPodChange || (only && !only(entry))) continue;
      this.toBackoff(entry);
    }
  }

  stop(): void {
    clearInterval(this.flushTimer);
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
  }

  private backoffMs(attempts: number): number {
    return Math.min(this.timing.initialBackoffMs * 2 ** Math.max(0, attempts - 1), this.timing.maxBackoffMs);
  }

  private toBackoff(entry: QueuedPod): void {
    const until = entry.failedAt + this.backoffMs(entry.attempts);
    if (until <= this.now()) return this.activate(entry);
    entry.state = 'backoff';
    entry.backoffUntil = until;
    this.armBackoff();
  }

  private armBackoff(): void {
    if (this.backoffTimer) return;
    let earliest = Infinity;
    for (const e of this.entries.values()) if (e.state === 'backoff' && e.backoffUntil < earliest) earliest = e.backoffUntil;
    if (earliest === Infinity) return;
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined;
      const now = this.now();
      for (const e of this.entries.values()) if (e.state === 'backoff' && e.backoffUntil <= now) this.activate(e);
      this.armBackoff();
    }, Math.max(0, earliest - this.now()));
    this.backoffTimer.unref();
  }

  private flushLongWaiting(): void {
    const cutoff = this.now() - this.timing.unschedulableFlushMs;
    for (const e of this.entries.values()) if (e.state === 'unschedulable' && !e.needsPodChange && e.failedAt <= cutoff) this.activate(e);
  }

  /** The pod changed while its attempt ran: the newer version is tried now. */
  private reactivateNewer(key: string): void {
    const newer = this.entries.get(key);
    if (newer && newer.state === 'active') this.activate(newer);
  }

  private activate(entry: QueuedPod): void {
    entry.state = 'active';
    this.active.push(entry.key);
    this.onActive();
  }
}
