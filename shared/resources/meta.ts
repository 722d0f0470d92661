import * as z from 'zod';
import { SelectorError, selectorFromLabelSelector } from '../labels/selector.js';
import { validateAnnotations, validateDns1123Label, validateDns1123Subdomain } from '../labels/validation.js';
import { labelMap } from './labelmap.js';

/** Annotations: keys are qualified names, and keys and values 256 KiB in all (Kubernetes' ValidateAnnotations). */
const annotationMap = z.record(z.string(), z.string()).superRefine((annotations, ctx) => {
  for (const problem of validateAnnotations(annotations)) ctx.addIssue({ code: 'custom', path: problem.key === '' ? [] : [problem.key], message: problem.message });
});

function nameRule(kindRule: 'subdomain' | 'label') {
  return z.string({ error: 'is required' }).superRefine((name, ctx) => {
    const problems = kindRule === 'label' ? validateDns1123Label(name) : validateDns1123Subdomain(name);
    for (const message of problems) ctx.addIssue({ code: 'custom', message: `invalid name '${name}': ${message}` });
  });
}

/** What a manifest may say in `metadata`; the store owns uid, resourceVersion, generation and timestamps. */
export function metadataSchema(opts: { nameRule: 'subdomain' | 'label' }) {
  return z.object({
    name: nameRule(opts.nameRule),
    namespace: z
      .string()
      .superRefine((ns, ctx) => {
        for (const message of validateDns1123Label(ns)) ctx.addIssue({ code: 'custom', message: `invalid namespace '${ns}': ${message}` });
      })
      .optional(),
    labels: labelMap.optional(),
    annotations: annotationMap.optional(),
    // Accepted so that a `get -o yaml` can be applied back; the store checks or ignores them.
    resourceVersion: z.string().optional(),
    uid: z.string().optional(),
    generation: z.number().optional(),
    creationTimestamp: z.string().optional(),
    ownerReferences: z.array(z.unknown()).optional(),
    deletionTimestamp: z.string().optional(),
  });
}

export const templateMetadataSchema = z.object({
  labels: labelMap.optional(),
  annotations: annotationMap.optional(),
});

/**
 * metav1.LabelSelector. Its expressions are checked as Kubernetes' ValidateLabelSelector checks
 * them: keys are label keys, values label values, In and NotIn need values, Exists and
 * DoesNotExist take none.
 */
export const labelSelectorSchema = z
  .object({
    matchLabels: labelMap.optional(),
    matchExpressions: z
      .array(
        z.object({
          key: z.string(),
          operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
          values: z.array(z.string()).optional(),
        }),
      )
      .optional(),
  })
  .superRefine((selector, ctx) => {
    try {
      selectorFromLabelSelector({ ...(selector.matchExpressions ? { matchExpressions: selector.matchExpressions } : {}) });
    } catch (err) {
      if (!(err instanceof SelectorError)) throw err;
      ctx.addIssue({ code: 'custom', path: selectorPath(err.field), message: err.message });
    }
  });

/** `matchExpressions[1].values` as a path of parts. */
function selectorPath(field: string | undefined): (string | number)[] {
  if (!field) return [];
  return field.split(/[.[\]]/).filter(Boolean).map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}

export type LabelSelectorSpec = z.infer<typeof labelSelectorSchema>;
