import * as z from 'zod';
import { validateDns1123Subdomain, validatePortName } from '../labels/validation.js';

/**
 * Ingress (networking.k8s.io/v1 subset): HTTP routes by host and path to Services, with TLS
 * from kubernetes.io/tls Secrets, served by the ingress devices (nodes labelled
 * `flotilla.io/ingress=true`; docs/ARCHITECTURE.md, 'Ingress'). The messages are Kubernetes'
 * (ValidateIngressSpec), each naming its field.
 */

/** The label that makes a node an ingress device: it alone receives the Ingresses and their certificates. */
export const INGRESS_NODE_LABEL = 'flotilla.io/ingress';

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * A rule's or a TLS entry's host: a DNS-1123 subdomain, or one with a leading `*.` wildcard
 * label (which covers exactly one label), never an IP address (Kubernetes' rule).
 */
export function validateIngressHost(host: string): string[] {
  if (IPV4.test(host) || host.includes(':')) return ['must be a DNS name, not an IP address'];
  if (host.startsWith('*.')) {
    const rest = host.slice(2);
    if (rest.includes('*')) return ["a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com')"];
    return validateDns1123Subdomain(rest).map((m) => `a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain: ${m}`);
  }
  if (host.includes('*')) return ["a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain (e.g. '*.example.com')"];
  return validateDns1123Subdomain(host);
}

const host = z.string().superRefine((v, ctx) => {
  for (const message of validateIngressHost(v)) ctx.addIssue({ code: 'custom', message: `Invalid value: '${v}': ${message}` });
});

const subdomain = (what: string) =>
  z.string().superRefine((v, ctx) => {
    for (const message of validateDns1123Subdomain(v)) ctx.addIssue({ code: 'custom', message: `Invalid value: '${v}': ${what} ${message}` });
  });

const backendPort = z
  .object({
    number: z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535, inclusive').max(65535, 'must be between 1 and 65535, inclusive').optional(),
    name: z
      .string()
      .superRefine((v, ctx) => {
        for (const message of validatePortName(v)) ctx.addIssue({ code: 'custom', message: `Invalid value: '${v}': ${message}` });
      })
      .optional(),
  })
  .superRefine((p, ctx) => {
    if (p.number !== undefined && p.name !== undefined) ctx.addIssue({ code: 'custom', message: 'Invalid value: cannot set both port name & port number' });
    else if (p.number === undefined && p.name === undefined) ctx.addIssue({ code: 'custom', message: 'Required value: port name or number is required' });
  });

/** A backend: a Service of the Ingress's own namespace and one of its ports (by number or name). `resource` backends are not supported. */
export const ingressBackendSchema = z.object({
  service: z.object({ name: subdomain('a Service name'), port: backendPort }, { error: 'Required value: a backend names a service (resource backends are not supported)' }),
});

export const PATH_TYPES = ['Exact', 'Prefix', 'ImplementationSpecific'] as const;

const httpPath = z
  .object({
    path: z.string().optional(),
    pathType: z.enum(PATH_TYPES, { error: (issue) => (issue.input === undefined ? 'Required value: pathType must be specified' : `Unsupported value: '${String(issue.input)}': supported values: 'Exact', 'ImplementationSpecific', 'Prefix'`) }),
    backend: ingressBackendSchema,
  })
  .superRefine((p, ctx) => {
    // Kubernetes: Exact and Prefix paths are absolute; ImplementationSpecific ones (treated as Prefix here) too, when given.
    if (p.path === undefined || p.path === '') {
      if (p.pathType !== 'ImplementationSpecific') ctx.addIssue({ code: 'custom', path: ['path'], message: 'Required value: must be specified when pathType is Exact or Prefix' });
      return;
    }
    if (!p.path.startsWith('/')) ctx.addIssue({ code: 'custom', path: ['path'], message: `Invalid value: '${p.path}': must be an absolute path` });
    else if (p.pathType !== 'ImplementationSpecific' && /\/\/|\/\.\.?(\/|$)|[?#]/.test(p.path)) ctx.addIssue({ code: 'custom', path: ['path'], message: `Invalid value: '${p.path}': must not contain '//', '/./', '/../', '?' or '#'` });
  });

export const ingressSpecSchema = z
  .object({
    /** Recorded and shown (CLASS); Flotilla has one ingress, so every Ingress is served whatever its class. */
    ingressClassName: subdomain('an IngressClass name').optional(),
    defaultBackend: ingressBackendSchema.optional(),
    rules: z
      .array(
        z.object({
          host: host.optional(),
          http: z.object({ paths: z.array(httpPath).min(1, 'Required value: at least one path') }).optional(),
        }),
      )
      .optional(),
    tls: z.array(z.object({ hosts: z.array(host).optional(), secretName: subdomain('a Secret name').optional() })).optional(),
  })
  .superRefine((spec, ctx) => {
    if (!spec.defaultBackend && (spec.rules?.length ?? 0) === 0) ctx.addIssue({ code: 'custom', message: 'Invalid value: either `defaultBackend` or `rules` must be specified' });
  });

export type IngressSpec = z.infer<typeof ingressSpecSchema>;
export type IngressBackend = z.infer<typeof ingressBackendSchema>;
export type IngressPathType = (typeof PATH_TYPES)[number];

/** status.loadBalancer.ingress: where the Ingress is served (each ingress device's address). */
export interface IngressStatus {
  loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] };
}
