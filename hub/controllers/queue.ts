import type { Logger } from 'pino';

/** What a reconcile asks for next: nothing, or another look after a delay (controller-runtime's RequeueAfter). */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

export type Reconciler = (key: string) => ReconcileResult | void | Promise<ReconcileResult | void>;

const BASE_BACKOFF_MS = 5;
const MAX_BACKOFF_MS = 30_000;

/**
 * A work queue in the shape of client-go's: triggers only mark a key dirty; one worker
 * reconciles each key from current state. Duplicate adds merge, a key is never worked twice at
 * once (a key marked dirty while in flight is worked again afterwards), and a failing key is
 * retried with exponential back-off (5 ms doubling to 30 s, as ItemExponentialFailureRateLimiter).
 */
export class WorkQueue {
  private readonly dirty = new Set<string>();
  private readonly inFlight = new Set<string>();
  private readonly order: string[] = [];
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** When each timer of `timers` fires (epoch ms). */
  private readonly timerAt = new Map<string, number>();
  private scheduled = false;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    private readonly reconcile: Reconciler,
    private readonly log: Logger,
    /**
     * When given, each batch of keys is worked inside one call of `wrap`, and each key inside a
     * nested one: with a store transaction, a batch of small reconciles costs one commit, and a
     * failing key's writes are undone alone (a savepoint). Only the synchronous part of a
     * reconcile runs inside; a returned promise is awaited after the batch.
     */
    private readonly wrap?: (run: () => void) => void,
  ) {}

  add(key: string): void {
    if (this.stopped || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (!this.inFlight.has(key)) this.order.push(key);
    this.schedule();
  }

  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    const existing = this.timers.get(key);
    if (existing) clearTimeout(existing);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.timerAt.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, timer);
    this.timerAt.set(key, Date.now() + delayMs);
  }

  /**
   * Adds `key` within `delayMs`: unlike addAfter, a sooner timer (or the key already waiting)
   * stands, so a stream of such triggers makes one pass per `delayMs`, not none until it stops.
   */
  addWithin(key: string, delayMs: number): void {
    if (this.stopped || (this.dirty.has(key) && !this.inFlight.has(key))) return;
    const at = this.timerAt.get(key);
    if (at !== undefined && at <= Date.now() + delayMs) return;
    this.addAfter(key, delayMs);
  }

  get length(): number {
    return this.dirty.size;
  }

  /** Resolves when nothing is queued or in flight (for tests and orderly shutdown). */
  idle(): Promise<void> {
    if (this.dirty.size === 0 && this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.timerAt.clear();
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    // Work a batch, then yield to I/O so that MQTT and HTTP are served between batches.
    const batch = this.order.splice(0, 256);
    if (this.wrap) await this.drainWrapped(batch, this.wrap);
    else {
      for (const key of batch) {
        if (this.stopped) return;
        if (!this.take(key)) continue;
        try {
          this.succeeded(key, await this.reconcile(key));
        } catch (err) {
          this.failed(key, err);
        } finally {
          this.release(key);
        }
      }
    }
    if (this.order.length > 0) this.schedule();
    else if (this.dirty.size === 0 && this.inFlight.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Works `batch` synchronously inside one call of `wrap`, each key in a nested one; then awaits what reconciles left pending. */
  private async drainWrapped(batch: string[], wrap: (run: () => void) => void): Promise<void> {
    const taken: string[] = [];
    const pending: [string, Promise<ReconcileResult | void>][] = [];
    const outcomes = new Map<string, { result?: ReconcileResult | void; err?: unknown }>();
    try {
      wrap(() => {
        for (const key of batch) {
          if (this.stopped) return;
          if (!this.take(key)) continue;
          taken.push(key);
          try {
            const out: { result?: ReturnType<Reconciler> } = {};
            wrap(() => {
              out.result = this.reconcile(key);
            });
            if (out.result instanceof Promise) pending.push([key, out.result]);
            else outcomes.set(key, { result: out.result });
          } catch (err) {
            outcomes.set(key, { err });
          }
        }
      });
    } catch (err) {
      // The batch as a whole did not commit: every key of it is tried again.
      for (const key of taken) outcomes.set(key, { err });
    }
    for (const [key, promise] of pending) {
      if (outcomes.has(key)) continue;
      try {
        outcomes.set(key, { result: await promise });
      } catch (err) {
        outcomes.set(key, { err });
      }
    }
    for (const key of taken) {
      const outcome = outcomes.get(key)!;
      if ('err' in outcome) this.failed(key, outcome.err);
      else this.succeeded(key, outcome.result);
      this.release(key);
    }
  }

  /** Takes a dirty key that is not in flight for work; false when there is nothing to do for it. */
  private take(key: string): boolean {
    if (!this.dirty.has(key) || this.inFlight.has(key)) return false;
    this.dirty.delete(key);
    this.inFlight.add(key);
    return true;
  }

  private succeeded(key: string, result: ReconcileResult | void): void {
    this.failures.delete(key);
    if (result && result.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
  }

  private failed(key: string, err: unknown): void {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = Math.min(BASE_BACKOFF_MS * 2 ** (n - 1), MAX_BACKOFF_MS);
    this.log.warn({ err, key, queue: this.name, retryInMs: delay }, 'reconcile failed; will retry');
    this.addAfter(key, delay);
  }

  private release(key: string): void {
    this.inFlight.delete(key);
    if (this.dirty.has(key)) this.order.push(key);
  }
}

export function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}
