import { createHash } from 'node:crypto';
import { labelSelectorAsSelector, matches, selectorFromLabelSelector, type LabelSelector, type Selector } from '../../shared/labels/selector.js';
import type { DesiredPolicies, PolicyPeerSet, PolicyPortRule, PolicyProfile, PolicyRule } from '../../shared/protocol/policy.js';
import { NAMESPACE_NAME_LABEL } from '../../shared/resources/namespace.js';
import { canonicalCidr, policyTypesOf, type NetworkPolicyPeer, type NetworkPolicyPort, type NetworkPolicySpec } from '../../shared/resources/networkpolicy.js';

/**
 * Compiles the fleet's NetworkPolicies into each node's `policies` section, without I/O
 * (docs/ARCHITECTURE.md, 'Network policy'). Kubernetes' semantics: a pod is isolated for
 * ingress (egress) when some policy that selects it has Ingress (Egress) in its types, and
 * then accepts (sends) only what some rule of those policies allows; rules add up, never
 * subtract. Peers are resolved to pod IPs fleet-wide, named ports to numbers: an ingress
 * rule's against the pod it protects, an egress rule's against each destination pod.
 */

/** What the compiler needs of a pod. */
export interface PolicyPod {
  uid: string;
  namespace: string;
  labels: Record<string, string>;
  /** Bound node; a pod without one is protected nowhere yet. */
  node?: string;
  /** Its IP once it has one: only then is it a peer. */
  ip?: string;
  /** Named container ports: `name/protocol` → number. */
  ports: Map<string, number>;
}

export interface PolicyObject {
  namespace: string;
  name: string;
  spec: NetworkPolicySpec;
}

export interface PolicyInputs {
  policies: readonly PolicyObject[];
  pods: Iterable<PolicyPod>;
  /** Namespace → its labels (the name label is added when missing). */
  namespaces: ReadonlyMap<string, Record<string, string>>;
}

type Direction = 'ingress' | 'egress';

/** A rule with its peers resolved, before named ports are. */
interface ResolvedRule {
  /** `namespace/policy/i0`: stable, so that a peer's change touches one set's elements only. */
  ruleId: string;
  /** The rule's set id; undefined: any address. */
  setId: string | undefined;
  /** The pods its selectors pick (for egress named ports). */
  peerPods: PolicyPod[];
  set: PolicyPeerSet;
  ports: NetworkPolicyPort[] | undefined;
}

