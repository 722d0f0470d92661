/**
 * The hub's object store: Kubernetes-style objects in SQLite, with the semantics of the Kubernetes
 * API server's storage layer — one global resourceVersion, optimistic concurrency, generation,
 * the spec/status split, label-selected lists, and watches that resume from a resourceVersion.
 *
 * One ObjectStore per database: watch events come from this instance's own writes, and the
 * committed resourceVersion is tracked in memory. Everything is synchronous (better-sqlite3), so
 * no other store call can interleave with a running one.
 */

import { randomUUID } from 'node:crypto';
import { equalityRequirements, matches, type Selector } from '../../shared/labels/selector.js';
import type { Database } from './db.js';
import { alreadyExists, invalid, notFound, tooOldResourceVersion, StoreError } from './errors.js';
import {
  checkObject,
  checkPreconditions,
  composeMeta,
  composeObject,
  parseResourceVersion,
  sameJson,
  sameLabels,
  serialize,
  type Labels,
} from './shape.js';
import { nodeNameOf, PodNodeIndex } from './node-index.js';
import { Statements } from './statements.js';
import type { AtRestCodec, NewObject, StoredObject, WatchEvent } from './types.js';
import { changeFromRow, WatchHub, type Change, type WatchOptions } from './watch.js';

export type { WatchOptions } from './watch.js';

export interface ObjectStoreOptions {
  /**
   * How many recent changes to keep for watches resuming from a resourceVersion (default 10,000),
   * like the capacity of Kubernetes' watch cache. A watch from an older version fails with Gone.
   */
  changeRetention?: number;
  /**
   * Receives exceptions thrown by watch handlers. Default: rethrow on the next tick, which
   * crashes the process as an unhandled error does, the way Kubernetes' HandleCrash re-panics:
   * a broken handler should not go unnoticed.
   */
  onWatchError?: (err: unknown) => void;
  /**
   * How the objects of a kind are kept on disk, when not as plain JSON: Secrets are sealed this
   * way (Kubernetes' EncryptionConfiguration). Applied to the stored object and to its change
   * history alike; everything in memory, watch events included, is the plain object.
   */
  atRest?: (kind: string) => AtRestCodec | undefined;
}


export interface ListOptions {
  /** Only this namespace ('' for cluster-scoped kinds); all namespaces when absent. */
  namespace?: string;
  /**
   * Only pods bound to this node (Kubernetes' field selector spec.nodeName), answered from an
   * index: the cost is that of the node's pods, not of every pod. Pods only.
   */
  nodeName?: string;
  selector?: Selector;
  /** Applied after the selector, for conditions labels cannot express (field selectors). */
  filter?: (o: StoredObject) => boolean;
}

export interface ListResult {
  /** Sorted by namespace, then name. */
  items: StoredObject[];
  /** The store's version when the list was read: pass it to watch() to continue from there. */
  resourceVersion: string;
}

interface Loaded {
  id: number;
  json: string;
  obj: StoredObject;
}

export class ObjectStore {
  private readonly sql: Statements;
  private readonly hub: WatchHub;
  private readonly retention: number;
  private readonly pruneEvery: number;
  private writesSincePrune = 0;
  private readonly runInTransaction: (fn: () => unknown) => unknown;
  /** store.transaction nesting depth; events are released when it returns to 0. */
  private depth = 0;
  /** Changes written by the open transaction, delivered once it commits. */
  private pending: Change[] = [];
  /**
   * A write inside a transaction that failed after its first statement (see write()), at the
   * transaction depth it ran at: until a rollback undoes it, the outermost transaction must not commit.
   */
  private torn: { err: unknown; depth: number } | undefined;
  /** The newest resourceVersion known to be committed: the upper bound of what a watch may replay. */
  private committedRv: number;
  /** The newest resourceVersion taken, committed or not: the counter row, without reading it back. */
  private latestRv: number;
  private readonly atRest: (kind: string) => AtRestCodec | undefined;
  private readonly podNodes: PodNodeIndex;
  private readonly rollbackListeners = new Set<() => void>();

