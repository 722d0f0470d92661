import * as z from 'zod';
import { labelSelectorSchema } from './meta.js';

/**
 * The scheduling fields of a pod spec, in the Kubernetes shape: tolerations, node affinity and
 * pod (anti-)affinity. `schedulingStrategy` is Flotilla's own: the Docker Swarm placement
 * strategy chosen per workload.
 */

const nodeSelectorRequirement = z.object({
  key: z.string().min(1, 'is required'),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt']),
  values: z.array(z.string()).optional(),
});

export const nodeSelectorTermSchema = z.object({
  matchExpressions: z.array(nodeSelectorRequirement).optional(),
  /** Only `metadata.name` is a field a node can be selected by, as in Kubernetes. */
  matchFields: z.array(nodeSelectorRequirement.extend({ key: z.literal('metadata.name', { error: "only 'metadata.name' is supported" }) })).optional(),
});

const weight = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 100').max(100, 'must be between 1 and 100');

export const podAffinityTermSchema = z.object({
  labelSelector: labelSelectorSchema.optional(),
  /** Namespaces the selector looks in; the pod's own namespace when absent. */
  namespaces: z.array(z.string()).optional(),
  /** The node label whose value makes a topology domain: `kubernetes.io/hostname` (a device) or e.g. `site`. */
  topologyKey: z.string({ error: 'is required' }).min(1, 'is required'),
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

export const tolerationSchema = z.object({
  /** Empty with operator Exists: tolerates every taint. */
  key: z.string().optional(),
  operator: z.enum(['Exists', 'Equal']).optional(),
  value: z.string().optional(),
  /** Empty: every effect. */
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
  /** NoExecute only: how long the pod stays bound once the taint appears. */
  tolerationSeconds: z.number({ error: 'must be a number' }).int('must be an integer').optional(),
});

export const schedulingStrategySchema = z.enum(['spread', 'binpack', 'random']);

export type NodeSelectorTerm = z.infer<typeof nodeSelectorTermSchema>;
export type PodAffinityTerm = z.infer<typeof podAffinityTermSchema>;
export type Affinity = z.infer<typeof affinitySchema>;
export type Toleration = z.infer<typeof tolerationSchema>;
export type SchedulingStrategy = z.infer<typeof schedulingStrategySchema>;

/** The label every node carries with its own name (set by the join), as Kubernetes' well-known label. */
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';
