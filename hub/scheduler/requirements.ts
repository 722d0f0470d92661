import { labelSelectorAsSelector, SelectorError, selectorToString, type Selector } from '../../shared/labels/selector.js';
import { parseQuantity } from '../../shared/quantities/quantity.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { PodAffinityTerm, SchedulingStrategy, Toleration } from '../../shared/resources/scheduling.js';
import type { StoredObject } from '../store/types.js';
import { PodSpecError } from './errors.js';
import { compileNodeTerm, type NodeTerm } from './node-terms.js';

/**
 * What the scheduler needs to know of a pod, read once from its spec: the sum of its requests,
 * its host ports, and its placement rules in a form that is cheap to test against ten thousand
 * nodes (Kubernetes' framework.PodInfo plays the same part).
 */

/** A pod (anti-)affinity term, resolved against the pod that carries it. */
export interface PodTerm {
  /** The namespaces whose pods the term looks at: those it names, or its own pod's. */
  readonly namespaces: readonly string[];
  readonly selector: Selector;
  readonly topologyKey: string;
  /** Terms with the same signature select the same pods, and share their counts in the cache. */
  readonly signature: string;
}

/** A preferred term: the weight is negative for anti-affinity. */
export interface WeightedPodTerm extends PodTerm {
  readonly weight: number;
}

export interface PodRequirements {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly cpuMilli: number;
  readonly memoryBytes: number;
  /** "TCP/8080": a host port and protocol the pod takes on its node. */
  readonly hostPorts: readonly string[];
  /** The nodeSelector as key/value pairs (every one must hold). */
  readonly nodeSelector: readonly (readonly [string, string])[];
  /** requiredDuringScheduling node affinity: terms ORed; undefined when there is none. */
  readonly requiredNodeTerms: readonly NodeTerm[] | undefined;
  readonly preferredNodeTerms: readonly { readonly weight: number; readonly term: NodeTerm }[];
  readonly tolerations: readonly Toleration[];
  readonly requiredAffinity: readonly PodTerm[];
  readonly requiredAntiAffinity: readonly PodTerm[];
  /** Preferred affinity (positive weight) and anti-affinity (negative weight) terms. */
  readonly preferredPodTerms: readonly WeightedPodTerm[];
  readonly strategy: SchedulingStrategy;
}

/** What of a pod scheduling reads besides its status: its identity, spec (generation) and labels. */
export function podVersion(pod: StoredObject): string {
  return `${pod.metadata.uid}/${pod.metadata.generation}/${JSON.stringify(pod.metadata.labels ?? {})}`;
}

export function podPhase(pod: StoredObject): PodStatus['phase'] | undefined {
  return (pod.status as PodStatus | undefined)?.phase;
}

/** Succeeded and Failed pods hold nothing on their node any more (Kubernetes' scheduler ignores them). */
export function isTerminal(pod: StoredObject): boolean {
  const phase = podPhase(pod);
  return phase === 'Succeeded' || phase === 'Failed';
}

// Requests repeat across thousands of pods of a workload: parse each distinct text once.
const parsed = new Map<string, number>();
function amount(text: string | number, unit: 'milli' | 'value', field: string): number {
  const memo = `${unit}:${text}`;
  const known = parsed.get(memo);
  if (known !== undefined) return known;
  let n: number;
  try {
    const q = parseQuantity(text);
    n = unit === 'milli' ? q.milli() : q.value();
  } catch (err) {
    throw new PodSpecError(field, (err as Error).message);
  }
  if (parsed.size > 10_000) parsed.clear();
  parsed.set(memo, n);
  return n;
}

/**
 * The pod's requests: the sum over its containers, a container's limit standing in for a request
 * it does not give (as Kubernetes defaults requests to limits).
 */
function requests(spec: PodSpec): { cpuMilli: number; memoryBytes: number } {
  let cpuMilli = 0;
  let memoryBytes = 0;
  spec.containers.forEach((c, i) => {
    const r = c.resources;
    if (!r) return;
    const cpu = r.requests?.cpu ?? r.limits?.cpu;
    const memory = r.requests?.memory ?? r.limits?.memory;
    const at = (which: string) => `spec.containers[${i}].resources.${r.requests?.[which] !== undefined ? 'requests' : 'limits'}.${which}`;
    if (cpu !== undefined) cpuMilli += amount(cpu, 'milli', at('cpu'));
    if (memory !== undefined) memoryBytes += amount(memory, 'value', at('memory'));
  });
  return { cpuMilli, memoryBytes };
}

/** Host ports as "PROTOCOL/port"; with hostNetwork every container port is one (as the API defaults hostPort then). */
function hostPorts(spec: PodSpec): string[] {
  const ports: string[] = [];
  for (const c of spec.containers) {
    for (const p of c.ports ?? []) {
      const port = p.hostPort ?? (spec.hostNetwork ? p.containerPort : undefined);
      if (port !== undefined) ports.push(`${p.protocol ?? 'TCP'}/${port}`);
    }
  }
  return ports;
}