  constructor(db: Database, options: ObjectStoreOptions = {}) {
    const retention = options.changeRetention ?? 10_000;
    if (!Number.isInteger(retention) || retention < 1) throw new RangeError(`changeRetention must be a positive integer, got ${retention}`);
    this.retention = retention;
    // Prune a tenth of the retention at a time (at most 1,000 rows) rather than one row per
    // write: the status path writes constantly, and one larger DELETE costs less than many.
    this.pruneEvery = Math.max(1, Math.min(1_000, Math.floor(retention / 10)));
    this.sql = new Statements(db);
    this.hub = new WatchHub(options.onWatchError ?? ((err) => process.nextTick(() => { throw err; })));
    this.runInTransaction = db.transaction((fn: () => unknown) => fn());
    this.committedRv = this.counter('resourceVersion');
    this.latestRv = this.committedRv;
    this.atRest = options.atRest ?? (() => undefined);
    this.podNodes = new PodNodeIndex(() => this.loadPodNodes());
  }

  // ------------------------------------------------------------------------------------------
  // Reads

  get(kind: string, namespace: string | undefined, name: string): StoredObject | undefined {
    return this.load(kind, namespace ?? '', name)?.obj;
  }

  /**
   * A pod's uid and the node it is bound to (spec.nodeName), from the table's uid column and the
   * node index, without reading the pod: what is needed to check that a device speaks of its own.
   */
  podBinding(namespace: string | undefined, name: string): { uid: string; nodeName: string | undefined } | undefined {
    const row = this.sql.objectIdentity.get('Pod', namespace ?? '', name);
    return row ? { uid: row.uid, nodeName: this.podNodes.nodeOfPod(row.id) } : undefined;
  }

  /** Whether such an object exists, without reading it. */
  has(kind: string, namespace: string | undefined, name: string): boolean {
    return this.sql.hasObject.get(kind, namespace ?? '', name) !== undefined;
  }

  /**
   * Objects of a kind. Requirements of the selector that pin a label to one value are answered
   * from the label index in SQL; the rest of the selector, then `filter`, run on the candidates.
   */
  list(kind: string, opts: ListOptions = {}): ListResult {
    const resourceVersion = this.currentResourceVersion();
    const { selector, filter } = opts;
    if (selector?.matchesNothing) return { items: [], resourceVersion };
    if (opts.nodeName !== undefined) return { items: this.listOnNode(kind, opts.nodeName, opts), resourceVersion };
    const equalities = selector ? equalityRequirements(selector) : [];
    const params: string[] = [kind];
    if (opts.namespace !== undefined) params.push(opts.namespace);
    for (const [key, value] of equalities) params.push(kind, key, value);
    const rows = this.sql.list(opts.namespace !== undefined, equalities.length).all(...params);
    const items: StoredObject[] = [];
    for (const text of rows) {
      const obj = JSON.parse(this.fromDisk(kind, text)) as StoredObject;
      if (selector && !matches(selector, obj.metadata.labels)) continue;
      if (filter && !filter(obj)) continue;
      items.push(obj);
    }
    return { items, resourceVersion };
  }

  /** The version of the newest write, as a decimal string ("0" for an empty store). */
  currentResourceVersion(): string {
    return String(this.latestRv);
  }

  // ------------------------------------------------------------------------------------------
  // Writes. Each takes the next resourceVersion and records a change, except writes that would
  // change nothing: like Kubernetes' storage layer (GuaranteedUpdate skips writing identical
  // bytes), those return the stored object untouched, so a device repeating the same status
  // causes no resourceVersion churn and no watch events.

