import type { Logger } from 'pino';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import type { ControllerExpectations } from './expectations.js';
import { objectKey, WorkQueue, type ReconcileResult } from './queue.js';

/** What every controller is given: the store, an event recorder, a logger. */
export interface ControllerContext {
  store: ObjectStore;
  events: EventRecorder;
  log: Logger;
}

/**
 * The shape every hub controller shares (Kubernetes' controller pattern): watches only mark
 * keys dirty on a work queue; `reconcile` works one key from the store's current state, never
 * from the event that woke it. Subclasses name their watches in `triggers()` and do the work in
 * `reconcile()`.
 */
export abstract class Controller {
  readonly queue: WorkQueue;
  protected readonly store: ObjectStore;
  protected readonly events: EventRecorder;
  protected readonly log: Logger;
  private unwatch: (() => void)[] = [];
  private unobservePods: (() => void) | undefined;

  constructor(name: string, ctx: ControllerContext) {
    this.store = ctx.store;
    this.events = ctx.events;
    this.log = ctx.log;
    this.queue = new WorkQueue(name, (key) => this.reconcile(key), ctx.log);
  }

  /** The watches that make keys dirty: [what to watch, the keys an event touches]. */
  protected abstract triggers(): [WatchOptions, (e: WatchEvent) => Iterable<string> | string | undefined][];

  /** The keys to work once on start (every object of the controller's kind, as an informer's initial list). */
  protected abstract initialKeys(): Iterable<string>;

  abstract reconcile(key: string): ReconcileResult | void | Promise<ReconcileResult | void>;

  start(): void {
    for (const [opts, keysOf] of this.triggers()) {
      this.unwatch.push(
        this.store.watch(opts, (e) => {
          const keys = keysOf(e);
          if (keys === undefined) return;
          if (typeof keys === 'string') this.queue.add(keys);
          else for (const k of keys) this.queue.add(k);
        }),
      );
    }
    for (const key of this.initialKeys()) this.queue.add(key);
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
    this.unobservePods?.();
    this.unobservePods = undefined;
    this.queue.stop();
  }

  /**
   * Feeds `expectations` from the store's pod watch: each pod whose controller is an `ownerKind`
   * that is created or deleted is an observation for its owner's key; a rolled-back transaction
   * forgets them all. Call it at the top of reconcile: the watch starts with the first pass.
   */
  protected observePods(ownerKind: string, expectations: ControllerExpectations): void {
    if (this.unobservePods) return;
    const unwatch = this.store.watch({ kind: 'Pod' }, (e) => {
      const key = ownerKey(e.object, ownerKind);
      if (key === undefined) return;
      if (e.type === 'ADDED') expectations.creationObserved(key);
      else if (e.type === 'DELETED') expectations.deletionObserved(key);
    });
    // Writes rolled back are never seen: what was expected of them is forgotten.
    const unlisten = this.store.onRollback(() => expectations.forgetAll());
    this.unobservePods = () => {
      unwatch();
      unlisten();
    };
  }

  /** Keys of every object of a kind. */
  protected keysOfKind(kind: string): string[] {
    return this.store.list(kind).items.map((o) => objectKey(o.metadata.namespace, o.metadata.name));
  }
}

/** The key of the controlling owner of an object, when the owner is of `kind`. */
export function ownerKey(obj: StoredObject, kind: string): string | undefined {
  const owner = obj.metadata.ownerReferences?.find((o) => o.controller && o.kind === kind);
  return owner ? objectKey(obj.metadata.namespace, owner.name) : undefined;
}
