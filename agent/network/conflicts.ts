import { cidr, formatCidr, overlaps, type Cidr } from '../../shared/net/cidr.js';
import { isOwnRoute, type IpAddress, type IpRoute } from '../../shared/net/ip.js';

/** What the device already has that the overlay did not make and that a CIDR of the overlay would shadow. */
export interface Conflict {
  /** The overlay's CIDR that is overlapped, and which it is. */
  cidr: string;
  role: 'pod CIDR' | 'cluster CIDR';
  /** The route or address, as `ip` prints it: `route 10.0.0.0/8 dev eth0`, `address 10.42.0.1/16 on dummy0`. */
  what: string;
}

/** The overlay's own interfaces: its WireGuard interface and the bridges of its engine networks. */
export interface OwnInterfaces {
  wireguard: string;
  bridges: ReadonlySet<string>;
}

/**
 * The routes and addresses, in any table, that overlap the pod CIDR or the cluster CIDR and are
 * not the overlay's own (its routes carry protocol 241; its interface and bridges hold its own
 * addresses and the kernel's routes for them). The default route overlaps everything and is no
 * conflict. A CIDR with a conflict is never taken into use: a route of ours would shadow the
 * device's own network (a LAN on 10.0.0.0/8, Docker's 172.17.0.0/16, Podman's 10.88.0.0/16),
 * or theirs would swallow pod traffic.
 */
export function findConflicts(routes: readonly IpRoute[], addresses: readonly IpAddress[], own: OwnInterfaces, wanted: { podCIDR: string; clusterCIDR: string }): Conflict[] {
  const ours = (dev: string | undefined) => dev !== undefined && (dev === own.wireguard || own.bridges.has(dev));
  const targets: { c: Cidr; text: string; role: Conflict['role'] }[] = [
    { c: cidr(wanted.clusterCIDR), text: wanted.clusterCIDR, role: 'cluster CIDR' },
    { c: cidr(wanted.podCIDR), text: wanted.podCIDR, role: 'pod CIDR' },
  ];
  const conflicts: Conflict[] = [];
  const seen = new Set<string>();
  const add = (block: Cidr, what: string) => {
    // The cluster CIDR holds the pod CIDR: name each conflict once, with the wider block it hits.
    const target = targets.find((t) => overlaps(t.c, block));
    if (!target || seen.has(what)) return;
    seen.add(what);
    conflicts.push({ cidr: target.text, role: target.role, what });
  };
  for (const a of addresses) {
    if (ours(a.ifname)) continue;
    add(cidr(`${a.local}/${a.prefixlen}`), `address ${a.local}/${a.prefixlen} on ${a.ifname}`);
  }
  for (const r of routes) {
    if (isOwnRoute(r) || ours(r.dev) || r.dst === '0.0.0.0/0') continue;
    const block = parseRouteDst(r.dst);
    if (!block) continue;
    const type = r.type && r.type !== 'unicast' ? `${r.type} ` : '';
    const table = r.table && r.table !== 'main' ? ` table ${r.table}` : '';
    add(block, `route ${type}${formatCidr(block)}${r.dev ? ` dev ${r.dev}` : ''}${table}`);
  }
  return conflicts;
}

function parseRouteDst(dst: string): Cidr | undefined {
  try {
    return cidr(dst);
  } catch {
    return undefined;
  }
}

/** One line for the node's NetworkUnavailable message: the first few conflicts, and how many more. */
export function describeConflicts(conflicts: readonly Conflict[]): string {
  const shown = conflicts.slice(0, 3).map((c) => `the ${c.role} ${c.cidr} overlaps the ${c.what}`);
  const more = conflicts.length > 3 ? `, and ${conflicts.length - 3} more` : '';
  return `${shown.join('; ')}${more}: the overlay takes no CIDR into use that the device already routes (remove the route or address, or give the hub another --cluster-cidr)`;
}