  /**
   * Stores a new object. The store assigns uid, resourceVersion, generation 1 and
   * creationTimestamp; those fields, and deletionTimestamp, are ignored in the input.
   * `status` is stored as given (clearing it on user creates is the API layer's job).
   * @throws StoreError AlreadyExists, Invalid
   */
  create(input: NewObject): StoredObject {
    checkObject(input);
    const { kind } = input;
    const { name } = input.metadata;
    const namespace = input.metadata.namespace ?? '';
    return this.write(() => {
      if (this.sql.getObject.get(kind, namespace, name)) throw alreadyExists(kind, name);
      const rv = this.nextResourceVersion();
      const meta = composeMeta({
        name,
        namespace,
        uid: randomUUID(),
        resourceVersion: String(rv),
        generation: 1,
        creationTimestamp: new Date().toISOString(),
        labels: input.metadata.labels,
        annotations: input.metadata.annotations,
        ownerReferences: input.metadata.ownerReferences,
      });
      const json = serialize(composeObject(input, kind, meta, input.status));
      const id = Number(this.sql.insertObject.run(kind, namespace, name, meta.uid, this.toDisk(kind, json)).lastInsertRowid);
      this.writeLabels(id, kind, meta.labels);
      if (kind === 'Pod') this.podNodes.set(id, nodeNameOf(input));
      this.record({ rv, type: 'ADDED', kind, namespace, json, labels: meta.labels, prevLabels: null }, name);
      return JSON.parse(json) as StoredObject;
    });
  }

  /**
   * Replaces an object's spec, labels, annotations, ownerReferences and other top-level fields,
   * keeping uid, creationTimestamp and status: as in Kubernetes, an update never changes status
   * and updateStatus never changes anything else. generation increases when spec changes.
   * deletionTimestamp may be set but, once set, not cleared (Kubernetes ignores attempts to).
   * @throws StoreError NotFound; Conflict if metadata.resourceVersion (or uid) is given and is
   *   not the stored one (optimistic concurrency); Invalid
   */
  update(input: StoredObject | NewObject): StoredObject {
    checkObject(input);
    const { kind } = input;
    const { name } = input.metadata;
    const namespace = input.metadata.namespace ?? '';
    return this.write(() => {
      const cur = this.mustLoad(kind, namespace, name);
      checkPreconditions(cur.obj, input.metadata.resourceVersion, input.metadata.uid);
      return this.replace(cur, composeObject(input, kind, this.nextMeta(cur.obj, input), cur.obj.status));
    });
  }

  /**
   * Replaces an object's status (undefined removes it), leaving everything else alone.
   * @throws StoreError NotFound; Conflict if expectedResourceVersion is given and stale
   */
  updateStatus(kind: string, namespace: string | undefined, name: string, status: unknown, expectedResourceVersion?: string): StoredObject {
    return this.write(() => {
      const cur = this.mustLoad(kind, namespace ?? '', name);
      checkPreconditions(cur.obj, expectedResourceVersion, undefined);
      const next = JSON.parse(cur.json) as StoredObject;
      delete next.status;
      if (status !== undefined) next.status = status;
      return this.replace(cur, next);
    });
  }

  /**
   * Read-modify-write in one transaction, for controllers: `fn` receives a copy of the current
   * object (it may modify and return that copy) and returns the new object, or undefined for no
   * change. Anything may change — spec, status, labels — except kind, namespace, name, uid and
   * creationTimestamp; generation and resourceVersion are computed as for update().
   * Returns the object as stored afterwards (unchanged when fn returned undefined or an identical
   * object: nothing is written then), or undefined when no such object exists (fn is not called).
   * `fn` must be synchronous; an exception from it rolls the transaction back and propagates.
   * @throws StoreError Invalid if fn changed the object's identity
   */
  mutate(
    kind: string,
    namespace: string | undefined,
    name: string,
    fn: (current: StoredObject) => StoredObject | undefined,
  ): StoredObject | undefined {
    const ns = namespace ?? '';
    return this.write(() => {
      const cur = this.load(kind, ns, name);
      if (!cur) return undefined;
      const result = fn(JSON.parse(cur.json) as StoredObject);
      if (result === undefined) return cur.obj;
      checkObject(result);
      if (result.kind !== kind || result.metadata.name !== name || (result.metadata.namespace ?? '') !== ns) {
        throw invalid(`${kind} "${name}": mutate cannot change an object's kind, namespace or name`);
      }
      return this.replace(cur, composeObject(result, kind, this.nextMeta(cur.obj, result), result.status));
    });
  }

