import { isIP } from 'node:net';
import * as z from 'zod';
import { validateDns1123Label, validateDns1123Subdomain, validatePortName, validateQualifiedName } from '../labels/validation.js';
import { parseQuantity, type Quantity } from '../quantities/quantity.js';
import { validateImageReference } from './image.js';
import { labelMap } from './labelmap.js';
import { envFromSchema, envVarSchema, securityContextSchema, volumeMountSchema, volumeSchema, type Volume } from './volumes.js';
import { livenessProbeSchema, readinessProbeSchema, startupProbeSchema } from './probe.js';
import { affinitySchema, schedulingStrategySchema, tolerationSchema } from './scheduling.js';

const dnsLabel = z.string().superRefine((v, ctx) => {
  for (const message of validateDns1123Label(v)) ctx.addIssue({ code: 'custom', message: `invalid name '${v}': ${message}` });
});

const objectName = z.string({ error: 'is required' }).superRefine((v, ctx) => {
  for (const message of validateDns1123Subdomain(v)) ctx.addIssue({ code: 'custom', message: `invalid name '${v}': ${message}` });
});

/** A libc resolver's limits, as Kubernetes validates them (MaxDNSNameservers, MaxDNSSearchPaths, MaxDNSSearchListChars). */
export const MAX_DNS_NAMESERVERS = 3;
export const MAX_DNS_SEARCHES = 32;
export const MAX_DNS_SEARCH_CHARS = 2048;

export const DNS_POLICIES = ['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'] as const;
export type DnsPolicy = (typeof DNS_POLICIES)[number];

/** spec.dnsConfig: merged into what dnsPolicy gives (agent/services/dns/resolv.ts). */
const dnsConfigSchema = z.object({
  nameservers: z
    .array(
      z.string().superRefine((v, ctx) => {
        if (!isIP(v)) ctx.addIssue({ code: 'custom', message: `must be a valid IP address, not '${v}'` });
      }),
    )
    .optional(),
  searches: z
    .array(
      z.string().superRefine((v, ctx) => {
        // A trailing dot is allowed, as Kubernetes allows it.
        for (const message of validateDns1123Subdomain(v.replace(/\.$/, ''))) ctx.addIssue({ code: 'custom', message: `invalid search domain '${v}': ${message}` });
      }),
    )
    .optional(),
  options: z.array(z.object({ name: z.string().min(1, 'Required value: must not be empty'), value: z.string().optional() })).optional(),
});

export type PodDnsConfig = z.infer<typeof dnsConfigSchema>;

const nonNegativeInt = z.number({ error: 'must be a number' }).int('must be an integer').min(0, 'must be greater than or equal to 0');
const port = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

/** Kubernetes keeps a quantity in an int64: '1e308' of cpu would reach the engine as Infinity. */
const MAX_QUANTITY = parseQuantity('9223372036854775807');