function podTerm(term: PodAffinityTerm, ownNamespace: string, field: string): PodTerm {
  let selector: Selector;
  try {
    // A term without a labelSelector selects no pod, as in Kubernetes.
    selector = labelSelectorAsSelector(term.labelSelector);
  } catch (err) {
    if (err instanceof SelectorError) throw new PodSpecError(`${field}.labelSelector${err.field ? `.${err.field}` : ''}`, err.message);
    throw err;
  }
  const namespaces = term.namespaces && term.namespaces.length > 0 ? [...new Set(term.namespaces)].sort() : [ownNamespace];
  if (!term.topologyKey) throw new PodSpecError(`${field}.topologyKey`, 'is required');
  const signature = `${namespaces.join(',')}|${selector.matchesNothing ? '<nothing>' : selectorToString(selector)}|${term.topologyKey}`;
  return { namespaces, selector, topologyKey: term.topologyKey, signature };
}

/** Whether a pod (namespace and labels) is one the term selects. */
export function termSelects(term: PodTerm, namespace: string, labels: Readonly<Record<string, string>>): boolean {
  if (!term.namespaces.includes(namespace)) return false;
  const sel = term.selector;
  if (sel.matchesNothing) return false;
  for (const r of sel.requirements) {
    const present = Object.hasOwn(labels, r.key);
    const value = labels[r.key];
    switch (r.operator) {
      case 'In':
        if (!present || !r.values.includes(value!)) return false;
        break;
      case 'NotIn':
        if (present && r.values.includes(value!)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
    }
  }
  return true;
}

/**
 * Reads a pod for scheduling.
 * @throws PodSpecError naming the field, for a spec no node could be chosen for (a malformed
 *   quantity, selector or node selector requirement).
 */
export function podRequirements(pod: StoredObject): PodRequirements {
  const spec = pod.spec as PodSpec;
  const namespace = pod.metadata.namespace ?? 'default';
  const affinity = spec.affinity;
  const nodeAffinity = affinity?.nodeAffinity;
  const required = nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  const base = 'spec.affinity';
  const termsOf = (terms: PodAffinityTerm[] | undefined, field: string) => (terms ?? []).map((t, i) => podTerm(t, namespace, `${field}[${i}]`));
  const preferred = (which: 'podAffinity' | 'podAntiAffinity', sign: number): WeightedPodTerm[] =>
    (affinity?.[which]?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p, i) => ({
      ...podTerm(p.podAffinityTerm, namespace, `${base}.${which}.preferredDuringSchedulingIgnoredDuringExecution[${i}].podAffinityTerm`),
      weight: sign * p.weight,
    }));
  return {
    namespace,
    name: pod.metadata.name,
    uid: pod.metadata.uid,
    labels: pod.metadata.labels ?? {},
    ...requests(spec),
    hostPorts: hostPorts(spec),
    nodeSelector: Object.entries(spec.nodeSelector ?? {}),
    requiredNodeTerms: required?.nodeSelectorTerms.map((t, i) => compileNodeTerm(t, `${base}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[${i}]`)),
    preferredNodeTerms: (nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p, i) => ({
      weight: p.weight,
      term: compileNodeTerm(p.preference, `${base}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[${i}].preference`),
    })),
    tolerations: spec.tolerations ?? [],
    requiredAffinity: termsOf(affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution, `${base}.podAffinity.requiredDuringSchedulingIgnoredDuringExecution`),
    requiredAntiAffinity: termsOf(affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution, `${base}.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution`),
    preferredPodTerms: [...preferred('podAffinity', 1), ...preferred('podAntiAffinity', -1)],
    strategy: spec.schedulingStrategy ?? 'spread',
  };
}

/**
 * What a pod already bound to a node holds there. Its resources always count; a malformed
 * affinity term of its own is left out (the pod is placed already; only its terms' effect on
 * later pods is lost), so one bad object never stops the node's accounting.
 */
export function boundPodRequirements(pod: StoredObject): { req: PodRequirements; problem?: string } {
  try {
    return { req: podRequirements(pod) };
  } catch (err) {
    const spec = pod.spec as PodSpec;
    let counted = { cpuMilli: 0, memoryBytes: 0 };
    try {
      counted = requests(spec);
    } catch {
      // Counted as requesting nothing; the message below says why.
    }
    const req: PodRequirements = {
      namespace: pod.metadata.namespace ?? 'default',
      name: pod.metadata.name,
      uid: pod.metadata.uid,
      labels: pod.metadata.labels ?? {},
      ...counted,
      hostPorts: hostPorts(spec),
      nodeSelector: [],
      requiredNodeTerms: undefined,
      preferredNodeTerms: [],
      tolerations: [],
      requiredAffinity: [],
      requiredAntiAffinity: [],
      preferredPodTerms: [],
      strategy: 'spread',
    };
    return { req, problem: (err as Error).message };
  }
}