  /**
   * Removes an object. Returns its last state, carrying the deletion's resourceVersion (as the
   * DELETED watch event does in Kubernetes).
   * @throws StoreError NotFound; Conflict if expectedResourceVersion is given and stale
   */
  delete(kind: string, namespace: string | undefined, name: string, expectedResourceVersion?: string): StoredObject {
    const ns = namespace ?? '';
    return this.write(() => {
      const cur = this.mustLoad(kind, ns, name);
      checkPreconditions(cur.obj, expectedResourceVersion, undefined);
      const rv = this.nextResourceVersion();
      const obj = cur.obj;
      obj.metadata.resourceVersion = String(rv);
      const json = serialize(obj);
      this.sql.deleteObject.run(cur.id); // labels go with it (ON DELETE CASCADE)
      if (kind === 'Pod') this.podNodes.set(cur.id, undefined);
      const labels = obj.metadata.labels;
      this.record({ rv, type: 'DELETED', kind, namespace: ns, json, labels, prevLabels: labels ?? {} }, name);
      return JSON.parse(json) as StoredObject;
    });
  }

  /**
   * Runs `fn` in one SQLite transaction: all of its writes commit together or not at all. Nested
   * calls join the outer transaction (as savepoints: an inner failure that the outer fn catches
   * undoes only the inner writes). Watch events are delivered after the outermost commit, in
   * resourceVersion order, and never for rolled-back writes. `fn` must be synchronous. Other hub
   * tables may be written inside it too; use this rather than db.transaction around store writes,
   * or events would be released before the real commit.
   */
  transaction<T>(fn: () => T): T {
    const mark = this.pending.length;
    const indexMark = this.podNodes.mark();
    const outermost = this.depth === 0;
    this.depth++;
    let result: T;
    try {
      result = this.runInTransaction(
        outermost
          ? () => {
              const out = fn();
              if (this.torn) throw new Error('a store write failed halfway inside this transaction; nothing of it was committed', { cause: this.torn.err });
              return out;
            }
          : fn,
      ) as T;
    } catch (err) {
      // The rollback (of the transaction, or of this savepoint) undid any half write made inside it.
      if (this.torn && this.torn.depth >= this.depth) this.torn = undefined;
      this.pending.length = mark;
      this.podNodes.rollback(indexMark);
      // The rolled-back writes gave their versions back to the counter.
      this.latestRv = this.counter('resourceVersion');
      for (const listener of this.rollbackListeners) listener();
      throw err;
    } finally {
      this.depth--;
    }
    if (this.depth === 0) {
      this.podNodes.commit();
      this.release();
    }
    return result;
  }

  /**
   * One write call (create, update, ...). Alone, it is its own transaction. Inside one, it runs
   * without a savepoint of its own: a SAVEPOINT and RELEASE per write cost about 8 % of a
   * DaemonSet pass. Its failures before its first statement (NotFound, Conflict, AlreadyExists,
   * Invalid: the checks come first) leave nothing to undo, so a caller may catch them and go on.
   * A failure after it (SQLite itself failing) would leave half a write: the outermost
   * transaction then rolls back as a whole, unless an enclosing store.transaction() rolls back first.
   */
  private write<T>(fn: () => T): T {
    if (this.depth === 0) return this.transaction(fn);
    const rvBefore = this.latestRv;
    try {
      return fn();
    } catch (err) {
      // Every write's first statement takes a resourceVersion.
      if (this.latestRv !== rvBefore && !this.torn) this.torn = { err, depth: this.depth };
      throw err;
    }
  }

