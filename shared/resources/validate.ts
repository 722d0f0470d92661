
import { droppedFields, fieldErrorsFromZod, formatPath, isPlainObject, type FieldError } from './fields.js';
import { API_VERSION, allKinds, lookupKind, type KindInfo } from './kinds.js';
import { metadataSchema } from './meta.js';
import { NAMESPACE_NAME_LABEL } from './namespace.js';

/** A manifest that passed validation, in the shape the store takes. */
export interface ValidObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; resourceVersion?: string };
  spec?: unknown;
  [field: string]: unknown;
}

export interface ValidationResult {
  object?: ValidObject;
  kind?: KindInfo;
  warnings: string[];
  errors: FieldError[];
}

// Fields a manifest may carry that are not the user's to set; accepted silently so that the
// output of `get -o yaml` can be applied back, as kubectl allows.
const IGNORED_TOP = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);

/**
 * Validates one manifest document at the boundary: the kind is known, apiVersion accepted,
 * metadata valid, and the kind's body valid. Returns every error with its field path, and a
 * warning for every field that Flotilla does not support (never dropped silently).
 */
export function validateManifest(doc: unknown, opts: { allowSystemKinds?: boolean } = {}): ValidationResult {
  const warnings: string[] = [];
  if (!isPlainObject(doc)) return { warnings, errors: [{ path: '(root)', message: 'a manifest must be an object with apiVersion, kind and metadata' }] };
  const errors: FieldError[] = [];
  const kindName = doc.kind;
  if (typeof kindName !== 'string' || kindName === '') {
    return { warnings, errors: [{ path: 'kind', message: 'is required' }] };
  }
  const kind = lookupKind(kindName);
  if (!kind || kind.kind !== kindName) {
    const known = allKinds().map((k) => k.kind).join(', ');
    return { warnings, errors: [{ path: 'kind', message: `unknown kind '${kindName}' (known kinds: ${known})` }] };
  }
  if (kind.systemOnly && !opts.allowSystemKinds) return { warnings, errors: [{ path: 'kind', message: `${kind.kind} objects are written by the hub only` }] };
  const protoKeys = protoKeyPaths(doc);
  if (protoKeys.length > 0) return { warnings, errors: protoKeys.map((path) => ({ path, message: "the key '__proto__' is not accepted" })) };
  if (typeof doc.apiVersion !== 'string') errors.push({ path: 'apiVersion', message: 'is required' });
  else if (!kind.apiVersions.includes(doc.apiVersion)) {
    errors.push({ path: 'apiVersion', message: `'${doc.apiVersion}' is not accepted for ${kind.kind} (use ${kind.apiVersions.join(' or ')})` });
  }

  const metaResult = metadataSchema({ nameRule: kind.nameRule }).safeParse(doc.metadata ?? undefined);
  let metadata: ValidObject['metadata'] | undefined;
  if (doc.metadata === undefined) errors.push({ path: 'metadata.name', message: 'is required' });
  else if (!metaResult.success) errors.push(...fieldErrorsFromZod(metaResult.error, 'metadata'));
  else {
    warnings.push(...droppedFields(doc.metadata, metaResult.data, ['metadata']).map(unsupported));
    const { name, namespace, labels, annotations, resourceVersion } = metaResult.data;
    metadata = { name };
    if (kind.maxNameLength !== undefined && name.length > kind.maxNameLength) errors.push({ path: 'metadata.name', message: `must be no more than ${kind.maxNameLength} characters for a ${kind.kind}` });
    if (namespace !== undefined) {
      if (kind.namespaced) metadata.namespace = namespace;
      else warnings.push(`metadata.namespace: ignored, ${kind.kind} is not namespaced`);
    }
    if (labels) metadata.labels = labels;
    // Kubernetes labels every namespace with its own name, so that a namespaceSelector can pick one by name.
    if (kind.kind === 'Namespace') metadata.labels = { ...labels, [NAMESPACE_NAME_LABEL]: name };
    if (annotations) metadata.annotations = annotations;
    if (resourceVersion) metadata.resourceVersion = resourceVersion;
  }

  const object: ValidObject = { apiVersion: API_VERSION, kind: kind.kind, metadata: metadata ?? { name: '' } };
  if (kind.body.field === 'spec') {
    const schema = kind.body.schema;
    if (doc.spec === undefined && kind.body.required) errors.push({ path: 'spec', message: 'is required' });
    else {
      const parsed = schema.safeParse(doc.spec ?? {});
      if (!parsed.success) errors.push(...fieldErrorsFromZod(parsed.error, 'spec'));
      else {
        warnings.push(...droppedFields(doc.spec ?? {}, parsed.data, ['spec']).map(unsupported));
        object.spec = kind.normalize ? kind.normalize(parsed.data as Record<string, unknown>) : parsed.data;
        if (kind.check) errors.push(...kind.check(parsed.data as Record<string, unknown>));
      }
    }
    for (const key of Object.keys(doc)) if (!IGNORED_TOP.has(key)) warnings.push(unsupported(key));
  } else {
    const top: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(doc)) if (!IGNORED_TOP.has(key)) top[key] = value;
    const parsed = kind.body.schema.safeParse(top);
    if (!parsed.success) errors.push(...fieldErrorsFromZod(parsed.error));
    else {
      warnings.push(...droppedFields(top, parsed.data).map(unsupported));
      Object.assign(object, kind.normalize ? kind.normalize(parsed.data as Record<string, unknown>) : parsed.data);
    }
  }
  if (errors.length > 0) return { kind, warnings, errors };
  return { object, kind, warnings, errors };
}

/**
 * Where a document has a `__proto__` key of its own (JSON.parse and YAML make one). Assigned to
 * a map it would set the map's prototype instead of adding an entry, so it would vanish without
 * a word; no Kubernetes field or key can be named so.
 */
function protoKeyPaths(doc: unknown): string[] {
  const found: string[] = [];
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value: doc, path: [] }];
  while (stack.length > 0 && found.length < 10) {
    const { value, path } = stack.pop()!;
    if (Array.isArray(value)) value.forEach((item, i) => stack.push({ value: item, path: [...path, i] }));
    else if (isPlainObject(value)) {
      if (Object.prototype.hasOwnProperty.call(value, '__proto__')) found.push(formatPath([...path, '__proto__']));
      for (const [key, item] of Object.entries(value)) stack.push({ value: item, path: [...path, key] });
    }
  }
  return found;
}

function unsupported(path: string): string {
  return `${path}: unsupported field, ignored`;
}

// Kept in fields.ts, which the agent can import without every kind's schema.
export { formatFieldErrors } from './fields.js';

export type { FieldError };
