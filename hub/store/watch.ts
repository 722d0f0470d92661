/**
 * Delivery of committed changes to watchers, in the manner of the Kubernetes API server's watch
 * cache (k8s.io/apiserver/pkg/storage/cacher): each watcher sees every change after the version it
 * started from, in resourceVersion order, filtered by kind, namespace and label selector.
 */

import { matches, type Selector } from '../../shared/labels/selector.js';
import type { Labels } from './shape.js';
import type { ChangeRow } from './statements.js';
import type { StoredObject, WatchEvent, WatchEventType } from './types.js';

/** One committed write, as recorded in the changes table. */
export interface Change {
  rv: number;
  type: WatchEventType;
  kind: string;
  namespace: string;
  /** The object after the change; for DELETED its last state, carrying the deletion's resourceVersion. */
  json: string;
  /** The object's labels after the change (for DELETED: when it was deleted). */
  labels: Labels | undefined;
  /** The object's labels before the change; null for ADDED, when there was no object before. */
  prevLabels: Labels | null;
  /** The object parsed once, frozen, and shared by every watcher it is delivered to. */
  object?: StoredObject;
}

/** A change read back from the changes table, for replay. */
export function changeFromRow(row: ChangeRow): Change {
  const labels = (JSON.parse(row.object) as StoredObject).metadata.labels;
  const prevLabels = row.prev_labels === null ? null : (JSON.parse(row.prev_labels) as Labels);
  return { rv: row.rv, type: row.type, kind: row.kind, namespace: row.namespace, json: row.object, labels, prevLabels };
}

export interface WatchOptions {
  /** Only this kind; all kinds when absent. */
  kind?: string;
  /** Only this namespace ('' for cluster-scoped objects); all namespaces when absent. */
  namespace?: string;
  selector?: Selector;
  /** Replay the retained changes after this version before live events; see ObjectStore.watch. */
  fromResourceVersion?: string;
}

interface Watcher {
  readonly opts: WatchOptions;
  readonly onEvent: (e: WatchEvent) => void;
  /** Changes accepted for this watcher but not yet handed to onEvent. */
  readonly inbox: Change[];
  /** Index of the next inbox entry to deliver (a cursor rather than shift(), which is linear per call). */
  head: number;
  /** The newest version placed in the inbox: older or equal changes are not offered again. */
  lastRv: number;
  /** Inside onEvent (or draining): a re-entrant write must queue behind the event being handled. */
  busy: boolean;
  stopped: boolean;
}

/**
 * The event a watcher receives for a change, if any. With a selector, an object that stops
 * matching is reported as DELETED and one that starts matching as ADDED, as the watch cache's
 * cacheWatcher.convertToWatchEvent does; a watcher thus sees exactly the set of matching objects
 * come and go. (That function sends the previous object content with a DELETED; here the object
 * as it now is, which also shows why it left the set.)
 */
function eventType(w: Watcher, c: Change): WatchEventType | undefined {
  if (w.opts.kind !== undefined && w.opts.kind !== c.kind) return undefined;
  if (w.opts.namespace !== undefined && w.opts.namespace !== c.namespace) return undefined;
  const sel = w.opts.selector;
  if (!sel) return c.type;
  const nowPasses = c.type !== 'DELETED' && matches(sel, c.labels);
  const beforePasses = c.prevLabels !== null && matches(sel, c.prevLabels);
  if (nowPasses && beforePasses) return 'MODIFIED';
  if (nowPasses) return 'ADDED';
  if (beforePasses) return 'DELETED';
  return undefined;
}

export class WatchHub {
  private readonly watchers = new Set<Watcher>();

  constructor(private readonly onError: (err: unknown) => void) {}

  get size(): number {
    return this.watchers.size;
  }

  /**
   * Registers a watcher: hands it `backlog` (replayed changes, in order) synchronously, then every
   * change published later whose version is above `liveAfterRv`. Returns the function that stops it.
   */
  add(opts: WatchOptions, liveAfterRv: number, backlog: Change[], onEvent: (e: WatchEvent) => void): () => void {
    const w: Watcher = { opts, onEvent, inbox: [...backlog], head: 0, lastRv: liveAfterRv, busy: false, stopped: false };
    this.watchers.add(w);
    this.drain(w);
    return () => {
      w.stopped = true;
      w.inbox.length = 0;
      w.head = 0;
      this.watchers.delete(w);
    };
  }

  /** Delivers committed changes, given in resourceVersion order, to every watcher. */
  publish(changes: Change[]): void {
    if (this.watchers.size === 0) return;
    // Queue for everyone first, then deliver: if a handler writes, that later change must reach
    // the other watchers after this one, never before.
    const targets = [...this.watchers];
    for (const w of targets) this.offer(w, changes);
    for (const w of targets) this.drain(w);
  }

  private offer(w: Watcher, changes: Change[]): void {
    for (const c of changes) {
      if (c.rv <= w.lastRv) continue;
      w.lastRv = c.rv;
      w.inbox.push(c);
    }
  }

  private drain(w: Watcher): void {
    if (w.busy) return;
    w.busy = true;
    try {
      while (!w.stopped && w.head < w.inbox.length) {
        const c = w.inbox[w.head++]!;
        const type = eventType(w, c);
        if (type === undefined) continue;
        // Parsed once for every watcher (a pod's change reaches a dozen), and frozen, so that no
        // handler can change what another sees: as client-go's informer caches, read-only.
        const object = (c.object ??= deepFreeze(JSON.parse(c.json) as StoredObject));
        try {
          w.onEvent({ type, object });
        } catch (err) {
          this.onError(err);
        }
      }
    } finally {
      if (w.head >= w.inbox.length) {
        w.inbox.length = 0;
        w.head = 0;
      }
      w.busy = false;
    }
  }
}

/** Freezes a parsed JSON value and everything in it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
