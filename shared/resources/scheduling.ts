import * as z from 'zod';
import { validateDns1123Label, validateLabelValue, validateQualifiedName } from '../labels/validation.js';
import { labelSelectorSchema } from './meta.js';

/**
 * The scheduling fields of a pod spec, in the Kubernetes shape: tolerations, node affinity and
 * pod (anti-)affinity. `schedulingStrategy` is Flotilla's own: the Docker Swarm placement
 * strategy chosen per workload.
 */

const qualifiedName = z.string({ error: 'is required' }).superRefine((v, ctx) => {
  for (const message of validateQualifiedName(v)) ctx.addIssue({ code: 'custom', message: `invalid key '${v}': ${message}` });
});

/**
 * Kubernetes' ValidateNodeSelectorRequirement: In and NotIn need values, Exists and
 * DoesNotExist take none, Gt and Lt take one integer.
 */
const requirementFields = z.object({
  key: z.string().min(1, 'is required'),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt']),
  values: z.array(z.string()).optional(),
});

function checkRequirement(r: z.infer<typeof requirementFields>, ctx: z.RefinementCtx): void {
  if (r.key) for (const message of validateQualifiedName(r.key)) ctx.addIssue({ code: 'custom', path: ['key'], message: `invalid key '${r.key}': ${message}` });
  const values = r.values ?? [];
  if ((r.operator === 'In' || r.operator === 'NotIn') && values.length === 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `must be specified when operator is ${r.operator}` });
  if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && values.length > 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `may not be specified when operator is ${r.operator}` });
  if ((r.operator === 'Gt' || r.operator === 'Lt') && (values.length !== 1 || !/^-?\d+$/.test(values[0] ?? ''))) ctx.addIssue({ code: 'custom', path: ['values'], message: `must be a single integer when operator is ${r.operator}` });
}

const nodeSelectorRequirement = requirementFields.superRefine(checkRequirement);

export const nodeSelectorTermSchema = z.object({
  matchExpressions: z.array(nodeSelectorRequirement).optional(),
  /** Only `metadata.name` is a field a node can be selected by, as in Kubernetes. */
  matchFields: z.array(requirementFields.extend({ key: z.literal('metadata.name', { error: "only 'metadata.name' is supported" }) }).superRefine(checkRequirement)).optional(),
});

const weight = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 100').max(100, 'must be between 1 and 100');

export const podAffinityTermSchema = z.object({
  labelSelector: labelSelectorSchema.optional(),
  /** Namespaces the selector looks in; the pod's own namespace when absent. */
  namespaces: z
    .array(
      z.string().superRefine((ns, ctx) => {
        for (const message of validateDns1123Label(ns)) ctx.addIssue({ code: 'custom', message: `invalid namespace '${ns}': ${message}` });
      }),
    )
    .optional(),
  /** The node label whose value makes a topology domain: `kubernetes.io/hostname` (a device) or e.g. `site`. */
  topologyKey: z.string({ error: 'is required' }).min(1, 'is required').pipe(qualifiedName),
});

const podAffinitySchema = z.object({
  requiredDuringSchedulingIgnoredDuringExecution: z.array(podAffinityTermSchema).optional(),
  preferredDuringSchedulingIgnoredDuringExecution: z.array(z.object({ weight, podAffinityTerm: podAffinityTermSchema })).optional(),
});

export const affinitySchema = z.object({
  nodeAffinity: z
    .object({
      requiredDuringSchedulingIgnoredDuringExecution: z.object({ nodeSelectorTerms: z.array(nodeSelectorTermSchema).min(1, 'must have at least one term') }).optional(),
      preferredDuringSchedulingIgnoredDuringExecution: z.array(z.object({ weight, preference: nodeSelectorTermSchema })).optional(),
    })
    .optional(),
  podAffinity: podAffinitySchema.optional(),
  podAntiAffinity: podAffinitySchema.optional(),
});

/** Kubernetes' ValidateTolerations: the key a label key, an empty key only with Exists, Exists without a value, tolerationSeconds with NoExecute only. */
export const tolerationSchema = z
  .object({
    /** Empty with operator Exists: tolerates every taint. */
    key: z.string().optional(),
    operator: z.enum(['Exists', 'Equal']).optional(),
    value: z.string().optional(),
    /** Empty: every effect. */
    effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
    /** NoExecute only: how long the pod stays bound once the taint appears. */
    tolerationSeconds: z.number({ error: 'must be a number' }).int('must be an integer').optional(),
  })
  .superRefine((t, ctx) => {
    if (t.key) for (const message of validateQualifiedName(t.key)) ctx.addIssue({ code: 'custom', path: ['key'], message: `invalid key '${t.key}': ${message}` });
    if (!t.key && t.operator !== 'Exists') ctx.addIssue({ code: 'custom', path: ['operator'], message: "must be 'Exists' when key is empty, which means 'match all values and all keys'" });
    if (t.operator === 'Exists' && t.value) ctx.addIssue({ code: 'custom', path: ['value'], message: "must be empty when operator is 'Exists'" });
    if ((t.operator ?? 'Equal') === 'Equal' && t.value) for (const message of validateLabelValue(t.value)) ctx.addIssue({ code: 'custom', path: ['value'], message: `invalid value '${t.value}': ${message}` });
    if (t.tolerationSeconds !== undefined && t.effect !== 'NoExecute') ctx.addIssue({ code: 'custom', path: ['effect'], message: "must be 'NoExecute' when tolerationSeconds is set" });
  });

export const schedulingStrategySchema = z.enum(['spread', 'binpack', 'random']);

export type NodeSelectorTerm = z.infer<typeof nodeSelectorTermSchema>;
export type PodAffinityTerm = z.infer<typeof podAffinityTermSchema>;
export type Affinity = z.infer<typeof affinitySchema>;
export type Toleration = z.infer<typeof tolerationSchema>;
export type SchedulingStrategy = z.infer<typeof schedulingStrategySchema>;

/** The label every node carries with its own name (set by the join), as Kubernetes' well-known label. */
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';
