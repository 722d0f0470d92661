import * as z from 'zod';

/** Events keep the Kubernetes core/v1 shape: their fields sit at the top level, not under spec. */
export const eventFieldsSchema = z.object({
  involvedObject: z.object({
    kind: z.string(),
    name: z.string(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
  }),
  reason: z.string().min(1, 'is required'),
  message: z.string(),
  type: z.enum(['Normal', 'Warning']),
  count: z.number().int().min(1).optional(),
  firstTimestamp: z.string().optional(),
  lastTimestamp: z.string().optional(),
  source: z.object({ component: z.string().optional(), host: z.string().optional() }).optional(),
});

export type EventFields = z.infer<typeof eventFieldsSchema>;
