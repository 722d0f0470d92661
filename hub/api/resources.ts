import type { Logger } from 'pino';
import type { ManifestDocument } from '../../shared/resources/manifest.js';
import { allKinds, lookupKind, type KindInfo } from '../../shared/resources/kinds.js';
import { DEFAULT_NAMESPACE } from '../../shared/resources/namespace.js';
import { isPlainObject, type FieldError } from '../../shared/resources/fields.js';
import { validateManifest, type ValidObject } from '../../shared/resources/validate.js';
import type { Selector } from '../../shared/labels/selector.js';
import type { ObjectStore } from '../store/objects.js';
import { canonicalJson } from '../store/shape.js';
import type { StoredObject } from '../store/types.js';
import { asDryRunAnswer, writeOrDryRun } from './dry-run.js';
import { HubError } from './errors.js';
import { expandLists, withoutServerFields } from './server-fields.js';

export type ApplyAction = 'created' | 'configured' | 'unchanged';

/** Options of a single write: `dryRun` makes every check and answers what would be stored, writing nothing. */
export interface WriteOptions {
  dryRun?: boolean;
}

export interface ApplyOutcome {
  kind: string;
  name: string;
  namespace?: string;
  action: ApplyAction;
  warnings: string[];
  object?: StoredObject;
}

/**
 * A kind's admission on the write path, inside the write's transaction: the object as it is to
 * be stored (defaults and allocations filled), from the valid object and the stored one it
 * replaces. Throws a HubError to refuse the write.
 */
export type Admission = (next: StoredObject, existing: StoredObject | undefined) => StoredObject;

/**
 * The API's operations on objects, between the HTTP edge and the store: validation of every
 * document before anything is written, namespace checks, apply (create or update by name) in
 * one transaction so that a bad document in a batch leaves the store unchanged.
 */
export class ResourceService {
  constructor(
    private readonly store: ObjectStore,
    private readonly log: Logger,
    /** By kind: Service's allocates its virtual IP and NodePorts (hub/services/allocator.ts). */
    private readonly admission: Record<string, Admission> = {},
  ) {}

  private admit(next: StoredObject, existing: StoredObject | undefined): StoredObject {
    const admit = this.admission[next.kind];
    return admit ? admit(next, existing) : next;
  }

  kind(name: string): KindInfo {
    const kind = lookupKind(name);
    if (!kind) throw new HubError('HUB_ERR_NOT_FOUND', `the server doesn't have a resource type "${name}"`);
    return kind;
  }

  /** Validates every document; throws one HUB_ERR_INVALID naming every bad field of every document. */
  validateAll(docs: ManifestDocument[], defaultNamespace?: string): { object: ValidObject; kind: KindInfo; warnings: string[]; source: string }[] {
    if (docs.length === 0) throw new HubError('HUB_ERR_BAD_REQUEST', 'no objects in the request');
    const errors: FieldError[] = [];
    const valid: { object: ValidObject; kind: KindInfo; warnings: string[]; source: string }[] = [];
    for (const doc of docs) {
      const result = validateManifest(withoutServerFields(doc.value));
      const prefix = docs.length > 1 ? `${doc.source}: ` : '';
      if (!result.object || !result.kind) {
        errors.push(...result.errors.map((e) => ({ path: `${prefix}${e.path}`, message: e.message })));
        continue;
      }
      if (result.kind.namespaced && !result.object.metadata.namespace) result.object.metadata.namespace = defaultNamespace ?? DEFAULT_NAMESPACE;
      valid.push({ object: result.object, kind: result.kind, warnings: result.warnings, source: doc.source });
    }
    if (errors.length > 0) {
      const first = errors[0]!;
      const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
      throw new HubError('HUB_ERR_INVALID', `invalid manifest: ${first.path}: ${first.message}${more}`, errors);
    }
    return valid;
  }

