import * as z from 'zod';
import { labelSelectorSchema, templateMetadataSchema } from './meta.js';
import { podSpecSchema } from './pod.js';
import { intOrPercent } from './workload.js';


export const podTemplateSchema = z.object({
  metadata: templateMetadataSchema.optional(),
  spec: podSpecSchema,
});

export const daemonSetSpecSchema = z.object({
  selector: labelSelectorSchema,
  template: podTemplateSchema,
  updateStrategy: z
    .object({
      type: z.enum(['RollingUpdate', 'OnDelete']).optional(),
      rollingUpdate: z.object({ maxUnavailable: intOrPercent.optional(), maxSurge: intOrPercent.optional() }).optional(),
    })
    .optional(),
  minReadySeconds: z.number().int('must be an integer').min(0, 'must be greater than or equal to 0').optional(),
  revisionHistoryLimit: z.number().int('must be an integer').min(0, 'must be greater than or equal to 0').optional(),
});

export type DaemonSetSpec = z.infer<typeof daemonSetSpecSchema>;
export type PodTemplate = z.infer<typeof podTemplateSchema>;

export interface DaemonSetStatus {
  desiredNumberScheduled: number;
  currentNumberScheduled: number;
  numberReady: number;
  numberAvailable?: number;
  updatedNumberScheduled: number;
  numberMisscheduled: number;
  observedGeneration: number;
}
