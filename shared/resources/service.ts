import * as z from 'zod';
import { labelMap } from './labelmap.js';

const port = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

/** Service (v1 subset): a stable name for the ready pods its selector picks. */
export const serviceSpecSchema = z.object({
  selector: labelMap.optional(),
  ports: z
    .array(
      z.object({
        name: z.string().optional(),
        protocol: z.enum(['TCP', 'UDP']).optional(),
        port,
        /** A number, or the name of a container port. Defaults to `port`. */
        targetPort: z.union([port, z.string().min(1)]).optional(),
      }),
    )
    .optional(),
});

export type ServiceSpec = z.infer<typeof serviceSpecSchema>;

/** Endpoints (v1 shape, top-level `subsets`): written by the hub only. */
export const endpointsFieldsSchema = z.object({
  subsets: z
    .array(
      z.object({
        addresses: z.array(z.object({ ip: z.string(), nodeName: z.string().optional(), targetRef: z.object({ kind: z.string(), name: z.string(), namespace: z.string().optional(), uid: z.string().optional() }).optional() })).optional(),
        notReadyAddresses: z.array(z.object({ ip: z.string(), nodeName: z.string().optional(), targetRef: z.object({ kind: z.string(), name: z.string(), namespace: z.string().optional(), uid: z.string().optional() }).optional() })).optional(),
        ports: z.array(z.object({ name: z.string().optional(), port, protocol: z.enum(['TCP', 'UDP']).optional() })).optional(),
      }),
    )
    .optional(),
});

export type EndpointsFields = z.infer<typeof endpointsFieldsSchema>;
