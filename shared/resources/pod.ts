import * as z from 'zod';
import { validateDns1123Label, validateQualifiedName } from '../labels/validation.js';
import { parseQuantity } from '../quantities/quantity.js';
import { labelMap } from './labelmap.js';
import { envFromSchema, envVarSchema, securityContextSchema, volumeMountSchema, volumeSchema } from './volumes.js';
import { livenessProbeSchema, readinessProbeSchema, startupProbeSchema } from './probe.js';
import { affinitySchema, schedulingStrategySchema, tolerationSchema } from './scheduling.js';

const dnsLabel = z.string().superRefine((v, ctx) => {
  for (const message of validateDns1123Label(v)) ctx.addIssue({ code: 'custom', message: `invalid name '${v}': ${message}` });
});

const nonNegativeInt = z.number({ error: 'must be a number' }).int('must be an integer').min(0, 'must be greater than or equal to 0');
const port = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

const quantity = z.union([z.string(), z.number()]).superRefine((v, ctx) => {
  try {
    if (parseQuantity(v).milli() < 0) ctx.addIssue({ code: 'custom', message: `must be greater than or equal to 0, not '${v}'` });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const resourceList = z.record(z.string(), quantity);

/** Flotilla's own resource `pids` (the engine's pids limit of the container) is a count: a positive integer. */
const resourceRequirements = z
  .object({ limits: resourceList.optional(), requests: resourceList.optional() })
  .superRefine((r, ctx) => {
    const pids = r.limits?.pids;
    if (pids === undefined) return;
    let milli: number;
    try {
      milli = parseQuantity(pids).milli();
    } catch {
      return; // the quantity's own error is reported already
    }
    if (milli < 1000 || milli % 1000 !== 0) ctx.addIssue({ code: 'custom', path: ['limits', 'pids'], message: `must be a positive integer, not '${pids}'` });
  });

export const containerSchema = z.object({
  name: dnsLabel,
  image: z.string({ error: 'is required' }).trim().min(1, 'is required'),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  workingDir: z.string().optional(),
  env: z.array(envVarSchema).optional(),
  envFrom: z.array(envFromSchema).optional(),
  volumeMounts: z.array(volumeMountSchema).optional(),
  securityContext: securityContextSchema.optional(),
  ports: z
    .array(
      z.object({
        name: z.string().optional(),
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
    nodeName: z.string().optional(),
    nodeSelector: labelMap.optional(),
    affinity: affinitySchema.optional(),
    tolerations: z.array(tolerationSchema).optional(),
    /** Flotilla's own: Docker Swarm's placement strategy for this pod (default spread). */
    schedulingStrategy: schedulingStrategySchema.optional(),
    hostNetwork: z.boolean().optional(),
    terminationGracePeriodSeconds: nonNegativeInt.optional(),
    volumes: z.array(volumeSchema).optional(),
    /** Secrets of type kubernetes.io/dockerconfigjson whose credentials the node pulls the pod's images with. */
    imagePullSecrets: z.array(z.object({ name: z.string().min(1) })).optional(),
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
  });

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
