import { parseQuantity } from '../../shared/quantities/quantity.js';
import { isNodeReady, type NodeSpec, type NodeStatus, type Taint } from '../../shared/resources/node.js';
import { HOSTNAME_LABEL } from '../../shared/resources/scheduling.js';
import type { StoredObject } from '../store/types.js';
import { termSelects, type PodRequirements, type PodTerm } from './requirements.js';
import { DomainCounts, TermIndex } from './topology.js';

/**
 * The scheduler's picture of the fleet, in memory and kept current from store watches, as the
 * Kubernetes scheduler cache is: nodes with what scheduling reads of them, and per node what the
 * pods bound there hold (requests, pod count, host ports), plus the pods' labels and terms counted
 * per topology domain. A pod the scheduler has just placed is counted at once ("assumed"), before
 * its binding is written and seen back through the watch.
 */

/** What the pods bound to a node hold there. */
export class NodeUsage {
  cpuMilli = 0;
  memoryBytes = 0;
  pods = 0;
  /** "TCP/80" → how many pods use it (more than one only for pods bound past the scheduler). */
  readonly hostPorts = new Map<string, number>();
  readonly members = new Set<BoundPod>();
}

export interface BoundPod {
  readonly key: string;
  readonly req: PodRequirements;
  readonly nodeName: string;
  /** Placed by the scheduler, its binding not yet seen through the watch. */
  assumed: boolean;
  /** podVersion() of the object counted ('' while assumed): a status update changes nothing here. */
  version: string;
}

export interface NodeState {
  readonly name: string;
  labels: Readonly<Record<string, string>>;
  ready: boolean;
  unschedulable: boolean;
  /** NoSchedule and NoExecute taints: a pod must tolerate every one. */
  hardTaints: readonly Taint[];
  /** PreferNoSchedule taints: only lower the node's score. */
  softTaints: readonly Taint[];
  /** Allocatable (capacity when absent); Infinity when the node reports none. */
  cpuMilli: number;
  memoryBytes: number;
  maxPods: number;
  readonly usage: NodeUsage;
  /** What of the object matters to scheduling, to tell a relevant change from a heartbeat. */
  signature: string;
  /** Index in the cache's node list. */
  slot: number;
}

/** The value of a node label, taking `kubernetes.io/hostname` as the node's name when the label is absent. */
export function domainOf(node: NodeState, topologyKey: string): string | undefined {
  if (Object.hasOwn(node.labels, topologyKey)) return node.labels[topologyKey];
  return topologyKey === HOSTNAME_LABEL ? node.name : undefined;
}

function allocatable(status: NodeStatus | undefined, resource: string, unit: 'milli' | 'value'): number {
  const text = status?.allocatable?.[resource] ?? status?.capacity?.[resource];
  if (text === undefined) return Infinity;
  try {
    const q = parseQuantity(text);
    return unit === 'milli' ? q.milli() : q.value();
  } catch {
    // The agent's report is validated as text only: an unreadable figure limits nothing.
    return Infinity;
  }
}

const PAIR = '\u0000';
/** Entries of terms that incoming pods asked about; rebuilt on demand past this many. */
const MAX_MATCHING_ENTRIES = 10_000;

export class SchedulerCache {
  private readonly nodes = new Map<string, NodeState>();
  /** Every node, in no particular order (the scheduler scans it from a rotating start). */
  readonly nodeList: NodeState[] = [];
  private readonly nodesByLabel = new Map<string, NodeState[]>();
  private readonly usages = new Map<string, NodeUsage>();
  private readonly pods = new Map<string, BoundPod>();
  /** For the terms of pods being scheduled: the bound pods each selects, per domain. */
  private readonly matching = new TermIndex();
  /** Required anti-affinity terms that bound pods carry, per domain of the carrier. */
  readonly carriedAntiAffinity = new TermIndex();
  /** Preferred (anti-)affinity terms that bound pods carry: sums of their signed weights per domain. */
  readonly carriedPreferences = new TermIndex();

