import type { PolicyModel } from './model.js';

/**
 * The network policy table, `inet flotilla-policy`, as nft scripts (docs/ARCHITECTURE.md,
 * 'Network policy'). One base chain on the forward hook: replies of established connections
 * pass, then the destination's ingress chain and the source's egress chain, each found in a
 * verdict map by pod IP (a pod no policy isolates is in neither, and passes). A full script
 * replaces the table whole in one transaction; a change is one transaction of the differences.
 * Traffic between two pods on the device's bridge meets the same hook through the kernel's
 * bridge netfilter (see PolicyEnforcer), which keeps connection tracking for it.
 */
export const POLICY_TABLE = 'flotilla-policy';
export const POLICY_MARKER = 'flotilla policy v1';
const T = `inet ${POLICY_TABLE}`;

const SET_TYPE = 'type ipv4_addr; flags interval;';
const MAP_TYPE = 'type ipv4_addr : verdict;';

export function fullRuleset(model: PolicyModel): string {
  const lines = [`table ${T}`, `delete table ${T}`, `table ${T} {`, `  comment "${POLICY_MARKER}"`];
  for (const [name, elements] of sorted(model.sets)) {
    lines.push(`  set ${name} {`, `    ${SET_TYPE}`);
    if (elements.length > 0) lines.push(`    elements = { ${elements.join(', ')} }`);
    lines.push('  }');
  }
  for (const [name, rules] of sorted(model.chains)) lines.push(`  chain ${name} {`, ...rules.map((r) => `    ${r}`), '  }');
  for (const map of ['ingress', 'egress'] as const) {
    lines.push(`  map ${map} {`, `    ${MAP_TYPE}`);
    if (model[map].size > 0) lines.push(`    elements = { ${sorted(model[map]).map(([ip, chain]) => `${ip} : jump ${chain}`).join(', ')} }`);
    lines.push('  }');
  }
  lines.push(
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    '    ct state established,related accept',
    '    ip daddr vmap @ingress',
    '    ip saddr vmap @egress',
    '  }',
    '}',
    '',
  );
  return lines.join('\n');
}

/** Removes the table; the script is empty when there is nothing to remove (the caller knows). */
export function removeRuleset(): string {
  return [`table ${T}`, `delete table ${T}`, ''].join('\n');
}

/**
 * One transaction from `from` to `to`, both of the same table: new sets and chains first, set
 * elements and map entries changed, then chains and sets nothing refers to any more removed.
 * Empty when nothing differs. A chain's name is a hash of its rules, so a chain is only ever
 * added or removed, never edited.
 */
export function incrementalScript(from: PolicyModel, to: PolicyModel): string {
  const lines: string[] = [];
  for (const [name, elements] of sorted(to.sets)) {
    const before = from.sets.get(name);
    if (!before) {
      lines.push(`add set ${T} ${name} { ${SET_TYPE} }`);
      if (elements.length > 0) lines.push(`add element ${T} ${name} { ${elements.join(', ')} }`);
      continue;
    }
    const had = new Set(before);
    const has = new Set(elements);
    const removed = before.filter((e) => !has.has(e));
    const added = elements.filter((e) => !had.has(e));
    if (removed.length > 0) lines.push(`delete element ${T} ${name} { ${removed.join(', ')} }`);
    if (added.length > 0) lines.push(`add element ${T} ${name} { ${added.join(', ')} }`);
  }
  for (const [name, rules] of sorted(to.chains)) {
    if (from.chains.has(name)) continue;
    lines.push(`add chain ${T} ${name}`, ...rules.map((r) => `add rule ${T} ${name} ${r}`));
  }
  for (const map of ['ingress', 'egress'] as const) {
    const removed = [...from[map]].filter(([ip, chain]) => to[map].get(ip) !== chain).map(([ip]) => ip);
    const added = sorted(to[map]).filter(([ip, chain]) => from[map].get(ip) !== chain);
    if (removed.length > 0) lines.push(`delete element ${T} ${map} { ${removed.join(', ')} }`);
    if (added.length > 0) lines.push(`add element ${T} ${map} { ${added.map(([ip, chain]) => `${ip} : jump ${chain}`).join(', ')} }`);
  }
  for (const name of from.chains.keys()) if (!to.chains.has(name)) lines.push(`flush chain ${T} ${name}`, `delete chain ${T} ${name}`);
  for (const name of from.sets.keys()) if (!to.sets.has(name)) lines.push(`delete set ${T} ${name}`);
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

export function sameModel(a: PolicyModel, b: PolicyModel): boolean {
  return incrementalScript(a, b) === '';
}

function sorted<V>(map: ReadonlyMap<string, V>): [string, V][] {
  return [...map].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
}
