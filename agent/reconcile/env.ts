import type { DesiredConfig, DesiredPod } from '../../shared/protocol/messages.js';
import type { ServiceAnnouncement } from '../../shared/protocol/services.js';
import type { Container } from '../../shared/resources/pod.js';
import { nodeDownward, podFieldValue, resourceFieldValue, type DownwardContext } from './downward.js';

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
  return (c.envFrom?.length ?? 0) > 0 || (c.env ?? []).some((e) => e.valueFrom?.configMapKeyRef !== undefined || e.valueFrom?.secretKeyRef !== undefined);
}

/**
 * What a container's environment takes when it is created, beyond its spec and the ConfigMaps
 * and Secrets: the Service environment variables and the downward API's values. None of it is
 * in the container's spec hash (hash.ts): a Service that comes or changes, a label that changes,
 * restarts no running container; a container made later (a new pod, a restart) takes the new values.
 */
export interface CreationEnv {
  pod: DesiredPod;
  /** The Service links (serviceLinks()): the container's own env overrides them. */
  serviceLinks: readonly (readonly [string, string])[];
  downward: DownwardContext;
}

/** Kubernetes' makeEnvVariableName: `my-store` → `MY_STORE`. */
function envName(name: string): string {
  return name.replaceAll('-', '_').toUpperCase();
}

/**
 * The Service environment variables of a pod in `namespace`, as the kubelet makes them
 * (pkg/kubelet/envvars): for each Service of the namespace with a virtual IP, by name,
 * `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT` (the first port), `{NAME}_SERVICE_PORT_{PORTNAME}`
 * for each named port, and the Docker links `{NAME}_PORT` (the first port) and
 * `{NAME}_PORT_{PORT}_{PROTO}` with its `_PROTO`, `_PORT` and `_ADDR`. A headless Service has none.
 */
export function serviceLinks(namespace: string, services: Iterable<ServiceAnnouncement>): [string, string][] {
  const picked = [...services].filter((s) => s.namespace === namespace && s.clusterIP !== 'None' && s.clusterIP !== '' && s.ports.length > 0).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: [string, string][] = [];
  for (const s of picked) {
    const prefix = envName(s.name);
    out.push([`${prefix}_SERVICE_HOST`, s.clusterIP], [`${prefix}_SERVICE_PORT`, String(s.ports[0]!.port)]);
    for (const p of s.ports) if (p.name) out.push([`${prefix}_SERVICE_PORT_${envName(p.name)}`, String(p.port)]);
    s.ports.forEach((p, i) => {
      const proto = p.protocol.toLowerCase();
      const url = `${proto}://${s.clusterIP}:${p.port}`;
      if (i === 0) out.push([`${prefix}_PORT`, url]);
      const portPrefix = `${prefix}_PORT_${p.port}_${p.protocol.toUpperCase()}`;
      out.push([portPrefix, url], [`${portPrefix}_PROTO`, proto], [`${portPrefix}_PORT`, String(p.port)], [`${portPrefix}_ADDR`, s.clusterIP]);
    });
  }
  return out;
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
 *
 * Without `creation` (when the agent plans, and hashes what a container is made of), downward
 * API entries are left out; with it (when the container is created), the Service links come
 * first and the downward API's values take their places.
 */
export function resolveEnv(namespace: string, c: Container, sources: ConfigSources, creation?: CreationEnv): EnvResolution {
  const env = new Map<string, string>(creation?.serviceLinks ?? []);
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
    const { fieldRef, resourceFieldRef } = e.valueFrom ?? {};
    if (fieldRef || resourceFieldRef) {
      if (!creation) continue;
      try {
        const value = fieldRef ? podFieldValue(creation.pod, fieldRef, creation.downward) : resourceFieldValue(creation.pod, resourceFieldRef!, c.name, creation.downward);
        if (value === undefined) return { ok: false, message: `unsupported fieldPath: ${fieldRef!.fieldPath}` };
        env.set(e.name, value);
      } catch (err) {
        return { ok: false, message: (err as Error).message };
      }
      continue;
    }
    const ref = e.valueFrom?.configMapKeyRef ?? e.valueFrom?.secretKeyRef;
    if (!ref) {
      // At creation, `$(NAME)` takes what is defined before it (the kubelet's dependent variables).
      env.set(e.name, creation && e.value ? expandVars(e.value, env) : (e.value ?? ''));
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

/**
 * What a container of `pod` created now takes: the Service links of the services known now
 * (none without a service book, or with `enableServiceLinks: false`) and the node's and the
 * sandbox's facts.
 */
export function creationEnv(pod: DesiredPod, c: Container, podIP: string | undefined, node: { name: string; stateDir: string }, services: Iterable<ServiceAnnouncement> | undefined): CreationEnv {
  const links = services && pod.spec.enableServiceLinks !== false ? serviceLinks(pod.namespace, services) : [];
  // The node's facts (its addresses, its file system's size) are read only for a container that asks for them.
  const asks = (c.env ?? []).some((e) => e.valueFrom?.fieldRef !== undefined || e.valueFrom?.resourceFieldRef !== undefined);
  const downward = asks ? nodeDownward(pod, node.name, node.stateDir, podIP) : { nodeName: node.name, podIP, allocatable: { cpu: '0', memory: '0', 'ephemeral-storage': '0' } };
  return { pod, serviceLinks: links, downward };
}

/**
 * Kubernetes' expansion of `$(NAME)` (third_party/forked/golang/expansion): a defined name is
 * replaced by its value, an undefined one is left as written, and `$$` is a literal `$`.
 */
export function expandVars(text: string, vars: ReadonlyMap<string, string>): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch !== '$' || i + 1 >= text.length) {
      out += ch;
      continue;
    }
    const next = text[i + 1]!;
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const end = text.indexOf(')', i + 2);
      if (end < 0) {
        out += text.slice(i);
        break;
      }
      const name = text.slice(i + 2, end);
      const value = vars.get(name);
      out += value ?? `$(${name})`;
      i = end;
    } else out += ch;
  }
  return out;
}

/** A container's command and args with `$(NAME)` expanded from its environment (`NAME=value` strings), as the kubelet does. */
export function expandCommand(list: readonly string[] | undefined, env: readonly string[]): string[] | undefined {
  if (!list) return undefined;
  const vars = new Map(env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const));
  return list.map((x) => expandVars(x, vars));
}
