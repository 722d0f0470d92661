import * as z from 'zod';
import { validateDns1123Label, validateDns1123Subdomain, validateEnvVarName } from '../labels/validation.js';
import { validateConfigKey } from './config.js';
import { fieldSelectorSchema, resourceFieldSelectorSchema } from './downward.js';

// The parts of a pod spec that bring configuration and storage in: env from ConfigMaps and
// Secrets, volumes and their mounts, and the container's security context (Kubernetes core/v1).

const objectName = z.string({ error: 'is required' }).superRefine((v, ctx) => {
  for (const message of validateDns1123Subdomain(v)) ctx.addIssue({ code: 'custom', message: `invalid name '${v}': ${message}` });
});

const configKey = z.string({ error: 'is required' }).superRefine((v, ctx) => {
  for (const message of validateConfigKey(v)) ctx.addIssue({ code: 'custom', message: `invalid key '${v}': ${message}` });
});

const keyRef = z.object({ name: objectName, key: configKey, optional: z.boolean().optional() });

const envVarName = z.string({ error: 'is required' }).min(1, 'is required').superRefine((v, ctx) => {
  for (const message of validateEnvVarName(v)) ctx.addIssue({ code: 'custom', message: `invalid name '${v}': ${message}` });
});

export const envVarSchema = z
  .object({
    name: envVarName,
    value: z.string().optional(),
    valueFrom: z
      .object({
        configMapKeyRef: keyRef.optional(),
        secretKeyRef: keyRef.optional(),
        // The downward API: a field of the pod, or a resource of a container (shared/resources/downward.ts).
        fieldRef: fieldSelectorSchema(false).optional(),
        resourceFieldRef: resourceFieldSelectorSchema(false).optional(),
      })
      .refine((v) => [v.configMapKeyRef, v.secretKeyRef, v.fieldRef, v.resourceFieldRef].filter(Boolean).length === 1, 'must have exactly one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef')
      .optional(),
  })
  .refine((e) => e.value === undefined || e.valueFrom === undefined, { message: 'may not have both value and valueFrom', path: ['valueFrom'] });

const sourceRef = z.object({ name: objectName, optional: z.boolean().optional() });

export const envFromSchema = z
  .object({ configMapRef: sourceRef.optional(), secretRef: sourceRef.optional(), prefix: envVarName.optional() })
  .refine((v) => Boolean(v.configMapRef) !== Boolean(v.secretRef), 'must have exactly one of configMapRef or secretRef');

/** Relative paths inside a volume: no `..` element and not absolute, as Kubernetes' validateLocalDescendingPath. */
const relativePath = z.string().min(1, 'is required').superRefine((p, ctx) => {
  if (p.startsWith('/')) ctx.addIssue({ code: 'custom', message: 'must be a relative path' });
  if (p.split('/').includes('..')) ctx.addIssue({ code: 'custom', message: "must not contain '..'" });
  // The kubelet keeps its own `..data` link and `..<timestamp>` folders at the top of the volume.
  else if (p.startsWith('..')) ctx.addIssue({ code: 'custom', message: "must not start with '..'" });
});

const keyToPath = z.array(z.object({ key: configKey, path: relativePath, mode: z.number().int().min(0).max(0o777).optional() }));

/** The device binds a mount as `source:target[:ro]`: a ':' in either path would be read as a separator. */
const BIND_COLON = "must not contain ':' (the engine's bind syntax, source:target:options, cannot hold it)";

/** Kubernetes' validatePathNoBacksteps: a host path with a `..` element could climb out of what it names. */
const hostPathSchema = z.string({ error: 'is required' }).startsWith('/', 'must be an absolute path').superRefine((p, ctx) => {
  if (p.split('/').includes('..')) ctx.addIssue({ code: 'custom', message: "must not contain '..'" });
  if (p.includes(':')) ctx.addIssue({ code: 'custom', message: BIND_COLON });
});


const fileMode = z.number().int().min(0).max(0o777);

/** One file of a downwardAPI volume: a field of the pod, or a resource of one of its containers. */
const downwardAPIFile = z
  .object({ path: relativePath, fieldRef: fieldSelectorSchema(true).optional(), resourceFieldRef: resourceFieldSelectorSchema(true).optional(), mode: fileMode.optional() })
  .refine((f) => Boolean(f.fieldRef) !== Boolean(f.resourceFieldRef), 'must have exactly one of fieldRef or resourceFieldRef');