/** Every node's compiled policies; nodes none of whose pods a policy selects are absent. */
export function compilePolicies(inputs: PolicyInputs): Map<string, DesiredPolicies> {
  const pods = [...inputs.pods];
  const byNamespace = new Map<string, PolicyPod[]>();
  for (const pod of pods) {
    const list = byNamespace.get(pod.namespace);
    if (list) list.push(pod);
    else byNamespace.set(pod.namespace, [pod]);
  }
  // Each namespace's labels once, the name label included (a namespace stored before the hub set it).
  const namespaceLabels = new Map<string, Record<string, string>>();
  for (const ns of new Set([...inputs.namespaces.keys(), ...byNamespace.keys()])) namespaceLabels.set(ns, { ...inputs.namespaces.get(ns), [NAMESPACE_NAME_LABEL]: ns });

  // Each target pod's rules, in a stable order (policies by namespace/name, then rule index).
  const rulesOf = new Map<string, { pod: PolicyPod; ingress?: PolicyRule[]; egress?: PolicyRule[] }>();
  const sets = new Map<string, PolicyPeerSet>();
  const policies = [...inputs.policies].sort((a, b) => (a.namespace === b.namespace ? compare(a.name, b.name) : compare(a.namespace, b.namespace)));
  for (const policy of policies) {
    const selector = safeSelector(policy.spec.podSelector ?? {});
    const targets = (byNamespace.get(policy.namespace) ?? []).filter((p) => p.node && matches(selector, p.labels));
    if (targets.length === 0) continue;
    const types = policyTypesOf(policy.spec);
    const resolve = (direction: Direction): ResolvedRule[] => {
      const rules = direction === 'ingress' ? (policy.spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports })) : (policy.spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
      return rules.map((rule, i) => {
        const ruleId = `${policy.namespace}/${policy.name}/${direction === 'ingress' ? 'i' : 'e'}${i}`;
        // No peers: any address; an egress named port then goes to every pod of the fleet that has it.
        if (!rule.peers || rule.peers.length === 0) {
          const named = direction === 'egress' && rule.ports?.some((p) => typeof p.port === 'string');
          return { ruleId, setId: undefined, peerPods: named ? pods.filter((p) => p.ip) : [], set: {}, ports: rule.ports };
        }
        const { peerPods, set } = resolvePeers(rule.peers, policy.namespace, byNamespace, namespaceLabels);
        return { ruleId, setId: ruleId, peerPods, set, ports: rule.ports };
      });
    };
    const ingress = types.ingress ? resolve('ingress') : undefined;
    const egress = types.egress ? resolve('egress') : undefined;
    for (const pod of targets) {
      const entry = rulesOf.get(pod.uid) ?? { pod };
      rulesOf.set(pod.uid, entry);
      if (ingress) entry.ingress = [...(entry.ingress ?? []), ...ingress.flatMap((r) => ingressRules(r, pod, sets))];
      if (egress) entry.egress = [...(entry.egress ?? []), ...egress.flatMap((r) => egressRules(r, sets))];
    }
  }

  const out = new Map<string, { sets: Map<string, PolicyPeerSet>; profiles: Map<string, PolicyProfile>; pods: Map<string, string> }>();
  const profileIds = new Map<string, string>();
  for (const { pod, ingress, egress } of rulesOf.values()) {
    const profile: PolicyProfile = { ...(ingress ? { ingress } : {}), ...(egress ? { egress } : {}) };
    // Pods of one policy share their rules: each distinct profile is hashed once.
    const text = JSON.stringify(profile);
    let profileId = profileIds.get(text);
    if (profileId === undefined) profileIds.set(text, (profileId = createHash('sha256').update(text).digest('hex').slice(0, 16)));
    const node = out.get(pod.node!) ?? { sets: new Map(), profiles: new Map(), pods: new Map() };
    out.set(pod.node!, node);
    node.profiles.set(profileId, profile);
    node.pods.set(pod.uid, profileId);
    for (const rule of [...(ingress ?? []), ...(egress ?? [])]) if (rule.peers) node.sets.set(rule.peers, sets.get(rule.peers)!);
  }
  const result = new Map<string, DesiredPolicies>();
  for (const [node, n] of out) result.set(node, { sets: sortedRecord(n.sets), profiles: sortedRecord(n.profiles), pods: sortedRecord(n.pods) });
  return result;
}

function resolvePeers(
  peers: NetworkPolicyPeer[],
  namespace: string,
  byNamespace: ReadonlyMap<string, PolicyPod[]>,
  namespaceLabels: ReadonlyMap<string, Record<string, string>>,
): { peerPods: PolicyPod[]; set: PolicyPeerSet } {
  const picked = new Map<string, PolicyPod>();
  const blocks: { cidr: string; except?: string[] }[] = [];
  for (const peer of peers) {
    if (peer.ipBlock) {
      const except = peer.ipBlock.except?.map(canonicalCidr).sort();
      blocks.push({ cidr: canonicalCidr(peer.ipBlock.cidr), ...(except && except.length > 0 ? { except } : {}) });
      continue;
    }
    // podSelector alone: pods of the policy's namespace; with a namespaceSelector: of the namespaces it picks.
    const podSel = peer.podSelector ? safeSelector(peer.podSelector) : undefined;
    const nsSel = peer.namespaceSelector ? safeSelector(peer.namespaceSelector) : undefined;
    const namespaces = nsSel ? [...namespaceLabels].filter(([, labels]) => matches(nsSel, labels)).map(([ns]) => ns) : [namespace];
    for (const ns of namespaces) for (const pod of byNamespace.get(ns) ?? []) if (pod.ip && (!podSel || matches(podSel, pod.labels))) picked.set(pod.uid, pod);
  }
  const peerPods = [...picked.values()];
  const ips = sortIPs(peerPods.map((p) => p.ip!));
  return { peerPods, set: { ...(ips.length > 0 ? { ips } : {}), ...(blocks.length > 0 ? { blocks } : {}) } };
}

