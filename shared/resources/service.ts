import * as z from 'zod';
import { validateDns1123Label, validatePortName } from '../labels/validation.js';
import { labelMap } from './labelmap.js';

const port = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

/** Service (v1 subset): a stable name for the ready pods its selector picks. */
export const serviceSpecSchema = z.object({
  selector: labelMap.optional(),
  ports: z
    .array(
      z.object({
        name: z
          .string()
          .superRefine((v, ctx) => {
            for (const message of validateDns1123Label(v)) ctx.addIssue({ code: 'custom', message: `invalid port name '${v}': ${message}` });
          })
          .optional(),
        protocol: z.enum(['TCP', 'UDP']).optional(),
        port,
        /** A number, or the name of a container port. Defaults to `port`. */
        targetPort: z
          .union([
            port,
            z.string().superRefine((v, ctx) => {
              for (const message of validatePortName(v)) ctx.addIssue({ code: 'custom', message: `invalid port name '${v}': ${message}` });
            }),
          ])
          .optional(),
      }),
    )
    .optional(),
})
  // Kubernetes' ValidateService: with several ports each is named, and names and port/protocol pairs are unique.
  .superRefine((spec, ctx) => {
    const names = new Set<string>();
    const ports = new Set<string>();
    spec.ports?.forEach((p, i) => {
      if ((spec.ports?.length ?? 0) > 1 && !p.name) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: 'Required value: a Service with more than one port names each' });
      if (p.name) {
        if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: `Duplicate value: '${p.name}'` });
        names.add(p.name);
      }
      const key = `${p.port}/${p.protocol ?? 'TCP'}`;
      if (ports.has(key)) ctx.addIssue({ code: 'custom', path: ['ports', i], message: `Duplicate value: '${key}'` });
      ports.add(key);
    });
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
