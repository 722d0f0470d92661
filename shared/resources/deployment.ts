import * as z from 'zod';
import { podTemplateSchema } from './daemonset.js';
import type { FieldError } from './fields.js';
import { labelSelectorSchema } from './meta.js';
import { WAVES, wavesFieldsShape } from './waves.js';
import { intOrPercent, nonNegativeInt, positiveInt, type IntOrPercent } from './workload.js';

/** Deployment (apps/v1 subset): replicas placed by the scheduler, revisions kept as ReplicaSets. */
export const deploymentSpecSchema = z.object({
  replicas: nonNegativeInt.optional(),
  selector: labelSelectorSchema,
  template: podTemplateSchema,
  strategy: z
    .object({
      type: z.enum(['RollingUpdate', 'Recreate', WAVES]).optional(),
      rollingUpdate: z.object({ maxSurge: intOrPercent.optional(), maxUnavailable: intOrPercent.optional() }).optional(),
      // type Waves (shared/resources/waves.ts), as on a DaemonSet's updateStrategy; waves count pods (replicas).
      ...wavesFieldsShape,
    })
    .optional(),
  /** A DaemonSet's name for the strategy: kept only to be refused with a pointer to `strategy` (checkDeploymentSpec). */
  updateStrategy: z.unknown().optional(),
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
/** Why a revision was made, as the user wrote it; `rollout history` lists it per revision. */
export const CHANGE_CAUSE_ANNOTATION = 'kubernetes.io/change-cause';

/** Kubernetes' defaults for a rolling update. */
export const DEFAULT_MAX_SURGE = '25%';
export const DEFAULT_MAX_UNAVAILABLE = '25%';

/**
 * Checks across a Deployment's fields, as Kubernetes' ValidateDeploymentSpec: a rolling update
 * must be able to move (maxSurge and maxUnavailable not both 0), maxUnavailable is at most 100 %,
 * Recreate takes no rollingUpdate, and the progress deadline outlasts minReadySeconds.
 */
export function checkDeploymentSpec(body: Record<string, unknown>): FieldError[] {
  const spec = body as DeploymentSpec;
  const errors: FieldError[] = [];
  const path = 'spec.strategy.rollingUpdate';
  const rolling = spec.strategy?.rollingUpdate;
  if (spec.strategy?.type === 'Recreate' && rolling) errors.push({ path, message: "may not be specified when strategy type is 'Recreate'" });
  if (spec.updateStrategy !== undefined) errors.push({ path: 'spec.updateStrategy', message: "a Deployment's strategy is spec.strategy, as in Kubernetes (type Waves included); updateStrategy is a DaemonSet's" });
  errors.push(...checkWavesStrategy(spec));
  const isZero = (v: IntOrPercent) => v === 0 || v === '0%';
  if (rolling && isZero(rolling.maxSurge ?? DEFAULT_MAX_SURGE) && isZero(rolling.maxUnavailable ?? DEFAULT_MAX_UNAVAILABLE)) {
    errors.push({ path: `${path}.maxUnavailable`, message: 'may not be 0 when maxSurge is 0 (the rollout could never make progress)' });
  }
  if (typeof rolling?.maxUnavailable === 'string' && Number(rolling.maxUnavailable.slice(0, -1)) > 100) {
    errors.push({ path: `${path}.maxUnavailable`, message: 'must not be greater than 100%' });
  }
  if (spec.progressDeadlineSeconds !== undefined && spec.progressDeadlineSeconds <= (spec.minReadySeconds ?? 0)) {
    errors.push({ path: 'spec.progressDeadlineSeconds', message: 'must be greater than minReadySeconds' });
  }
  return errors;
}

/**
 * A Deployment's strategy of type Waves: the waves fields only with it, waves required, and no
 * selector waves (a Deployment's pods are placed by the scheduler, so its waves count pods).
 */
function checkWavesStrategy(spec: DeploymentSpec): FieldError[] {
  const s = spec.strategy;
  if (!s) return [];
  const errors: FieldError[] = [];
  if (s.type !== WAVES) {
    for (const key of Object.keys(wavesFieldsShape)) {
      if ((s as Record<string, unknown>)[key] !== undefined) errors.push({ path: `spec.strategy.${key}`, message: 'only with type Waves' });
    }
    return errors;
  }
  if (!s.waves) errors.push({ path: 'spec.strategy.waves', message: 'is required with type Waves' });
  if (s.rollingUpdate) errors.push({ path: 'spec.strategy.rollingUpdate', message: "may not be specified when strategy type is 'Waves'" });
  (s.waves ?? []).forEach((w, i) => {
    if (w.selector !== undefined) errors.push({ path: `spec.strategy.waves[${i}].selector`, message: 'selector waves place pods on matching devices, which only a DaemonSet does; use count or percent' });
  });
  return errors;
}