/** An ingress rule for one target pod: its named ports resolved against that pod's containers. */
function ingressRules(rule: ResolvedRule, pod: PolicyPod, sets: Map<string, PolicyPeerSet>): PolicyRule[] {
  if (rule.setId) sets.set(rule.setId, rule.set);
  const base = rule.setId ? { peers: rule.setId } : {};
  if (!rule.ports || rule.ports.length === 0) return [base];
  const ports: PolicyPortRule[] = [];
  for (const p of rule.ports) {
    const protocol = p.protocol ?? 'TCP';
    if (typeof p.port === 'string') {
      const number = pod.ports.get(`${p.port}/${protocol}`);
      if (number !== undefined) ports.push({ protocol, port: number });
    } else ports.push(portRule(protocol, p));
  }
  // Every port named and none of them the pod's: the rule allows nothing.
  return ports.length > 0 ? [{ ...base, ports }] : [];
}

/**
 * An egress rule: numbered ports go to every peer; a named port only to the peer pods that
 * have it, one sub-rule (and set) per number it resolves to. A rule without peers and with a
 * named port allows it to every pod of the fleet that has it.
 */
function egressRules(rule: ResolvedRule, sets: Map<string, PolicyPeerSet>): PolicyRule[] {
  if (!rule.ports || rule.ports.length === 0) {
    if (rule.setId) sets.set(rule.setId, rule.set);
    return [rule.setId ? { peers: rule.setId } : {}];
  }
  const out: PolicyRule[] = [];
  const numbered = rule.ports.filter((p) => typeof p.port !== 'string').map((p) => portRule(p.protocol ?? 'TCP', p));
  if (numbered.length > 0) {
    if (rule.setId) sets.set(rule.setId, rule.set);
    out.push({ ...(rule.setId ? { peers: rule.setId } : {}), ports: numbered });
  }
  const named = rule.ports.filter((p): p is NetworkPolicyPort & { port: string } => typeof p.port === 'string');
  for (const p of named) {
    const protocol = p.protocol ?? 'TCP';
    const byNumber = new Map<number, string[]>();
    for (const peer of rule.peerPods) {
      const number = peer.ports.get(`${p.port}/${protocol}`);
      if (number !== undefined) byNumber.set(number, [...(byNumber.get(number) ?? []), peer.ip!]);
    }
    for (const [number, ips] of [...byNumber].sort((a, b) => a[0] - b[0])) {
      const setId = `${rule.ruleId}/${p.port}-${protocol}-${number}`;
      sets.set(setId, { ips: sortIPs(ips) });
      out.push({ peers: setId, ports: [{ protocol, port: number }] });
    }
  }
  return out;
}

function portRule(protocol: 'TCP' | 'UDP', p: NetworkPolicyPort): PolicyPortRule {
  if (typeof p.port !== 'number') return { protocol };
  return { protocol, port: p.port, ...(p.endPort !== undefined && p.endPort !== p.port ? { endPort: p.endPort } : {}) };
}

/** A selector that was valid when written; one that is not any more selects nothing rather than everything. */
function safeSelector(ls: LabelSelector): Selector {
  try {
    return selectorFromLabelSelector(ls);
  } catch {
    return labelSelectorAsSelector(undefined);
  }
}

function sortedRecord<T>(map: Map<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const key of [...map.keys()].sort(compare)) out[key] = map.get(key)!;
  return out;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Distinct IPs in numeric order (each parsed once). */
function sortIPs(ips: Iterable<string>): string[] {
  return [...new Set(ips)].map((ip) => [ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0), ip] as const).sort((a, b) => a[0] - b[0]).map(([, ip]) => ip);
}