const quantity = z.union([z.string(), z.number()]).superRefine((v, ctx) => {
  try {
    const q = parseQuantity(v);
    if (q.milli() < 0) ctx.addIssue({ code: 'custom', message: `must be greater than or equal to 0, not '${v}'` });
    else if (q.compare(MAX_QUANTITY) > 0) ctx.addIssue({ code: 'custom', message: `must be no more than 9223372036854775807 (2^63-1), not '${v}'` });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/**
 * Kubernetes' validateContainerResourceName: the standard names, or a name with a domain prefix
 * (an extended resource such as example.com/dongle). `pids` is Flotilla's own. A typo such as
 * `cpus` is refused rather than ignored.
 */
const STANDARD_RESOURCES = new Set(['cpu', 'memory', 'ephemeral-storage', 'pids']);
const resourceList = z.record(z.string(), quantity).superRefine((list, ctx) => {
  for (const name of Object.keys(list)) {
    const problems = validateQualifiedName(name);
    if (problems.length === 0 && !name.includes('/') && !STANDARD_RESOURCES.has(name) && !name.startsWith('hugepages-')) {
      problems.push(`must be a standard resource for containers (${[...STANDARD_RESOURCES].join(', ')}, hugepages-<size>) or have a domain prefix`);
    }
    for (const message of problems) ctx.addIssue({ code: 'custom', path: [name], message: `invalid resource name '${name}': ${message}` });
  }
});

function quantityOf(v: string | number): Quantity | undefined {
  try {
    return parseQuantity(v);
  } catch {
    return undefined; // the quantity's own error is reported already
  }
}

/** Flotilla's own resource `pids` (the engine's pids limit of the container) is a count: a positive integer. */
const resourceRequirements = z
  .object({ limits: resourceList.optional(), requests: resourceList.optional() })
  .superRefine((r, ctx) => {
    // Kubernetes: a request may not exceed the limit of the same resource.
    for (const [name, request] of Object.entries(r.requests ?? {})) {
      const limit = r.limits?.[name];
      if (limit === undefined) continue;
      const [req, lim] = [quantityOf(request), quantityOf(limit)];
      if (req && lim && req.compare(lim) > 0) ctx.addIssue({ code: 'custom', path: ['requests', name], message: `must be less than or equal to ${name} limit of ${String(limit)}, not '${String(request)}'` });
    }
    const pids = r.limits?.pids;
    if (pids === undefined) return;
    const milli = quantityOf(pids)?.milli();
    if (milli === undefined) return;
    if (milli < 1000 || milli % 1000 !== 0) ctx.addIssue({ code: 'custom', path: ['limits', 'pids'], message: `must be a positive integer, not '${pids}'` });
  });

const portName = z.string().superRefine((v, ctx) => {
  for (const message of validatePortName(v)) ctx.addIssue({ code: 'custom', message: `invalid port name '${v}': ${message}` });
});

export const containerSchema = z.object({
  name: dnsLabel,
  image: z
    .string({ error: 'is required' })
    .superRefine((v, ctx) => {
      if (v.trim() === '') ctx.addIssue({ code: 'custom', message: 'is required' });
      else for (const message of validateImageReference(v)) ctx.addIssue({ code: 'custom', message });
    }),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  // The engine refuses a relative working directory when it creates the container, on the device.
  workingDir: z.string().startsWith('/', 'must be an absolute path').optional(),
  env: z.array(envVarSchema).optional(),
  envFrom: z.array(envFromSchema).optional(),
  volumeMounts: z.array(volumeMountSchema).optional(),
  securityContext: securityContextSchema.optional(),
  ports: z
    .array(
      z.object({
        name: portName.optional(),
        containerPort: port,
        hostPort: port.optional(),
        protocol: z.enum(['TCP', 'UDP']).optional(),
      }),
    )
    .optional(),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
  resources: resourceRequirements.optional(),
  livenessProbe: livenessProbeSchema.optional(),
  readinessProbe: readinessProbeSchema.optional(),
  startupProbe: startupProbeSchema.optional(),
});

export const podSpecSchema = z
  .object({
    containers: z.array(containerSchema, { error: 'is required' }).min(1, 'must have at least one container'),
    restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).optional(),
    nodeName: objectName.optional(),
    nodeSelector: labelMap.optional(),
    affinity: affinitySchema.optional(),
    tolerations: z.array(tolerationSchema).optional(),
    /** Flotilla's own: Docker Swarm's placement strategy for this pod (default spread). */
    schedulingStrategy: schedulingStrategySchema.optional(),
    hostNetwork: z.boolean().optional(),
    terminationGracePeriodSeconds: nonNegativeInt.optional(),
    volumes: z.array(volumeSchema).optional(),
    /** Secrets of type kubernetes.io/dockerconfigjson whose credentials the node pulls the pod's images with. */
    imagePullSecrets: z.array(z.object({ name: objectName })).optional(),
    /** Kubernetes' default true: Service environment variables in each container (agent/reconcile/env.ts). */
    enableServiceLinks: z.boolean().optional(),
    /** Only told to the pod (the downward API's spec.serviceAccountName): Flotilla has no service accounts. */
    serviceAccountName: objectName.optional(),
    /** The pod's hostname (default: its name); with subdomain, its DNS name under the headless Service of that name. */
    hostname: dnsLabel.optional(),
    subdomain: dnsLabel.optional(),
    dnsPolicy: z.enum(DNS_POLICIES).optional(),
    dnsConfig: dnsConfigSchema.optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.containers.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'name'], message: `duplicate container name '${c.name}'` });
      seen.add(c.name);
    });
    const volumes = new Set<string>();
    spec.volumes?.forEach((v, i) => {
      if (volumes.has(v.name)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'name'], message: `duplicate volume name '${v.name}'` });
      volumes.add(v.name);
    });
    spec.containers.forEach((c, i) => {
      c.volumeMounts?.forEach((m, j) => {
        if (!volumes.has(m.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'volumeMounts', j, 'name'], message: `volume '${m.name}' is not declared in spec.volumes` });
      });
    });
    for (const key of Object.keys(spec.nodeSelector ?? {})) {
      for (const message of validateQualifiedName(key)) ctx.addIssue({ code: 'custom', path: ['nodeSelector', key], message });
    }
    checkPorts(spec, ctx);
    checkResourceFieldRefs(spec, ctx);
    checkDns(spec, ctx);
    spec.containers.forEach((c, i) => {
      // Kubernetes' ValidateVolumeMounts: one mount per path in a container.
      const paths = new Set<string>();
      c.volumeMounts?.forEach((m, j) => {
        if (paths.has(m.mountPath)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'volumeMounts', j, 'mountPath'], message: `must be unique: '${m.mountPath}' is mounted already` });
        paths.add(m.mountPath);
      });
    });
  });

/**
 * Kubernetes' validatePodDNSConfig: dnsPolicy None needs a nameserver; at most 3 nameservers,
 * 32 search domains and 2048 characters of search list (what a libc resolver reads).
 */