  get nodeCount(): number {
    return this.nodeList.length;
  }

  node(name: string): NodeState | undefined {
    return this.nodes.get(name);
  }

  pod(key: string): BoundPod | undefined {
    return this.pods.get(key);
  }

  /** The keys of the pods counted on `nodeName` (a node that has gone keeps its pods here until they go). */
  podKeysOn(nodeName: string): string[] {
    return [...(this.usages.get(nodeName)?.members ?? [])].map((p) => p.key);
  }

  /** The nodes that carry label `key` = `value`. */
  nodesWithLabel(key: string, value: string): readonly NodeState[] {
    return this.nodesByLabel.get(key + PAIR + value) ?? [];
  }

  /** Adds or refreshes a node; says whether anything scheduling reads of it changed. */
  upsertNode(obj: StoredObject): boolean {
    const name = obj.metadata.name;
    const spec = (obj.spec as NodeSpec | undefined) ?? {};
    const status = obj.status as NodeStatus | undefined;
    const labels = obj.metadata.labels ?? {};
    const ready = isNodeReady(status);
    const signature = `${ready}|${spec.unschedulable === true}|${JSON.stringify(labels)}|${JSON.stringify(spec.taints ?? [])}|${JSON.stringify(status?.allocatable ?? status?.capacity ?? {})}`;
    const existing = this.nodes.get(name);
    if (existing?.signature === signature) return false;
    const taints = spec.taints ?? [];
    const fields = {
      ready,
      unschedulable: spec.unschedulable === true,
      hardTaints: taints.filter((t) => t.effect !== 'PreferNoSchedule'),
      softTaints: taints.filter((t) => t.effect === 'PreferNoSchedule'),
      cpuMilli: allocatable(status, 'cpu', 'milli'),
      memoryBytes: allocatable(status, 'memory', 'value'),
      maxPods: allocatable(status, 'pods', 'value'),
      signature,
    };
    if (!existing) {
      const node: NodeState = { name, labels, ...fields, usage: this.usageOf(name), slot: this.nodeList.length };
      this.nodes.set(name, node);
      this.nodeList.push(node);
      this.indexLabels(node, 1);
      for (const p of node.usage.members) this.place(p, node, 1);
      return true;
    }
    Object.assign(existing, fields);
    if (JSON.stringify(existing.labels) !== JSON.stringify(labels)) {
      // The node's pods move to the domains of its new labels.
      for (const p of existing.usage.members) this.place(p, existing, -1);
      this.indexLabels(existing, -1);
      existing.labels = labels;
      this.indexLabels(existing, 1);
      for (const p of existing.usage.members) this.place(p, existing, 1);
    }
    return true;
  }

  removeNode(name: string): void {
    const node = this.nodes.get(name);
    if (!node) return;
    for (const p of node.usage.members) this.place(p, node, -1);
    this.indexLabels(node, -1);
    this.nodes.delete(name);
    const last = this.nodeList.pop()!;
    if (last !== node) {
      this.nodeList[node.slot] = last;
      last.slot = node.slot;
    }
    if (node.usage.members.size === 0) this.usages.delete(name);
  }

  /**
   * Counts a pod on its node, replacing what was counted for the same key before. Returns
   * whether this is news (not the confirmation of the same pod on the same node).
   */
  addPod(key: string, req: PodRequirements, nodeName: string, assumed: boolean, version = ''): boolean {
    const before = this.removePod(key);
    const pod: BoundPod = { key, req, nodeName, assumed, version };
    this.pods.set(key, pod);
    const usage = this.usageOf(nodeName);
    usage.cpuMilli += req.cpuMilli;
    usage.memoryBytes += req.memoryBytes;
    usage.pods++;
    for (const port of req.hostPorts) usage.hostPorts.set(port, (usage.hostPorts.get(port) ?? 0) + 1);
    usage.members.add(pod);
    this.hold(pod, 1);
    const node = this.nodes.get(nodeName);
    if (node) this.place(pod, node, 1);
    return !before || before.req.uid !== req.uid || before.nodeName !== nodeName;
  }

