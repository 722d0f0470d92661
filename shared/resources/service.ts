import * as z from 'zod';
import { validateDns1123Label, validatePortName } from '../labels/validation.js';
import { labelMap } from './labelmap.js';

const port = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

/** Kubernetes' default of spec.sessionAffinityConfig.clientIP.timeoutSeconds (3 hours). */
export const DEFAULT_AFFINITY_SECONDS = 10800;
export const MAX_AFFINITY_SECONDS = 86400;

/** The Service types Flotilla serves. */
export const SERVICE_TYPES = ['ClusterIP', 'NodePort'] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** spec.clusterIP: 'None' (headless), an IPv4 address, or '' (let the hub choose, as absent). */
const clusterIP = z.string().refine((v) => v === '' || v === 'None' || ipv4.test(v), { message: "must be a valid IPv4 address or 'None'" });
const trafficPolicy = z.enum(['Cluster', 'Local'], { error: (i) => `Unsupported value: '${String(i.input)}': supported values: 'Cluster', 'Local'` });

/**
 * Service (v1 subset): a stable name, and a virtual IP the hub allocates (spec.clusterIP), for
 * the ready pods its selector picks. The hub fills the defaults and the allocations on the
 * write path (hub/services/allocator.ts).
 */
export const serviceSpecSchema = z
  .object({
    /** ClusterIP (the default) or NodePort; LoadBalancer and ExternalName are refused (checkServiceSpec). */
    type: z.string().optional(),
    selector: labelMap.optional(),
    clusterIP: clusterIP.optional(),
    /** Kubernetes' list form of clusterIP; IPv4 only, so one entry, equal to clusterIP when both are given. */
    clusterIPs: z.array(clusterIP).max(1, 'may hold one address (Flotilla is IPv4 only)').optional(),
    ports: z
      .array(
        z.object({
          name: z
            .string()
            .superRefine((v, ctx) => {
              for (const message of validateDns1123Label(v)) ctx.addIssue({ code: 'custom', message: `invalid port name '${v}': ${message}` });
            })
            .optional(),
          protocol: z.enum(['TCP', 'UDP'], { error: (i) => `Unsupported value: '${String(i.input)}': supported values: 'TCP', 'UDP'` }).optional(),
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
          /** type NodePort: the port every device accepts on its own addresses (the hub allocates one when absent). */
          nodePort: port.optional(),
        }),
      )
      .optional(),
    sessionAffinity: z.enum(['None', 'ClientIP'], { error: (i) => `Unsupported value: '${String(i.input)}': supported values: 'None', 'ClientIP'` }).optional(),
    sessionAffinityConfig: z
      .object({
        clientIP: z
          .object({
            timeoutSeconds: z.number({ error: 'must be a number' }).int('must be an integer').min(1, `must be greater than 0 and less than or equal to ${MAX_AFFINITY_SECONDS}`).max(MAX_AFFINITY_SECONDS, `must be greater than 0 and less than or equal to ${MAX_AFFINITY_SECONDS}`).optional(),
          })
          .optional(),
      })
      .optional(),
    internalTrafficPolicy: trafficPolicy.optional(),
    externalTrafficPolicy: trafficPolicy.optional(),
    trafficDistribution: z.literal('PreferClose', { error: (i) => `Unsupported value: '${String(i.input)}': supported values: 'PreferClose'` }).optional(),
    /** Not-ready pods are endpoints too (and ready in what devices receive), as Kubernetes' field. */
    publishNotReadyAddresses: z.boolean().optional(),
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
    for (const issue of checkServiceSpec(spec)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  });

/** The checks across fields of a Service's spec, as Kubernetes' ValidateService makes them (paths under spec). */
function checkServiceSpec(spec: {
  type?: string;
  clusterIP?: string;
  clusterIPs?: string[];
  ports?: { nodePort?: number; protocol?: string; port: number }[];
  sessionAffinity?: string;
  sessionAffinityConfig?: unknown;
  externalTrafficPolicy?: string;
}): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  const type = spec.type ?? 'ClusterIP';
  if (type === 'LoadBalancer') {
    issues.push({ path: ['type'], message: "Unsupported value: 'LoadBalancer': Flotilla has no external load-balancer allocator to give it an address; use type NodePort, which every device accepts on its own addresses (the routing mesh)" });
  } else if (type === 'ExternalName') {
    issues.push({ path: ['type'], message: "Unsupported value: 'ExternalName': not supported; use a Service of type ClusterIP (or NodePort) with a selector" });
  } else if (!(SERVICE_TYPES as readonly string[]).includes(type)) {
    issues.push({ path: ['type'], message: `Unsupported value: '${type}': supported values: 'ClusterIP', 'NodePort'` });
  }
  const ips = spec.clusterIPs;
  if (ips?.length && spec.clusterIP !== undefined && spec.clusterIP !== '' && ips[0] !== spec.clusterIP) {
    issues.push({ path: ['clusterIPs', 0], message: `Invalid value: '${ips[0]}': must match spec.clusterIP ('${spec.clusterIP}')` });
  }
  const headless = (spec.clusterIP || ips?.[0]) === 'None';
  if (type === 'NodePort' && headless) issues.push({ path: ['clusterIP'], message: "Invalid value: 'None': may not be set to 'None' for NodePort services" });
  spec.ports?.forEach((p, i) => {
    if (p.nodePort !== undefined && type !== 'NodePort') issues.push({ path: ['ports', i, 'nodePort'], message: `Forbidden: may not be used when 'type' is '${type}'` });
  });
  const nodePorts = new Set<string>();
  spec.ports?.forEach((p, i) => {
    if (p.nodePort === undefined) return;
    const key = `${p.nodePort}/${p.protocol ?? 'TCP'}`;
    if (nodePorts.has(key)) issues.push({ path: ['ports', i, 'nodePort'], message: `Duplicate value: '${key}'` });
    nodePorts.add(key);
  });
  if (spec.externalTrafficPolicy !== undefined && type !== 'NodePort') {
    issues.push({ path: ['externalTrafficPolicy'], message: `Invalid value: '${spec.externalTrafficPolicy}': may only be set when 'type' is 'NodePort'` });
  }
  if (spec.sessionAffinityConfig !== undefined && spec.sessionAffinity !== 'ClientIP') {
    issues.push({ path: ['sessionAffinityConfig'], message: "Forbidden: must not be set when 'sessionAffinity' is None" });
  }
  return issues;
}

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