function checkDns(spec: { dnsPolicy?: DnsPolicy | undefined; dnsConfig?: PodDnsConfig | undefined }, ctx: z.RefinementCtx): void {
  const config = spec.dnsConfig;
  if (spec.dnsPolicy === 'None' && !config?.nameservers?.length) ctx.addIssue({ code: 'custom', path: ['dnsConfig', 'nameservers'], message: 'Required value: must provide at least one DNS nameserver when `dnsPolicy` is None' });
  if (!config) return;
  if ((config.nameservers?.length ?? 0) > MAX_DNS_NAMESERVERS) ctx.addIssue({ code: 'custom', path: ['dnsConfig', 'nameservers'], message: `must not have more than ${MAX_DNS_NAMESERVERS} nameservers, not ${config.nameservers!.length}` });
  const searches = config.searches ?? [];
  if (searches.length > MAX_DNS_SEARCHES) ctx.addIssue({ code: 'custom', path: ['dnsConfig', 'searches'], message: `must not have more than ${MAX_DNS_SEARCHES} search paths, not ${searches.length}` });
  const chars = searches.join(' ').length;
  if (chars > MAX_DNS_SEARCH_CHARS) ctx.addIssue({ code: 'custom', path: ['dnsConfig', 'searches'], message: `must not have more than ${MAX_DNS_SEARCH_CHARS} characters (including spaces) in the search list, not ${chars}` });
}

/**
 * Kubernetes' port rules across a pod: port names unique within a container; a host port (with
 * its protocol) used once in the whole pod, since the engine can bind it only once; and with
 * hostNetwork, a host port equal to its container port, since there is no mapping.
 */
function checkPorts(spec: { containers: { name: string; ports?: { name?: string | undefined; containerPort: number; hostPort?: number | undefined; protocol?: string | undefined }[] | undefined }[]; hostNetwork?: boolean | undefined }, ctx: z.RefinementCtx): void {
  const hostPorts = new Map<string, string>();
  spec.containers.forEach((c, i) => {
    const names = new Set<string>();
    c.ports?.forEach((p, j) => {
      const at = ['containers', i, 'ports', j];
      if (p.name !== undefined) {
        if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: [...at, 'name'], message: `Duplicate value: '${p.name}'` });
        names.add(p.name);
      }
      if (spec.hostNetwork && p.hostPort !== undefined && p.hostPort !== p.containerPort) {
        ctx.addIssue({ code: 'custom', path: [...at, 'hostPort'], message: 'must match containerPort when hostNetwork is true' });
      }
      // With hostNetwork every container port is a port of the host.
      const hostPort = p.hostPort ?? (spec.hostNetwork ? p.containerPort : undefined);
      if (hostPort === undefined) return;
      const key = `${hostPort}/${p.protocol ?? 'TCP'}`;
      const first = hostPorts.get(key);
      if (first) ctx.addIssue({ code: 'custom', path: [...at, p.hostPort !== undefined ? 'hostPort' : 'containerPort'], message: `Duplicate value: '${key}' (the host port is already used by ${first})` });
      else hostPorts.set(key, `container '${c.name}'`);
    });
  });
}

/** A resourceFieldRef's containerName, in env or in a downwardAPI volume, names a container of the pod. */
function checkResourceFieldRefs(spec: { containers: Container[]; volumes?: Volume[] | undefined }, ctx: z.RefinementCtx): void {
  const names = new Set(spec.containers.map((c) => c.name));
  const check = (name: string | undefined, path: (string | number)[]) => {
    if (name !== undefined && !names.has(name)) ctx.addIssue({ code: 'custom', path: [...path, 'containerName'], message: `Not found: "${name}": no container of this name in the pod` });
  };
  spec.containers.forEach((c, i) => c.env?.forEach((e, j) => check(e.valueFrom?.resourceFieldRef?.containerName, ['containers', i, 'env', j, 'valueFrom', 'resourceFieldRef'])));
  spec.volumes?.forEach((v, i) => v.downwardAPI?.items?.forEach((item, j) => check(item.resourceFieldRef?.containerName, ['volumes', i, 'downwardAPI', 'items', j, 'resourceFieldRef'])));
}

export type Container = z.infer<typeof containerSchema>;
export type PodSpec = z.infer<typeof podSpecSchema>;

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown';

export interface ContainerState {
  running?: { startedAt?: string };
  waiting?: { reason?: string; message?: string };
  terminated?: { exitCode: number; reason?: string; message?: string; startedAt?: string; finishedAt?: string };
}

export interface ContainerStatus {
  name: string;
  image: string;
  imageID?: string;
  containerID?: string;
  ready: boolean;
  restartCount: number;
  state: ContainerState;
  lastState?: ContainerState;
}

export interface PodCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface PodStatus {
  phase: PodPhase;
  reason?: string;
  message?: string;
  hostIP?: string;
  podIP?: string;
  startTime?: string;
  conditions?: PodCondition[];
  containerStatuses?: ContainerStatus[];
}
