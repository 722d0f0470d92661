import * as z from 'zod';
import { podTemplateSchema } from './daemonset.js';
import { labelSelectorSchema, templateMetadataSchema } from './meta.js';
import { nonNegativeInt, positiveInt } from './workload.js';
import { parseCronExpression } from '../cron/parse.js';
import { timeZoneProblem } from '../cron/schedule.js';

/** Job (batch/v1 subset): pods that run to completion. */
export const jobSpecSchema = z
  .object({
    template: podTemplateSchema,
    /** Filled in by the hub from the template labels when absent, as Kubernetes does. */
    selector: labelSelectorSchema.optional(),
    completions: nonNegativeInt.optional(),
    parallelism: nonNegativeInt.optional(),
    backoffLimit: nonNegativeInt.optional(),
    activeDeadlineSeconds: positiveInt.optional(),
    ttlSecondsAfterFinished: nonNegativeInt.optional(),
    suspend: z.boolean().optional(),
  })
  .superRefine((spec, ctx) => {
    const policy = spec.template.spec.restartPolicy;
    if (policy === 'Always' || policy === undefined) {
      ctx.addIssue({ code: 'custom', path: ['template', 'spec', 'restartPolicy'], message: "must be 'OnFailure' or 'Never' for a Job" });
    }
  });

export type JobSpec = z.infer<typeof jobSpecSchema>;

export interface JobCondition {
  type: 'Complete' | 'Failed' | 'Suspended' | string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastProbeTime?: string;
  lastTransitionTime?: string;
}

export interface JobStatus {
  active?: number;
  succeeded?: number;
  failed?: number;
  startTime?: string;
  completionTime?: string;
  conditions?: JobCondition[];
}

/** CronJob (batch/v1 subset), scheduled by the hub's cron matcher (shared/cron). */
export const cronJobSpecSchema = z.object({
  /** Five fields as Kubernetes, or six with seconds first (node-cron's form). */
  schedule: z
    .string({ error: 'is required' })
    .min(1, 'is required')
    .superRefine((v, ctx) => {
      const parsed = parseCronExpression(v);
      if (v !== '' && !parsed.ok) ctx.addIssue({ code: 'custom', message: `invalid schedule '${v}': ${parsed.error}` });
    }),
  /** An IANA time zone name; the hub's own zone when absent. */
  timeZone: z
    .string()
    .superRefine((v, ctx) => {
      const problem = timeZoneProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  concurrencyPolicy: z.enum(['Allow', 'Forbid', 'Replace']).optional(),
  startingDeadlineSeconds: nonNegativeInt.optional(),
  successfulJobsHistoryLimit: nonNegativeInt.optional(),
  failedJobsHistoryLimit: nonNegativeInt.optional(),
  suspend: z.boolean().optional(),
  jobTemplate: z.object({ metadata: templateMetadataSchema.optional(), spec: jobSpecSchema }),
});

export type CronJobSpec = z.infer<typeof cronJobSpecSchema>;

export interface CronJobStatus {
  active?: { kind: 'Job'; name: string; namespace?: string; uid?: string }[];
  lastScheduleTime?: string;
  lastSuccessfulTime?: string;
}
