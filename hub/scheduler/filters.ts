import type { Taint } from '../../shared/resources/node.js';
import type { Toleration } from '../../shared/resources/scheduling.js';
import { tolerates } from '../controllers/nodelifecycle-taints.js';
import { domainOf, type NodeState, type SchedulerCache } from './cache.js';
import { anyNodeTermMatches } from './node-terms.js';
import { termSelects, type PodRequirements } from './requirements.js';
import type { DomainCounts } from './topology.js';

/**
 * The filters: whether a pod may go to a node, and if not, why, in the words of the Kubernetes
 * scheduler's plugins, which run in this order and stop at the first that fails: readiness,
 * NodeUnschedulable, TaintToleration, NodeAffinity (nodeSelector and required node affinity),
 * NodePorts, NodeResourcesFit, InterPodAffinity.
 */

export const Reasons = {
  notReady: 'node(s) were not ready',
  unschedulable: 'node(s) were unschedulable',
  nodeAffinity: "node(s) didn't match Pod's node affinity/selector",
  hostPorts: "node(s) didn't have free ports for the requested pod ports",
  cpu: 'Insufficient cpu',
  memory: 'Insufficient memory',
  pods: 'Too many pods',
  existingAntiAffinity: "node(s) didn't satisfy existing pods anti-affinity rules",
  antiAffinity: "node(s) didn't match pod anti-affinity rules",
  affinity: "node(s) didn't match pod affinity rules",
} as const;

/** Kubernetes' TaintToleration reason names the first taint the pod does not tolerate. */
export function untoleratedTaintReason(taint: Taint): string {
  return `node(s) had untolerated taint {${taint.key}: ${taint.value ?? ''}}`;
}

/** One reason, or several (NodeResourcesFit names every resource that is short). */
export type Unfit = string | readonly string[];

/** What one scheduling attempt works out once for its pod, before looking at any node (a PreFilter). */
export interface Cycle {
  readonly req: PodRequirements;
  /** The pod tolerates the node.kubernetes.io/unschedulable:NoSchedule taint that a cordon stands for. */
  readonly toleratesCordon: boolean;
  /** Bound pods selected by each required affinity term, per domain. */
  readonly affinity: readonly DomainCounts[];
  /**
   * Kubernetes lets the first pod of a group that is affine to itself go anywhere its
   * topology keys exist: no pod matches any of its terms yet, and it matches them all itself.
   */
  readonly affinityWaived: boolean;
  readonly antiAffinity: readonly DomainCounts[];
  /** Required anti-affinity terms of bound pods that select this pod. */
  readonly existingAntiAffinity: readonly DomainCounts[];
  /** For scoring: the pod's preferred terms (weight × pods) and bound pods' terms that select it (summed weights). */
  readonly preferred: readonly { readonly counts: DomainCounts; readonly weight: number }[];
  /** Some required inter-pod rule applies (the filter has work to do). */
  readonly interPod: boolean;
}