  removePod(key: string): BoundPod | undefined {
    const pod = this.pods.get(key);
    if (!pod) return undefined;
    this.pods.delete(key);
    const node = this.nodes.get(pod.nodeName);
    if (node) this.place(pod, node, -1);
    this.hold(pod, -1);
    const usage = this.usageOf(pod.nodeName);
    usage.cpuMilli -= pod.req.cpuMilli;
    usage.memoryBytes -= pod.req.memoryBytes;
    usage.pods--;
    for (const port of pod.req.hostPorts) {
      const n = (usage.hostPorts.get(port) ?? 0) - 1;
      if (n > 0) usage.hostPorts.set(port, n);
      else usage.hostPorts.delete(port);
    }
    usage.members.delete(pod);
    if (usage.members.size === 0 && !node) this.usages.delete(pod.nodeName);
    return pod;
  }

  /** The bound pods a term of a pod being scheduled selects, per domain (built on first use, then kept current). */
  matchingCounts(term: PodTerm): DomainCounts {
    const known = this.matching.get(term.signature);
    if (known) return known;
    if (this.matching.size >= MAX_MATCHING_ENTRIES) this.matching.clear();
    const { entry } = this.matching.open(term);
    for (const p of this.pods.values()) {
      if (!termSelects(term, p.req.namespace, p.req.labels)) continue;
      const node = this.nodes.get(p.nodeName);
      const domain = node && domainOf(node, term.topologyKey);
      if (domain !== undefined) entry.add(domain, 1, 1);
    }
    return entry;
  }

  private usageOf(nodeName: string): NodeUsage {
    let usage = this.usages.get(nodeName);
    if (!usage) {
      usage = new NodeUsage();
      this.usages.set(nodeName, usage);
    }
    return usage;
  }

  private indexLabels(node: NodeState, sign: 1 | -1): void {
    for (const key in node.labels) {
      const pair = key + PAIR + node.labels[key];
      const list = this.nodesByLabel.get(pair);
      if (sign > 0) {
        if (list) list.push(node);
        else this.nodesByLabel.set(pair, [node]);
      } else if (list) {
        const i = list.indexOf(node);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) this.nodesByLabel.delete(pair);
      }
    }
  }

  /** Opens (or releases) the entries of the terms a bound pod carries. */
  private hold(pod: BoundPod, sign: 1 | -1): void {
    for (const term of pod.req.requiredAntiAffinity) this.holdEntry(this.carriedAntiAffinity, term, sign);
    for (const term of pod.req.preferredPodTerms) this.holdEntry(this.carriedPreferences, term, sign);
  }

  private holdEntry(index: TermIndex, term: PodTerm, sign: 1 | -1): void {
    const entry = sign > 0 ? index.open(term).entry : index.get(term.signature);
    if (!entry) return;
    entry.holders += sign;
    if (entry.holders <= 0) index.close(entry);
  }

  /** Counts a bound pod in (or out of) the topology domains of its node. */
  private place(pod: BoundPod, node: NodeState, sign: 1 | -1): void {
    const { req } = pod;
    if (this.matching.size > 0) {
      this.matching.forEachSelecting(req.namespace, req.labels, (entry) => {
        const domain = domainOf(node, entry.term.topologyKey);
        if (domain !== undefined) entry.add(domain, sign, sign);
      });
    }
    for (const term of req.requiredAntiAffinity) {
      const domain = domainOf(node, term.topologyKey);
      if (domain !== undefined) this.carriedAntiAffinity.get(term.signature)?.add(domain, sign, sign);
    }
    for (const term of req.preferredPodTerms) {
      const domain = domainOf(node, term.topologyKey);
      if (domain !== undefined) this.carriedPreferences.get(term.signature)?.add(domain, sign * term.weight, sign);
    }
  }
}