  /**
   * kubectl apply: create each object, or update the one of the same kind, namespace and name.
   * A list (`kind: List`, or `PodList` and the like as `get -o yaml` prints them) is applied item
   * by item. A dry run makes every check of the real write, in a transaction it rolls back.
   */
  apply(docs: ManifestDocument[], opts: { dryRun?: boolean; namespace?: string } = {}): ApplyOutcome[] {
    const valid = this.validateAll(expandLists(docs), opts.namespace);
    // Namespaces first, so a file may create a namespace and fill it, as kubectl orders them.
    valid.sort((a, b) => Number(b.kind.kind === 'Namespace') - Number(a.kind.kind === 'Namespace'));
    return writeOrDryRun(this.store, opts.dryRun, () => {
      const outcomes: ApplyOutcome[] = [];
      for (const { object, kind, warnings } of valid) {
        const ns = kind.namespaced ? object.metadata.namespace! : '';
        if (kind.namespaced) this.requireNamespace(ns);
        const existing = this.store.get(kind.kind, ns, object.metadata.name);
        const base = { kind: kind.kind, name: object.metadata.name, ...(kind.namespaced ? { namespace: ns } : {}), warnings };
        if (!existing) {
          const stored = this.store.create(this.admit(toNewObject(object), undefined));
          outcomes.push({ ...base, action: 'created', object: opts.dryRun ? asDryRunAnswer(stored, undefined) : stored });
          continue;
        }
        const next = this.admit(mergeIntoExisting(existing, object), existing);
        if (sameUserFields(existing, next)) {
          outcomes.push({ ...base, action: 'unchanged', object: existing });
          continue;
        }
        const stored = this.store.update(next);
        outcomes.push({ ...base, action: 'configured', object: opts.dryRun ? asDryRunAnswer(stored, existing.metadata.resourceVersion) : stored });
      }
      return outcomes;
    });
  }

  create(kindName: string, namespace: string | undefined, doc: ManifestDocument, opts: WriteOptions = {}): { object: StoredObject; warnings: string[] } {
    const [v] = this.validateAll([doc], namespace);
    const { object, kind, warnings } = v!;
    this.checkPathNamespace(kind, namespace, object);
    if (kind.kind !== this.kind(kindName).kind) throw new HubError('HUB_ERR_BAD_REQUEST', `the body is a ${kind.kind}, the path is for ${this.kind(kindName).plural}`);
    return writeOrDryRun(this.store, opts.dryRun, () => {
      if (kind.namespaced) this.requireNamespace(object.metadata.namespace!);
      const stored = this.store.create(this.admit(toNewObject(object), undefined));
      return { object: opts.dryRun ? asDryRunAnswer(stored, undefined) : stored, warnings };
    });
  }

  replace(kindName: string, namespace: string | undefined, name: string, doc: ManifestDocument, opts: WriteOptions = {}): { object: StoredObject; warnings: string[] } {
    const [v] = this.validateAll([doc], namespace);
    const { object, kind, warnings } = v!;
    this.checkPathNamespace(kind, namespace, object);
    if (object.metadata.name !== name) throw new HubError('HUB_ERR_BAD_REQUEST', `metadata.name '${object.metadata.name}' does not match the name in the path '${name}'`);
    return writeOrDryRun(this.store, opts.dryRun, () => {
      const existing = this.get(kindName, namespace, name);
      const stored = this.store.update(this.admit(mergeIntoExisting(existing, object), existing));
      return { object: opts.dryRun ? asDryRunAnswer(stored, existing.metadata.resourceVersion) : stored, warnings };
    });
  }

  /** JSON merge patch (RFC 7386), the form `flotilla label` uses; the result is validated as a whole. */
  patch(kindName: string, namespace: string | undefined, name: string, patch: unknown, opts: WriteOptions = {}): { object: StoredObject; warnings: string[] } {
    if (!isPlainObject(patch)) throw new HubError('HUB_ERR_BAD_REQUEST', 'a merge patch must be a JSON object');
    return writeOrDryRun(this.store, opts.dryRun, () => {
      const existing = this.get(kindName, namespace, name);
      const patched = mergePatch(existing, patch) as StoredObject;
      const [v] = this.validateAll([{ source: 'patch', value: patched }], namespace);
      const expected = isPlainObject(patch.metadata) && typeof patch.metadata.resourceVersion === 'string' ? patch.metadata.resourceVersion : undefined;
      const next = this.admit(mergeIntoExisting(existing, v!.object), existing);
      if (expected) next.metadata.resourceVersion = expected;
      else next.metadata.resourceVersion = existing.metadata.resourceVersion;
      const stored = this.store.update(next);
      return { object: opts.dryRun ? asDryRunAnswer(stored, existing.metadata.resourceVersion) : stored, warnings: v!.warnings };
    });
  }