const CORDON_TAINT: Taint = { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' };

export function tolerated(tolerations: readonly Toleration[], taint: Taint): boolean {
  for (const t of tolerations) if (tolerates(t, taint)) return true;
  return false;
}

export function prepareCycle(cache: SchedulerCache, req: PodRequirements): Cycle {
  const affinity = req.requiredAffinity.map((t) => cache.matchingCounts(t));
  const existingAntiAffinity: DomainCounts[] = [];
  cache.carriedAntiAffinity.forEachSelecting(req.namespace, req.labels, (e) => existingAntiAffinity.push(e));
  const preferred = req.preferredPodTerms.map((t) => ({ counts: cache.matchingCounts(t), weight: t.weight }));
  cache.carriedPreferences.forEachSelecting(req.namespace, req.labels, (e) => preferred.push({ counts: e, weight: 1 }));
  const antiAffinity = req.requiredAntiAffinity.map((t) => cache.matchingCounts(t));
  return {
    req,
    toleratesCordon: tolerated(req.tolerations, CORDON_TAINT),
    affinity,
    affinityWaived: affinity.length > 0 && affinity.every((c) => c.placed === 0) && req.requiredAffinity.every((t) => termSelects(t, req.namespace, req.labels)),
    antiAffinity,
    existingAntiAffinity,
    preferred,
    interPod: affinity.length + antiAffinity.length + existingAntiAffinity.length > 0,
  };
}

function nodeAffinityHolds(req: PodRequirements, node: NodeState): boolean {
  const labels = node.labels;
  const selector = req.nodeSelector;
  for (let i = 0; i < selector.length; i++) {
    const [key, value] = selector[i]!;
    if (!Object.hasOwn(labels, key) || labels[key] !== value) return false;
  }
  return req.requiredNodeTerms === undefined || anyNodeTermMatches(req.requiredNodeTerms, node.name, labels);
}

function resourcesShort(req: PodRequirements, node: NodeState): Unfit | undefined {
  const usage = node.usage;
  const pods = usage.pods + 1 > node.maxPods;
  // As NodeResourcesFit: a resource the pod does not request never keeps it off a node.
  const cpu = req.cpuMilli > 0 && usage.cpuMilli + req.cpuMilli > node.cpuMilli;
  const memory = req.memoryBytes > 0 && usage.memoryBytes + req.memoryBytes > node.memoryBytes;
  if (!pods && !cpu && !memory) return undefined;
  const reasons: string[] = [];
  if (pods) reasons.push(Reasons.pods);
  if (cpu) reasons.push(Reasons.cpu);
  if (memory) reasons.push(Reasons.memory);
  return reasons.length === 1 ? reasons[0] : reasons;
}

/** InterPodAffinity, in its order: the pod's affinity, its anti-affinity, then that of the pods already there. */
function interPodUnfit(c: Cycle, node: NodeState): Unfit | undefined {
  let podsExist = true;
  for (const e of c.affinity) {
    const domain = domainOf(node, e.term.topologyKey);
    // A node without the topology key is in no domain: never affine.
    if (domain === undefined) return Reasons.affinity;
    if (e.in(domain) <= 0) podsExist = false;
  }
  if (!podsExist && !c.affinityWaived) return Reasons.affinity;
  for (const e of c.antiAffinity) {
    if (e.in(domainOf(node, e.term.topologyKey)) > 0) return Reasons.antiAffinity;
  }
  for (const e of c.existingAntiAffinity) {
    if (e.in(domainOf(node, e.term.topologyKey)) > 0) return Reasons.existingAntiAffinity;
  }
  return undefined;
}

/** Why the pod of `c` cannot go to `node`, or undefined when it can. */
export function unfit(c: Cycle, node: NodeState): Unfit | undefined {
  if (!node.ready) return Reasons.notReady;
  if (node.unschedulable && !c.toleratesCordon) return Reasons.unschedulable;
  const req = c.req;
  // Index loops and length checks: this runs for hundreds of nodes per pod.
  const taints = node.hardTaints;
  for (let i = 0; i < taints.length; i++) {
    if (!tolerated(req.tolerations, taints[i]!)) return untoleratedTaintReason(taints[i]!);
  }
  if ((req.nodeSelector.length > 0 || req.requiredNodeTerms !== undefined) && !nodeAffinityHolds(req, node)) return Reasons.nodeAffinity;
  const ports = req.hostPorts;
  for (let i = 0; i < ports.length; i++) if (node.usage.hostPorts.has(ports[i]!)) return Reasons.hostPorts;
  const short = resourcesShort(req, node);
  if (short !== undefined) return short;
  return c.interPod ? interPodUnfit(c, node) : undefined;
}

/**
 * Kubernetes' FitError message: "0/12 nodes are available: 5 node(s) didn't match Pod's node
 * affinity/selector, 7 Insufficient memory." — each reason with its count, sorted as strings.
 */
export function fitErrorMessage(totalNodes: number, reasons: ReadonlyMap<string, number>): string {
  const detail = [...reasons].map(([why, n]) => `${n} ${why}`).sort().join(', ');
  return `0/${totalNodes} nodes are available${detail ? `: ${detail}` : ''}.`;
}

/** Every node's reason, counted (the slow path, taken only when no node fits). */
export function countReasons(c: Cycle, nodes: readonly NodeState[]): Map<string, number> {
  const reasons = new Map<string, number>();
  const count = (why: string) => reasons.set(why, (reasons.get(why) ?? 0) + 1);
  for (const node of nodes) {
    const why = unfit(c, node);
    if (why === undefined) continue;
    if (typeof why === 'string') count(why);
    else for (const w of why) count(w);
  }
  return reasons;
}
