import * as z from 'zod';
import { validateQualifiedName } from '../labels/validation.js';
import { parseQuantity, type Quantity } from '../quantities/quantity.js';

// Kubernetes' downward API (core/v1 ObjectFieldSelector and ResourceFieldSelector): what a
// container may learn of its own pod, in its env and in downwardAPI volume files. The sets of
// field paths and divisors are Kubernetes' own (pkg/apis/core/validation).

/** The field paths an env var may name, besides metadata.labels['KEY'] and metadata.annotations['KEY']. */
export const ENV_FIELD_PATHS = [
  'metadata.name',
  'metadata.namespace',
  'metadata.uid',
  'spec.nodeName',
  'spec.serviceAccountName',
  'status.hostIP',
  'status.hostIPs',
  'status.podIP',
  'status.podIPs',
] as const;

/** The field paths a downwardAPI volume file may hold, besides one label or annotation by key. */
export const VOLUME_FIELD_PATHS = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'metadata.labels', 'metadata.annotations'] as const;

export const RESOURCE_FIELDS = ['limits.cpu', 'limits.memory', 'limits.ephemeral-storage', 'requests.cpu', 'requests.memory', 'requests.ephemeral-storage'] as const;
export type ResourceField = (typeof RESOURCE_FIELDS)[number];

const CPU_DIVISORS = ['1m', '1'];
const BYTE_DIVISORS = ['1', '1k', '1M', '1G', '1T', '1P', '1E', '1Ki', '1Mi', '1Gi', '1Ti', '1Pi', '1Ei'];

/** A subscripted path, `metadata.labels['KEY']` or `metadata.annotations['KEY']`: the map and the key. */
export function subscriptedField(path: string): { map: 'labels' | 'annotations'; key: string } | undefined {
  const m = /^metadata\.(labels|annotations)\['(.*)'\]$/s.exec(path);
  return m ? { map: m[1] as 'labels' | 'annotations', key: m[2]! } : undefined;
}

function quoted(values: readonly string[]): string {
  return values.map((v) => `"${v}"`).join(', ');
}

/** Kubernetes' validateObjectFieldSelector for env (`volume` false) or a downwardAPI volume item. */
export function fieldPathProblems(path: string, volume: boolean): string[] {
  const sub = subscriptedField(path);
  if (sub) return validateQualifiedName(sub.key).map((m) => `invalid key '${sub.key}' in "${path}": ${m}`);
  const supported: readonly string[] = volume ? VOLUME_FIELD_PATHS : ENV_FIELD_PATHS;
  if (supported.includes(path)) return [];
  return [`Unsupported value: "${path}": supported values: ${quoted([...supported, "metadata.labels['KEY']", "metadata.annotations['KEY']"])}`];
}

function divisorProblem(resource: string, divisor: string | number): string | undefined {
  let q: Quantity;
  try {
    q = parseQuantity(divisor);
  } catch (err) {
    return (err as Error).message;
  }
  const cpu = resource.endsWith('.cpu');
  const allowed = cpu ? CPU_DIVISORS : BYTE_DIVISORS;
  if (allowed.some((d) => parseQuantity(d).compare(q) === 0)) return undefined;
  const what = cpu ? 'the cpu resource' : resource.endsWith('.memory') ? 'the memory resource' : 'the local ephemeral storage resource';
  return `Invalid value: "${String(divisor)}": only divisor's values ${allowed.join(', ')} are supported with ${what}`;
}

export const fieldSelectorSchema = (volume: boolean) =>
  z.object({
    apiVersion: z.literal('v1', { error: 'must be "v1"' }).optional(),
    fieldPath: z.string({ error: 'is required' }).superRefine((p, ctx) => {
      for (const message of fieldPathProblems(p, volume)) ctx.addIssue({ code: 'custom', message });
    }),
  });

export const resourceFieldSelectorSchema = (volume: boolean) =>
  z
    .object({
      // Required in a volume (whose files belong to no one container); in env, the container itself.
      containerName: volume ? z.string({ error: 'Required value' }).min(1, 'Required value') : z.string().optional(),
      resource: z.string({ error: 'is required' }),
      divisor: z.union([z.string(), z.number()]).optional(),
    })
    .superRefine((r, ctx) => {
      if (!(RESOURCE_FIELDS as readonly string[]).includes(r.resource)) {
        ctx.addIssue({ code: 'custom', path: ['resource'], message: `Unsupported value: "${r.resource}": supported values: ${quoted(RESOURCE_FIELDS)}` });
        return;
      }
      if (r.divisor === undefined) return;
      const problem = divisorProblem(r.resource, r.divisor);
      if (problem) ctx.addIssue({ code: 'custom', path: ['divisor'], message: problem });
    });

export interface ObjectFieldSelector {
  apiVersion?: 'v1' | undefined;
  fieldPath: string;
}

export interface ResourceFieldSelector {
  containerName?: string | undefined;
  resource: string;
  divisor?: string | number | undefined;
}
