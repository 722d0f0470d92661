/**
 * How the store turns what callers hand it into the objects it keeps: input checks, the layout of
 * metadata, and the JSON forms used for storage and for change detection.
 */

import { conflict, invalid } from './errors.js';
import type { NewObject, ObjectMeta, OwnerReference, StoredObject } from './types.js';

export type Labels = Record<string, string>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkStringMap(v: unknown, field: string): void {
  if (v === undefined) return;
  if (!isRecord(v) || Object.values(v).some((x) => typeof x !== 'string')) throw invalid(`${field}: must be a map of strings`);
}

/**
 * The structural checks the store needs to index and address an object. Field-level validation
 * (name syntax, spec schemas) belongs to the API layer, as it does to Kubernetes' REST strategies.
 */
export function checkObject(obj: unknown): asserts obj is NewObject {
  if (!isRecord(obj)) throw invalid('object: must be a JSON object');
  if (typeof obj.apiVersion !== 'string' || obj.apiVersion === '') throw invalid('apiVersion: Required value');
  if (typeof obj.kind !== 'string' || obj.kind === '') throw invalid('kind: Required value');
  const meta = obj.metadata;
  if (!isRecord(meta)) throw invalid(`${obj.kind}: metadata: Required value`);
  if (typeof meta.name !== 'string' || meta.name === '') throw invalid(`${obj.kind}: metadata.name: Required value`);
  if (meta.namespace !== undefined && typeof meta.namespace !== 'string') throw invalid(`${obj.kind} "${meta.name}": metadata.namespace: must be a string`);
  checkStringMap(meta.labels, `${obj.kind} "${meta.name}": metadata.labels`);
  checkStringMap(meta.annotations, `${obj.kind} "${meta.name}": metadata.annotations`);
  if (meta.ownerReferences !== undefined && !Array.isArray(meta.ownerReferences)) {
    throw invalid(`${obj.kind} "${meta.name}": metadata.ownerReferences: must be a list`);
  }
  if (meta.deletionTimestamp !== undefined && typeof meta.deletionTimestamp !== 'string') {
    throw invalid(`${obj.kind} "${meta.name}": metadata.deletionTimestamp: must be a string`);
  }
  if (meta.resourceVersion !== undefined && typeof meta.resourceVersion !== 'string') {
    throw invalid(`${obj.kind} "${meta.name}": metadata.resourceVersion: must be a string`);
  }
}

export interface MetaFields {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  generation: number;
  creationTimestamp: string;
  deletionTimestamp?: string | undefined;
  labels?: Labels | undefined;
  annotations?: Record<string, string> | undefined;
  ownerReferences?: OwnerReference[] | undefined;
}

/**
 * Metadata in a fixed field order. Empty maps and lists are left out, as Kubernetes' `omitempty`
 * does, so that `labels: {}` and no labels are the same object and do not count as a change.
 * Unknown metadata fields are dropped, as the API server prunes fields it does not know.
 */
export function composeMeta(f: MetaFields): ObjectMeta {
  return {
    name: f.name,
    ...(f.namespace !== '' ? { namespace: f.namespace } : {}),
    uid: f.uid,
    resourceVersion: f.resourceVersion,
    generation: f.generation,
    creationTimestamp: f.creationTimestamp,
    ...(f.deletionTimestamp ? { deletionTimestamp: f.deletionTimestamp } : {}),
    ...(f.labels && Object.keys(f.labels).length > 0 ? { labels: f.labels } : {}),
    ...(f.annotations && Object.keys(f.annotations).length > 0 ? { annotations: f.annotations } : {}),
    ...(f.ownerReferences && f.ownerReferences.length > 0 ? { ownerReferences: f.ownerReferences } : {}),
  };
}

/**
 * An object from `source`'s apiVersion, kind, spec and other top-level fields, with the given
 * metadata and status: apiVersion, kind, metadata, other fields, spec, status.
 */
export function composeObject(source: NewObject | StoredObject, kind: string, meta: ObjectMeta, status: unknown): StoredObject {
  const { apiVersion, kind: _kind, metadata: _metadata, spec, status: _status, ...extra } = source;
  const out: StoredObject = { apiVersion, kind, metadata: meta, ...extra };
  if (spec !== undefined) out.spec = spec;
  if (status !== undefined) out.status = status;
  return out;
}

/** The stored JSON text of an object. */
export function serialize(obj: StoredObject): string {
  try {
    return JSON.stringify(obj);
  } catch (err) {
    throw invalid(`${obj.kind} "${obj.metadata.name}": cannot be stored as JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function sortKeys(_key: string, value: unknown): unknown {
  if (!isRecord(value)) return value;
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) sorted[k] = value[k];
  return sorted;
}

/**
 * JSON with object keys sorted, for deep-equality checks that must not depend on key order:
 * `{a,b}` and `{b,a}` are the same spec. undefined (no value) gives undefined.
 */
export function canonicalJson(value: unknown): string | undefined {
  try {
    return JSON.stringify(value, sortKeys) as string | undefined;
  } catch (err) {
    throw invalid(`cannot be stored as JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Deep equality of JSON values, whatever the order of object keys: what canonicalJson(a) ===
 * canonicalJson(b) says, without building either string. It stops at the first difference, so
 * telling a changed object from its old self costs little; undefined-valued keys count as absent,
 * as they do in JSON.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let count = 0;
  for (const key in x) {
    if (x[key] === undefined) continue;
    count++;
    if (!sameJson(x[key], y[key])) return false;
  }
  for (const key in y) if (y[key] !== undefined) count--;
  return count === 0;
}

export function sameLabels(a: Labels | undefined, b: Labels | undefined): boolean {
  return sameJson(a ?? {}, b ?? {});
}

/** A resourceVersion given by a client: a decimal integer (Kubernetes treats them as opaque; this store's are counters). */
export function parseResourceVersion(rv: string): number {
  if (!/^\d{1,15}$/.test(rv)) throw invalid(`invalid resource version: ${JSON.stringify(rv)}`);
  return Number(rv);
}

/** Kubernetes' update and delete preconditions: a given uid or resourceVersion must be the stored one. */
export function checkPreconditions(stored: StoredObject, resourceVersion: string | undefined, uid: string | undefined): void {
  const { kind } = stored;
  const { name } = stored.metadata;
  if (uid !== undefined && uid !== '' && uid !== stored.metadata.uid) {
    throw conflict(kind, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${stored.metadata.uid}`);
  }
  if (resourceVersion !== undefined && resourceVersion !== '' && resourceVersion !== stored.metadata.resourceVersion) {
    throw conflict(kind, name);
  }
}