/** The label that names an EndpointSlice's Service, as Kubernetes sets it. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** The label that says who manages an EndpointSlice (the hub's endpoints controller). */
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';

const sliceTargetRef = z.object({ kind: z.string(), name: z.string(), namespace: z.string().optional(), uid: z.string().optional() });

/**
 * EndpointSlice (discovery.k8s.io/v1 shape, top-level fields): written by the hub only, beside
 * Endpoints: one per Service and set of resolved ports, each endpoint with its conditions, node
 * and zone (the node's site).
 */
export const endpointSliceFieldsSchema = z.object({
  addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
  endpoints: z
    .array(
      z.object({
        addresses: z.array(z.string()),
        conditions: z.object({ ready: z.boolean().optional(), serving: z.boolean().optional(), terminating: z.boolean().optional() }).optional(),
        hostname: z.string().optional(),
        nodeName: z.string().optional(),
        zone: z.string().optional(),
        targetRef: sliceTargetRef.optional(),
      }),
    )
    .optional(),
  ports: z.array(z.object({ name: z.string().optional(), port: port.optional(), protocol: z.enum(['TCP', 'UDP']).optional() })).optional(),
});

export type EndpointSliceFields = z.infer<typeof endpointSliceFieldsSchema>;
export type EndpointSliceEndpoint = NonNullable<EndpointSliceFields['endpoints']>[number];
