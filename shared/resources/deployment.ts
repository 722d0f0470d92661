import * as z from 'zod';
import { podTemplateSchema } from './daemonset.js';
import { labelSelectorSchema } from './meta.js';
import { intOrPercent, nonNegativeInt, positiveInt } from './workload.js';

/** Deployment (apps/v1 subset): replicas placed by the scheduler, revisions kept as ReplicaSets. */
export const deploymentSpecSchema = z.object({
  replicas: nonNegativeInt.optional(),
  selector: labelSelectorSchema,
  template: podTemplateSchema,
  strategy: z
    .object({
      type: z.enum(['RollingUpdate', 'Recreate']).optional(),
      rollingUpdate: z.object({ maxSurge: intOrPercent.optional(), maxUnavailable: intOrPercent.optional() }).optional(),
    })
    .optional(),
  minReadySeconds: nonNegativeInt.optional(),
  revisionHistoryLimit: nonNegativeInt.optional(),
  progressDeadlineSeconds: positiveInt.optional(),
  paused: z.boolean().optional(),
});

export type DeploymentSpec = z.infer<typeof deploymentSpecSchema>;

export interface WorkloadCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastUpdateTime?: string;
  lastTransitionTime?: string;
}

export interface DeploymentStatus {
  observedGeneration?: number;
  replicas?: number;
  updatedReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  unavailableReplicas?: number;
  conditions?: WorkloadCondition[];
}

/** ReplicaSet: one template revision of a Deployment (or standing alone). */
export const replicaSetSpecSchema = z.object({
  replicas: nonNegativeInt.optional(),
  selector: labelSelectorSchema,
  template: podTemplateSchema,
  minReadySeconds: nonNegativeInt.optional(),
});

export type ReplicaSetSpec = z.infer<typeof replicaSetSpecSchema>;

export interface ReplicaSetStatus {
  replicas: number;
  readyReplicas?: number;
  availableReplicas?: number;
  observedGeneration?: number;
}

/** Kubernetes' annotation on a ReplicaSet (and its Deployment) with the revision number. */
export const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
/** The label that ties a ReplicaSet and its pods to one template (Kubernetes' pod-template-hash). */
export const POD_TEMPLATE_HASH_LABEL = 'pod-template-hash';