  get(kindName: string, namespace: string | undefined, name: string): StoredObject {
    const kind = this.kind(kindName);
    const ns = kind.namespaced ? (namespace ?? DEFAULT_NAMESPACE) : '';
    const obj = this.store.get(kind.kind, ns, name);
    if (!obj) throw new HubError('HUB_ERR_NOT_FOUND', `${kind.plural} "${name}" not found`);
    return obj;
  }

  list(kindName: string, namespace: string | undefined, selector?: Selector): { items: StoredObject[]; resourceVersion: string } {
    const kind = this.kind(kindName);
    return this.store.list(kind.kind, { ...(kind.namespaced && namespace ? { namespace } : {}), ...(selector ? { selector } : {}) });
  }

  /** Deletes an object (a namespace with everything in it); a dry run answers the object as it is and deletes nothing. */
  delete(kindName: string, namespace: string | undefined, name: string, opts: WriteOptions = {}): StoredObject {
    const kind = this.kind(kindName);
    const ns = kind.namespaced ? (namespace ?? DEFAULT_NAMESPACE) : '';
    return writeOrDryRun(this.store, opts.dryRun, () => {
      const obj = this.get(kindName, namespace, name);
      if (kind.kind === 'Namespace') {
        if (name === DEFAULT_NAMESPACE) throw new HubError('HUB_ERR_FORBIDDEN', 'the default namespace cannot be deleted');
        // Deleting a namespace deletes what is in it, as Kubernetes' namespace controller does.
        // Every namespaced kind, in one transaction: controllers wake to find owners and pods gone together.
        for (const other of allKinds().filter((k) => k.namespaced).map((k) => k.kind)) {
          for (const item of this.store.list(other, { namespace: name }).items) this.store.delete(other, name, item.metadata.name);
        }
      }
      this.store.delete(kind.kind, ns, name);
      return obj;
    });
  }

  private requireNamespace(ns: string): void {
    if (!this.store.get('Namespace', '', ns)) throw new HubError('HUB_ERR_NOT_FOUND', `namespaces "${ns}" not found`);
  }

  private checkPathNamespace(kind: KindInfo, namespace: string | undefined, object: ValidObject): void {
    if (kind.namespaced && namespace && object.metadata.namespace && object.metadata.namespace !== namespace) {
      throw new HubError('HUB_ERR_BAD_REQUEST', `the namespace of the object (${object.metadata.namespace}) does not match the namespace of the request (${namespace})`);
    }
    if (kind.namespaced && namespace) object.metadata.namespace = namespace;
  }
}

function toNewObject(object: ValidObject): StoredObject {
  const { resourceVersion: _rv, ...metadata } = object.metadata;
  return { ...object, metadata } as unknown as StoredObject;
}

/** The user's fields of `incoming` over the stored object: status and identity are kept. */
function mergeIntoExisting(existing: StoredObject, incoming: ValidObject): StoredObject {
  const { status: _status, ...rest } = incoming as ValidObject & { status?: unknown };
  const metadata = { ...existing.metadata, labels: incoming.metadata.labels, annotations: incoming.metadata.annotations };
  if (!incoming.metadata.labels) delete metadata.labels;
  if (!incoming.metadata.annotations) delete metadata.annotations;
  if (incoming.metadata.resourceVersion) metadata.resourceVersion = incoming.metadata.resourceVersion;
  else delete (metadata as Partial<typeof metadata>).resourceVersion;
  const next: StoredObject = { ...rest, metadata, ...(existing.status !== undefined ? { status: existing.status } : {}) } as StoredObject;
  // Controller-owned metadata survives a user's apply.
  if (existing.metadata.ownerReferences) next.metadata.ownerReferences = existing.metadata.ownerReferences;
  return next;
}

function sameUserFields(a: StoredObject, b: StoredObject): boolean {
  const pick = (o: StoredObject) => {
    const { metadata, status: _s, ...rest } = o;
    // Key order is not a change (the store compares the same way and would write nothing).
    return canonicalJson({ labels: metadata.labels ?? {}, annotations: metadata.annotations ?? {}, ...rest });
  };
  return pick(a) === pick(b);
}

/** RFC 7386: null deletes a key, objects merge recursively, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}
