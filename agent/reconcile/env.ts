import type { DesiredConfig } from '../../shared/protocol/messages.js';
import type { Container } from '../../shared/resources/pod.js';

/** The ConfigMaps and Secrets of the desired set, as the agent looks them up. */
export interface ConfigSources {
  configs: readonly DesiredConfig[];
  secrets: readonly DesiredConfig[];
}

export type EnvResolution = { ok: true; env: string[] } | { ok: false; message: string };

// Kubernetes' IsEnvVarName: envFrom keys that are not valid names are skipped.
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** Whether the container's environment depends on ConfigMaps or Secrets. */
export function usesConfigEnv(c: Container): boolean {
  return (c.envFrom?.length ?? 0) > 0 || (c.env ?? []).some((e) => e.valueFrom !== undefined);
}

function find(list: readonly DesiredConfig[], namespace: string, name: string): DesiredConfig | undefined {
  return list.find((x) => x.namespace === namespace && x.name === name);
}

/** A ConfigMap's entries as text: data as written, binaryData decoded. */
function configEntries(cm: DesiredConfig): Record<string, string> {
  const out: Record<string, string> = { ...cm.data };
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

function secretEntries(s: DesiredConfig): Record<string, string> {
  return Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

/**
 * A container's environment as `NAME=value` strings, as the kubelet builds it: envFrom sources
 * first, in order, then env, each later one overriding. A missing ConfigMap, Secret or key that
 * is not optional fails the whole container, with the kubelet's message for it (the container
 * then waits with CreateContainerConfigError).
 */
export function resolveEnv(namespace: string, c: Container, sources: ConfigSources): EnvResolution {
  const env = new Map<string, string>();
  for (const from of c.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef!;
    const isSecret = Boolean(from.secretRef);
    const obj = find(isSecret ? sources.secrets : sources.configs, namespace, ref.name);
    if (!obj) {
      if (ref.optional) continue;
      return { ok: false, message: `${isSecret ? 'secret' : 'configmap'} "${ref.name}" not found` };
    }
    for (const [key, value] of Object.entries(isSecret ? secretEntries(obj) : configEntries(obj))) {
      const name = `${from.prefix ?? ''}${key}`;
      if (ENV_NAME.test(name)) env.set(name, value);
    }
  }
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.configMapKeyRef ?? e.valueFrom?.secretKeyRef;
    if (!ref) {
      env.set(e.name, e.value ?? '');
      continue;
    }
    const isSecret = Boolean(e.valueFrom?.secretKeyRef);
    const obj = find(isSecret ? sources.secrets : sources.configs, namespace, ref.name);
    const value = obj ? (isSecret ? secretEntries(obj) : configEntries(obj))[ref.key] : undefined;
    if (value === undefined) {
      if (ref.optional) continue;
      if (!obj) return { ok: false, message: `${isSecret ? 'secret' : 'configmap'} "${ref.name}" not found` };
      return { ok: false, message: `couldn't find key ${ref.key} in ${isSecret ? 'Secret' : 'ConfigMap'} ${namespace}/${ref.name}` };
    }
    env.set(e.name, value);
  }
  return { ok: true, env: [...env].map(([k, v]) => `${k}=${v}`) };
}
