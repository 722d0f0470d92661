import { domainOf, type NodeState } from './cache.js';
import { tolerated, type Cycle } from './filters.js';
import { nodeTermMatches } from './node-terms.js';
import type { PodRequirements } from './requirements.js';

/**
 * The scores: each 0..100 per feasible node, weighted and summed, the highest sum wins. The
 * placement strategy is Docker Swarm's, chosen per pod (spec.schedulingStrategy); the preferences
 * are Kubernetes' score plugins, normalised as they normalise them.
 */

/** Weights of the scores in the sum, after the Kubernetes scheduler's default plugin weights. */
export const ScoreWeights = { strategy: 1, nodeAffinity: 2, interPodAffinity: 2, taints: 3 } as const;

/** The pod limit the fill of a node is measured against when the node reports none (the kubelet's default). */
const DEFAULT_MAX_PODS = 110;

/**
 * How full the node would be with the pod on it, 0..1: the mean of the used fractions of cpu and
 * memory (where the node reports them) and of its pod slots.
 */
export function fillAfter(req: PodRequirements, node: NodeState): number {
  const u = node.usage;
  let sum = 0;
  let n = 0;
  if (Number.isFinite(node.cpuMilli) && node.cpuMilli > 0) {
    sum += Math.min(1, (u.cpuMilli + req.cpuMilli) / node.cpuMilli);
    n++;
  }
  if (Number.isFinite(node.memoryBytes) && node.memoryBytes > 0) {
    sum += Math.min(1, (u.memoryBytes + req.memoryBytes) / node.memoryBytes);
    n++;
  }
  const maxPods = Number.isFinite(node.maxPods) && node.maxPods > 0 ? node.maxPods : DEFAULT_MAX_PODS;
  sum += Math.min(1, (u.pods + 1) / maxPods);
  n++;
  return sum / n;
}

/** spread: the emptiest node (fewest pods, least requested); binpack: the fullest that still fits; random: any. */
export function strategyScore(req: PodRequirements, node: NodeState, random: () => number): number {
  switch (req.strategy) {
    case 'binpack':
      return 100 * fillAfter(req, node);
    case 'random':
      return 100 * random();
    default:
      return 100 * (1 - fillAfter(req, node));
  }
}

/** Sum of the weights of the preferred node affinity terms the node matches (NodeAffinity's raw score). */
export function nodePreferenceRaw(req: PodRequirements, node: NodeState): number {
  let sum = 0;
  for (const p of req.preferredNodeTerms) if (nodeTermMatches(p.term, node.name, node.labels)) sum += p.weight;
  return sum;
}

/** Weighted pods of the preferred (anti-)affinity terms in the node's domains (InterPodAffinity's raw score). */
export function interPodRaw(c: Cycle, node: NodeState): number {
  let sum = 0;
  for (const p of c.preferred) sum += p.weight * p.counts.in(domainOf(node, p.counts.term.topologyKey));
  return sum;
}

/** PreferNoSchedule taints the pod does not tolerate (TaintToleration's raw score: fewer is better). */
export function softTaintsRaw(req: PodRequirements, node: NodeState): number {
  let n = 0;
  for (const t of node.softTaints) if (!tolerated(req.tolerations, t)) n++;
  return n;
}

/** The scores of the feasible nodes, in their order. */
export function scoreNodes(c: Cycle, nodes: readonly NodeState[], random: () => number): Float64Array {
  const req = c.req;
  const total = new Float64Array(nodes.length);
  for (let i = 0; i < nodes.length; i++) total[i] = ScoreWeights.strategy * strategyScore(req, nodes[i]!, random);
  if (req.preferredNodeTerms.length > 0) {
    // DefaultNormalizeScore: raw × 100 / the highest raw.
    addNormalised(total, nodes.map((n) => nodePreferenceRaw(req, n)), ScoreWeights.nodeAffinity, 'max');
  }
  if (c.preferred.length > 0) {
    // InterPodAffinity: (raw - min) × 100 / (max - min).
    addNormalised(total, nodes.map((n) => interPodRaw(c, n)), ScoreWeights.interPodAffinity, 'minmax');
  }
  if (nodes.some((n) => n.softTaints.length > 0)) {
    // Reversed: the node with the most untolerated PreferNoSchedule taints scores 0.
    addNormalised(total, nodes.map((n) => softTaintsRaw(req, n)), ScoreWeights.taints, 'reverse');
  }
  return total;
}

function addNormalised(total: Float64Array, raw: number[], weight: number, how: 'max' | 'minmax' | 'reverse'): void {
  let max = -Infinity;
  let min = Infinity;
  for (const r of raw) {
    if (r > max) max = r;
    if (r < min) min = r;
  }
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i]!;
    let score: number;
    if (how === 'max') score = max > 0 ? (100 * r) / max : 0;
    else if (how === 'minmax') score = max > min ? (100 * (r - min)) / (max - min) : 0;
    else score = max > 0 ? 100 - (100 * r) / max : 100;
    total[i]! += weight * score;
  }
}

/** The best node: highest score, ties to the name that sorts first (so placement is predictable). */
export function pickNode(c: Cycle, nodes: readonly NodeState[], random: () => number): NodeState {
  if (nodes.length === 1) return nodes[0]!;
  const scores = scoreNodes(c, nodes, random);
  let best = 0;
  for (let i = 1; i < nodes.length; i++) {
    const d = scores[i]! - scores[best]!;
    if (d > 0 || (d === 0 && nodes[i]!.name < nodes[best]!.name)) best = i;
  }
  return nodes[best]!;
}