  /**
   * Calls `fn` whenever a transaction (or a nested one's savepoint) rolls back: what a caller
   * remembered of writes made inside it may not hold. Returns the function that stops it.
   */
  onRollback(fn: () => void): () => void {
    this.rollbackListeners.add(fn);
    return () => this.rollbackListeners.delete(fn);
  }

  // ------------------------------------------------------------------------------------------
  // Watch

  /**
   * Calls onEvent for every change to matching objects, until the returned function is called.
   *
   * Without fromResourceVersion, only changes committed after this call are delivered (there
   * are no synthetic ADDED events for existing objects: list() first, then watch from the
   * list's resourceVersion). With it, the retained changes after that version are replayed
   * synchronously, before watch() returns, then live events follow with no gap and no
   * duplicates. Live events are delivered synchronously right after the writing transaction
   * commits, before the write call returns. "0" is not special: it asks for every change.
   * The event's object is shared by every watcher of the change and frozen: copy it to change it.
   *
   * @throws StoreError Gone if changes after fromResourceVersion have already been pruned (as
   *   Kubernetes' 410 "too old resource version"), or if it is newer than the store's version
   *   (the store was replaced): either way the caller must list again. Invalid if it is not a
   *   decimal integer.
   */
  watch(opts: WatchOptions, onEvent: (e: WatchEvent) => void): () => void {
    let start = this.committedRv;
    let backlog: Change[] = [];
    if (opts.fromResourceVersion !== undefined) {
      const from = parseResourceVersion(opts.fromResourceVersion);
      const current = this.latestRv;
      if (from > current) {
        throw new StoreError('Gone', `Too large resource version: ${from}, current: ${current}`);
      }
      const prunedThrough = this.counter('prunedThrough');
      if (from < prunedThrough) throw tooOldResourceVersion(from, prunedThrough);
      backlog = this.sql.replayChanges
        .all({ from, to: this.committedRv, kind: opts.kind ?? null, namespace: opts.namespace ?? null })
        .map((row) => changeFromRow({ ...row, object: this.fromDisk(row.kind, row.object) }));
      // The backlog covers everything committed; inside an uncommitted transaction `from` may
      // already be ahead of that.
      start = Math.max(from, this.committedRv);
    }
    return this.hub.add({ ...opts }, start, backlog, onEvent);
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  /** Pods bound to `node`, from the index, in namespace and name order. */
  private listOnNode(kind: string, node: string, opts: ListOptions): StoredObject[] {
    if (kind !== 'Pod') throw invalid(`nodeName: only pods are listed by node, not ${kind}`);
    const items: StoredObject[] = [];
    for (const id of this.podNodes.ids(node)) {
      const text = this.sql.objectById.get(id);
      if (text === undefined) continue;
      const obj = JSON.parse(this.fromDisk(kind, text)) as StoredObject;
      if (opts.namespace !== undefined && (obj.metadata.namespace ?? '') !== opts.namespace) continue;
      if (opts.selector && !matches(opts.selector, obj.metadata.labels)) continue;
      if (opts.filter && !opts.filter(obj)) continue;
      items.push(obj);
    }
    const order = (o: StoredObject) => `${o.metadata.namespace ?? ''}\u0000${o.metadata.name}`;
    return items.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
  }

  private *loadPodNodes(): Iterable<{ id: number; nodeName: string | null }> {
    if (!this.atRest('Pod')) {
      yield* this.sql.podNodes.iterate();
      return;
    }
    for (const row of this.sql.podRows.iterate()) yield { id: row.id, nodeName: nodeNameOf(JSON.parse(this.fromDisk('Pod', row.object)) as StoredObject) ?? null };
  }

  private load(kind: string, namespace: string, name: string): Loaded | undefined {
    const row = this.sql.getObject.get(kind, namespace, name);
    if (!row) return undefined;
    const json = this.fromDisk(kind, row.object);
    return { id: row.id, json, obj: JSON.parse(json) as StoredObject };
  }

  private toDisk(kind: string, json: string): string {
    return this.atRest(kind)?.seal(json) ?? json;
  }

  private fromDisk(kind: string, stored: string): string {
    return this.atRest(kind)?.open(stored) ?? stored;
  }

  private mustLoad(kind: string, namespace: string, name: string): Loaded {
    const cur = this.load(kind, namespace, name);
    if (!cur) throw notFound(kind, name);
    return cur;
  }

  private counter(name: 'resourceVersion' | 'prunedThrough'): number {
    return this.sql.readCounter.get(name) ?? 0;
  }

  private nextResourceVersion(): number {
    const rv = this.sql.nextResourceVersion.get();
    if (rv === undefined) throw new Error('the counters table has no resourceVersion row');
    this.latestRv = rv;
    return rv;
  }

  /** Metadata for a replacement of `cur` by `input`: identity kept, user fields from input; version fields are set by replace(). */
  private nextMeta(cur: StoredObject, input: NewObject | StoredObject) {
    const m = cur.metadata;
    return composeMeta({
      name: m.name,
      namespace: m.namespace ?? '',
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      generation: m.generation,
      creationTimestamp: m.creationTimestamp,
      deletionTimestamp: m.deletionTimestamp ?? input.metadata.deletionTimestamp,
      labels: input.metadata.labels,
      annotations: input.metadata.annotations,
      ownerReferences: input.metadata.ownerReferences,
    });
  }

  /** Writes `next` over `cur` unless nothing but version fields would change. */
  private replace(cur: Loaded, next: StoredObject): StoredObject {
    const prev = cur.obj;
    const specChanged = !sameJson(prev.spec, next.spec);
    next.metadata.generation = prev.metadata.generation + (specChanged ? 1 : 0);
    next.metadata.resourceVersion = prev.metadata.resourceVersion;
    if (!specChanged && sameJson(next, prev)) return prev;

    const rv = this.nextResourceVersion();
    next.metadata.resourceVersion = String(rv);
    const json = serialize(next);
    const { kind } = prev;
    const namespace = prev.metadata.namespace ?? '';
    this.sql.updateObject.run(this.toDisk(kind, json), cur.id);
    if (kind === 'Pod') this.podNodes.set(cur.id, nodeNameOf(next));
    const labels = next.metadata.labels;
    if (!sameLabels(prev.metadata.labels, labels)) {
      this.sql.deleteLabels.run(cur.id);
      this.writeLabels(cur.id, kind, labels);
    }
    this.record({ rv, type: 'MODIFIED', kind, namespace, json, labels, prevLabels: prev.metadata.labels ?? {} }, prev.metadata.name);
    return JSON.parse(json) as StoredObject;
  }

  private writeLabels(id: number, kind: string, labels: Labels | undefined): void {
    if (!labels) return;
    for (const [key, value] of Object.entries(labels)) this.sql.insertLabel.run(id, kind, key, value);
  }

  /** Appends to the change history (pruning it now and then) and queues the watch event. */
  private record(change: Change, name: string): void {
    const prev = change.prevLabels === null ? null : JSON.stringify(change.prevLabels);
    this.sql.insertChange.run(change.rv, change.type, change.kind, change.namespace, name, this.toDisk(change.kind, change.json), prev);
    this.pending.push(change);
    if (++this.writesSincePrune >= this.pruneEvery) {
      this.writesSincePrune = 0;
      const cutoff = change.rv - this.retention;
      if (cutoff > 0 && this.sql.pruneChanges.run(cutoff).changes > 0) this.sql.raisePrunedThrough.run(cutoff, cutoff);
    }
  }

  /** After the outermost commit: the pending changes are durable, hand them to watchers. */
  private release(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.committedRv = batch[batch.length - 1]!.rv;
    this.hub.publish(batch);
  }
}
