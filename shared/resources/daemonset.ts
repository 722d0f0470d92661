import * as z from 'zod';
import { labelSelectorSchema, templateMetadataSchema } from './meta.js';
import { podSpecSchema } from './pod.js';
import { wavesFieldsShape, WAVES } from './waves.js';
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
      type: z.enum(['RollingUpdate', 'OnDelete', WAVES]).optional(),
      rollingUpdate: z.object({ maxUnavailable: intOrPercent.optional(), maxSurge: intOrPercent.optional() }).optional(),
      // type Waves (shared/resources/waves.ts): beside `type`, as docs/ARCHITECTURE.md, 'Waves rollouts', lists them.
      ...wavesFieldsShape,
    })
    .superRefine((s, ctx) => {
      // Kubernetes' ValidateRollingUpdateDaemonSet: at most 100 %, and not both 0 (nothing could ever move).
      const rolling = s.rollingUpdate;
      for (const field of ['maxUnavailable', 'maxSurge'] as const) {
        const v = rolling?.[field];
        if (typeof v === 'string' && Number(v.slice(0, -1)) > 100) ctx.addIssue({ code: 'custom', path: ['rollingUpdate', field], message: 'must not be greater than 100%' });
      }
      const isZero = (v: number | string | undefined) => v === 0 || v === '0%';
      if (rolling && isZero(rolling.maxUnavailable) && (rolling.maxSurge === undefined || isZero(rolling.maxSurge))) {
        ctx.addIssue({ code: 'custom', path: ['rollingUpdate', 'maxUnavailable'], message: 'may not be 0 when maxSurge is 0 (the rollout could never make progress)' });
      }
      if (s.type === WAVES) {
        if (!s.waves) ctx.addIssue({ code: 'custom', path: ['waves'], message: 'is required with type Waves' });
        if (s.rollingUpdate) ctx.addIssue({ code: 'custom', path: ['rollingUpdate'], message: 'only with type RollingUpdate' });
        return;
      }
      for (const key of Object.keys(wavesFieldsShape)) {
        if ((s as Record<string, unknown>)[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'only with type Waves' });
      }
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