const HOST_PATH_TYPES = ['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice'] as const;

export const volumeSchema = z
  .object({
    name: z.string({ error: 'is required' }).superRefine((v, ctx) => {
      for (const message of validateDns1123Label(v)) ctx.addIssue({ code: 'custom', message: `invalid volume name '${v}': ${message}` });
    }),
    // medium (tmpfs) and sizeLimit are not supported yet: left out, so a manifest using them is warned.
    emptyDir: z.object({}).optional(),
    hostPath: z.object({ path: hostPathSchema, type: z.enum(HOST_PATH_TYPES).optional() }).optional(),
    configMap: z.object({ name: objectName, items: keyToPath.optional(), optional: z.boolean().optional(), defaultMode: z.number().int().min(0).max(0o777).optional() }).optional(),
    secret: z.object({ secretName: objectName, items: keyToPath.optional(), optional: z.boolean().optional(), defaultMode: z.number().int().min(0).max(0o777).optional() }).optional(),
    downwardAPI: z.object({ items: z.array(downwardAPIFile).optional(), defaultMode: fileMode.optional() }).optional(),
  })
  .refine((v) => [v.emptyDir, v.hostPath, v.configMap, v.secret, v.downwardAPI].filter(Boolean).length === 1, 'must have exactly one of emptyDir, hostPath, configMap, secret or downwardAPI');

export const volumeMountSchema = z.object({
  name: z.string().min(1, 'is required'),
  mountPath: z
    .string()
    .startsWith('/', 'must be an absolute path')
    .superRefine((p, ctx) => {
      if (p.includes(':')) ctx.addIssue({ code: 'custom', message: BIND_COLON });
      // The engine refuses a mount over the container's root.
      if (/^\/+$/.test(p)) ctx.addIssue({ code: 'custom', message: "must not be '/'" });
    }),
  readOnly: z.boolean().optional(),
  subPath: relativePath
    .superRefine((p, ctx) => {
      if (p.includes(':')) ctx.addIssue({ code: 'custom', message: BIND_COLON });
    })
    .optional(),
});

export const securityContextSchema = z.object({
  privileged: z.boolean().optional(),
  runAsUser: z.number().int().min(0).optional(),
  runAsGroup: z.number().int().min(0).optional(),
  readOnlyRootFilesystem: z.boolean().optional(),
  capabilities: z.object({ add: z.array(z.string()).optional(), drop: z.array(z.string()).optional() }).optional(),
});

export type EnvVar = z.infer<typeof envVarSchema>;
export type EnvFromSource = z.infer<typeof envFromSchema>;
export type Volume = z.infer<typeof volumeSchema>;
export type VolumeMount = z.infer<typeof volumeMountSchema>;
export type SecurityContext = z.infer<typeof securityContextSchema>;

/** The ConfigMaps and Secrets a pod spec refers to, by name (env, envFrom, volumes, imagePullSecrets). */
export function referencedConfig(spec: { containers: { env?: EnvVar[]; envFrom?: EnvFromSource[] }[]; volumes?: Volume[]; imagePullSecrets?: { name: string }[] }): { configMaps: Set<string>; secrets: Set<string> } {
  const configMaps = new Set<string>();
  const secrets = new Set<string>();
  for (const c of spec.containers) {
    for (const e of c.env ?? []) {
      if (e.valueFrom?.configMapKeyRef) configMaps.add(e.valueFrom.configMapKeyRef.name);
      if (e.valueFrom?.secretKeyRef) secrets.add(e.valueFrom.secretKeyRef.name);
    }
    for (const f of c.envFrom ?? []) {
      if (f.configMapRef) configMaps.add(f.configMapRef.name);
      if (f.secretRef) secrets.add(f.secretRef.name);
    }
  }
  for (const v of spec.volumes ?? []) {
    if (v.configMap) configMaps.add(v.configMap.name);
    if (v.secret) secrets.add(v.secret.secretName);
  }
  for (const ref of spec.imagePullSecrets ?? []) secrets.add(ref.name);
  return { configMaps, secrets };
}
