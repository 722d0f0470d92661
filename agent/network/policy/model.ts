import { createHash } from 'node:crypto';
import { formatIPv4, parseIPv4 } from '../../../shared/net/cidr.js';
import type { DesiredPolicies, PolicyPeerSet, PolicyRule } from '../../../shared/protocol/policy.js';
import { ipBlockRanges } from '../../../shared/resources/networkpolicy.js';

/**
 * What the device's network policy table holds, without I/O (docs/ARCHITECTURE.md, 'Network
 * policy'): named interval sets of peer addresses, one chain per profile and direction (its
 * rules `return` what they allow, and drop the rest), and two verdict maps from the IP of
 * each of the device's own pods that a policy isolates to its chain. Names are derived from
 * the hub's stable ids, so the same policy gives the same names after a restart and a change
 * is a difference of elements.
 */
export interface PolicyModel {
  /** Set name → its elements (`10.42.1.5`, `10.0.0.0-10.0.255.255`), sorted, never overlapping. */
  sets: Map<string, string[]>;
  /** Chain name → its rules, the last one `drop`. */
  chains: Map<string, string[]>;
  /** Pod IP → the chain that decides what it accepts. */
  ingress: Map<string, string>;
  /** Pod IP → the chain that decides what it sends. */
  egress: Map<string, string>;
}

export function emptyModel(): PolicyModel {
  return { sets: new Map(), chains: new Map(), ingress: new Map(), egress: new Map() };
}

export function isEmptyModel(m: PolicyModel): boolean {
  return m.ingress.size === 0 && m.egress.size === 0;
}

/**
 * The model for the device's pods now: `podIPs` holds each running pod's IP by uid (the hub
 * names pods by uid; a pod without an IP yet has nothing to enforce). `problems` names what of
 * the section could not be used (a rule naming a set that is not there allows nothing).
 */
export function buildModel(policies: DesiredPolicies | undefined, podIPs: ReadonlyMap<string, string>): { model: PolicyModel; problems: string[] } {
  const model = emptyModel();
  const problems: string[] = [];
  if (!policies) return { model, problems };
  const chainOf = new Map<string, string>();
  const chain = (profileId: string, direction: 'ingress' | 'egress', rules: PolicyRule[]): string => {
    const key = `${direction}:${profileId}`;
    const known = chainOf.get(key);
    if (known) return known;
    const lines: string[] = [];
    for (const rule of rules) {
      let peer = '';
      if (rule.peers !== undefined) {
        const set = policies.sets[rule.peers];
        if (!set) {
          problems.push(`profile ${profileId}: ${direction} rule names peer set '${rule.peers}', which is not in the section`);
          continue;
        }
        const setName = `peers_${shortHash(rule.peers)}`;
        if (!model.sets.has(setName)) model.sets.set(setName, setElements(set));
        peer = `ip ${direction === 'ingress' ? 'saddr' : 'daddr'} @${setName} `;
      }
      lines.push(...portMatches(rule).map((match) => `${peer}${match}return`));
    }
    lines.push('drop');
    // Named by its rules: a chain is never edited, only added or removed.
    const name = `${direction === 'ingress' ? 'in' : 'out'}_${shortHash(lines.join('\n'))}`;
    model.chains.set(name, lines);
    chainOf.set(key, name);
    return name;
  };
  for (const [uid, profileId] of Object.entries(policies.pods)) {
    const ip = podIPs.get(uid);
    if (!ip) continue;
    const profile = policies.profiles[profileId];
    if (!profile) {
      problems.push(`pod ${uid}: profile '${profileId}' is not in the section`);
      continue;
    }
    if (profile.ingress) model.ingress.set(ip, chain(profileId, 'ingress', profile.ingress));
    if (profile.egress) model.egress.set(ip, chain(profileId, 'egress', profile.egress));
  }
  return { model, problems };
}

/** `tcp dport { 80, 8000-8080 } `, one per protocol; `''` for a rule on every port. */
function portMatches(rule: PolicyRule): string[] {
  if (!rule.ports || rule.ports.length === 0) return [''];
  const out: string[] = [];
  for (const protocol of ['TCP', 'UDP'] as const) {
    const ports = rule.ports.filter((p) => p.protocol === protocol);
    if (ports.length === 0) continue;
    const proto = protocol.toLowerCase();
    if (ports.some((p) => p.port === undefined)) {
      out.push(`meta l4proto ${proto} `);
      continue;
    }
    const items = [...new Set(ports.map((p) => (p.endPort !== undefined && p.endPort > p.port! ? `${p.port}-${p.endPort}` : String(p.port))))];
    out.push(`${proto} dport { ${items.join(', ')} } `);
  }
  return out;
}

/** The set's addresses as interval elements: pod IPs and ipBlocks merged where they overlap (an interval set refuses overlaps). */
export function setElements(set: PolicyPeerSet): string[] {
  const ranges: [number, number][] = [];
  for (const ip of set.ips ?? []) {
    const n = parseIPv4(ip);
    if (n !== undefined) ranges.push([n, n]);
  }
  for (const block of set.blocks ?? []) ranges.push(...ipBlockRanges(block));
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged: [number, number][] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged.map(([a, b]) => (a === b ? formatIPv4(a) : `${formatIPv4(a)}-${formatIPv4(b)}`));
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
