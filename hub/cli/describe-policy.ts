import { selectorFromLabelSelector, selectorToString, type LabelSelector } from '../../shared/labels/selector.js';
import { policyTypesOf, type NetworkPolicyPeer, type NetworkPolicyPort, type NetworkPolicySpec } from '../../shared/resources/networkpolicy.js';

/** `flotilla describe networkpolicy`, in kubectl's words: what the policy selects, allows and isolates. */
export function describeNetworkPolicy(spec: NetworkPolicySpec): string[] {
  const types = policyTypesOf(spec);
  const lines = ['Spec:', `  PodSelector:     ${selectorText(spec.podSelector) || '<none> (Allowing the specific traffic to all pods in this namespace)'}`];
  const section = (direction: 'ingress' | 'egress'): void => {
    const rules = direction === 'ingress' ? (spec.ingress ?? []).map((r) => ({ peers: r.from, ports: r.ports })) : (spec.egress ?? []).map((r) => ({ peers: r.to, ports: r.ports }));
    const word = direction === 'ingress' ? 'ingress' : 'egress';
    if (!(direction === 'ingress' ? types.ingress : types.egress)) {
      lines.push(`  Not affecting ${word} traffic`);
      return;
    }
    lines.push(`  Allowing ${word} traffic:`);
    if (rules.length === 0) {
      lines.push(`    <none> (Selected pods are isolated for ${word} connectivity)`);
      return;
    }
    rules.forEach((rule, i) => {
      if (i > 0) lines.push('    ----------');
      const portWord = 'To Port';
      if (!rule.ports || rule.ports.length === 0) lines.push(`    ${portWord}: <any> (traffic allowed to all ports)`);
      else for (const p of rule.ports) lines.push(`    ${portWord}: ${portText(p)}`);
      const peerWord = direction === 'ingress' ? 'From' : 'To';
      if (!rule.peers || rule.peers.length === 0) lines.push(`    ${peerWord}: <any> (traffic not restricted by ${direction === 'ingress' ? 'source' : 'destination'})`);
      else {
        lines.push(`    ${peerWord}:`);
        for (const peer of rule.peers) lines.push(...peerLines(peer));
      }
    });
  };
  section('ingress');
  section('egress');
  lines.push(`  Policy Types: ${[...(types.ingress ? ['Ingress'] : []), ...(types.egress ? ['Egress'] : [])].join(', ')}`);
  return lines;
}

function peerLines(peer: NetworkPolicyPeer): string[] {
  if (peer.ipBlock) return ['      IPBlock:', `        CIDR: ${peer.ipBlock.cidr}`, `        Except: ${(peer.ipBlock.except ?? []).join(', ')}`];
  const out: string[] = [];
  if (peer.namespaceSelector) out.push(`      NamespaceSelector: ${selectorText(peer.namespaceSelector) || '<none>'}`);
  if (peer.podSelector) out.push(`      PodSelector: ${selectorText(peer.podSelector) || '<none>'}`);
  return out;
}

function portText(p: NetworkPolicyPort): string {
  const port = p.port === undefined ? '<any>' : String(p.port);
  return `${p.endPort !== undefined ? `${port}-${p.endPort}` : port}/${p.protocol ?? 'TCP'}`;
}

function selectorText(selector: LabelSelector | undefined): string {
  try {
    return selectorToString(selectorFromLabelSelector(selector));
  } catch {
    return '<invalid>';
  }
}
