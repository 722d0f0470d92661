/**
 * The shapes the hub's object store keeps: Kubernetes-style objects with ObjectMeta.
 * Cluster-scoped kinds (Node, Namespace) are stored with namespace '' and returned without a
 * `namespace` field, as the Kubernetes API returns them.
 */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  /** The global write counter at this object's last write, as a decimal string. Opaque to clients, as in Kubernetes. */
  resourceVersion: string;
  /** Starts at 1 and increases each time `spec` changes, so controllers can report `observedGeneration`. */
  generation: number;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  deletionTimestamp?: string;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
}

export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  /** Kinds such as Event keep their fields at the top level. */
  [extra: string]: unknown;
}

/**
 * An object as given to create() or update(): the store fills in uid, resourceVersion, generation
 * and creationTimestamp. Spelled out rather than derived with Omit<StoredObject, 'metadata'>,
 * because Omit over a type with an index signature also drops apiVersion and kind.
 */
export interface NewObject {
  apiVersion: string;
  kind: string;
  metadata: Partial<ObjectMeta> & { name: string };
  spec?: unknown;
  status?: unknown;
  [extra: string]: unknown;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: WatchEventType;
  /** Frozen, and shared with the change's other watchers: read it, copy it to change it. */
  object: StoredObject;
}

/** Turns an object's JSON text into what is written to SQLite, and back (see ObjectStoreOptions.atRest). */
export interface AtRestCodec {
  seal(json: string): string;
  open(stored: string): string;
}
