import { createHash } from 'node:crypto';
import type { EndpointAnnouncement, ServiceAnnouncement, ServicePortAnnouncement } from '../../../shared/protocol/services.js';

/**
 * The service proxy's planner (docs/ARCHITECTURE.md, 'The service proxy'): pure functions from
 * the service book and this node's facts to the nftables table `ip flotilla-svc`, whole (a full
 * sync) or as the one transaction that moves one Service's part of it from what it was to what
 * it is now. Laid out as kube-proxy's nftables mode: the first packet of a connection to a
 * virtual IP is matched by one verdict-map lookup, whatever the number of Services, then a
 * per-Service chain picks a ready endpoint with `numgen random`, and a per-endpoint chain DNATs.
 */
export const SVC_TABLE = 'flotilla-svc';
export const SVC_FAMILY = 'ip';
/** The packet mark bit that asks the postrouting chain to rewrite the source (kube-proxy's). */
export const MASQ_MARK = '0x00004000';
/** Kubernetes' default sessionAffinity timeout. */
export const DEFAULT_AFFINITY_SECONDS = 10_800;

/** What the planner knows of the device it programs. */
export interface ProxyNode {
  name: string;
  /** The node's site (topology.kubernetes.io/zone, else site), for PreferClose. */
  site?: string;
  podCIDR?: string;
  clusterCIDR?: string;
}

/** The marker in the table's comment: a table made for other facts (or by an older layout) is replaced whole. */
export function proxyMarker(node: ProxyNode): string {
  return `flotilla-svc v1 node=${node.name} pod=${node.podCIDR ?? '-'} cluster=${node.clusterCIDR ?? '-'}`;
}

/** The first address of the pod CIDR: the pod bridge's gateway. */
export function podGateway(podCIDR: string | undefined): string | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/\d+$/.exec(podCIDR ?? '');
  if (!m) return undefined;
  const n = ((Number(m[1]) << 24) >>> 0) + (Number(m[2]) << 16) + (Number(m[3]) << 8) + Number(m[4]) + 1;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The maps a Service puts elements in, each keyed as the dispatch chains look them up. */
export type MapName = 'service-ips' | 'service-nodeports' | 'no-endpoint-services' | 'no-endpoint-nodeports';
const MAPS: readonly MapName[] = ['service-ips', 'service-nodeports', 'no-endpoint-services', 'no-endpoint-nodeports'];

/** One Service's part of the table: its chains (name → rules), affinity sets, and map elements (key → verdict). */
export interface ServicePiece {
  chains: Map<string, string[]>;
  /** Affinity sets by name → their timeout in seconds. */
  sets: Map<string, number>;
  elements: Map<MapName, Map<string, string>>;
  /** This node's endpoints: a pod that reaches itself through the Service is masqueraded (the `hairpin` set). */
  hairpin: Set<string>;
  /** UDP endpoints each traffic path DNATs to: `vip:port` or `node:nodePort` → endpoint IPs (for conntrack clean-up). */
  udp: Map<string, Set<string>>;
}

/** The endpoints that stand behind one Service port. */
interface Backend {
  ip: string;
  port: number;
  node: string;
  site?: string;
}

function emptyPiece(): ServicePiece {
  return { chains: new Map(), sets: new Map(), elements: new Map(MAPS.map((m) => [m, new Map<string, string>()])), hairpin: new Set(), udp: new Map() };
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('base64url').replace(/[-_]/g, 'x').slice(0, 10).toUpperCase();
}

/** A name nft takes unquoted (letters, digits, / - _ .), at most 200 characters, unique by its hash. */
function objectName(prefix: string, readable: string): string {
  return `${prefix}-${hash(readable)}-${readable.replace(/[^A-Za-z0-9/_.-]/g, '_').slice(0, 180)}`;
}

/** The endpoints one kind of traffic may reach, by the Service's traffic policies and the node's place. */
export function pickEndpoints(all: readonly Backend[], policy: { local: boolean; preferClose: boolean }, node: ProxyNode): Backend[] {
  const local = all.filter((b) => b.node === node.name);
  if (policy.local) return local;
  if (!policy.preferClose) return [...all];
  if (local.length) return local;
  if (node.site) {
    const site = all.filter((b) => b.site === node.site);
    if (site.length) return site;
  }
  return [...all];
}

function backendsOf(port: ServicePortAnnouncement, endpoints: ReadonlyMap<string, EndpointAnnouncement>): Backend[] {
  const out: Backend[] = [];
  const seen = new Set<string>();
  // Sorted by pod name: the same book gives the same chains, whatever the order messages came in.
  for (const pod of [...endpoints.keys()].sort()) {
    const e = endpoints.get(pod)!;
    if (!e.ready) continue;
    const target = e.ports[port.name ?? ''];
    if (target === undefined) continue;
    const key = `${e.ip}:${target}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ ip: e.ip, port: target, node: e.node, ...(e.site ? { site: e.site } : {}) });
  }
  return out;
}

/** One Service's part of the table; empty for a headless Service. */
export function planService(svc: ServiceAnnouncement, endpoints: ReadonlyMap<string, EndpointAnnouncement>, node: ProxyNode): ServicePiece {
  const piece = emptyPiece();
  if (svc.clusterIP === 'None') return piece;
  const affinity = svc.sessionAffinity === 'ClientIP' ? (svc.affinitySeconds ?? DEFAULT_AFFINITY_SECONDS) : undefined;
  const preferClose = svc.trafficDistribution === 'PreferClose';
  for (const port of svc.ports) {
    const proto = port.protocol === 'UDP' ? 'udp' : 'tcp';
    const id = `${svc.namespace}/${svc.name}/${proto}/${port.name ?? port.port}`;
    const all = backendsOf(port, endpoints);
    const internal = pickEndpoints(all, { local: svc.internalTrafficPolicy === 'Local', preferClose }, node);
    const epChain = (b: Backend) => objectName('ep', `${id}/${b.ip}/${b.port}`);
    const affSet = (b: Backend) => objectName('aff', `${id}/${b.ip}/${b.port}`);
    const usedEndpoints = new Map<string, Backend>();
    for (const b of all) if (b.node === node.name) piece.hairpin.add(b.ip);
    // Without affinity the Service chain DNATs itself, through an anonymous map from a random
    // number to an endpoint: one chain per Service port, none per endpoint (nft reads the
    // table's chains on every change: fewer chains, faster changes). With ClientIP affinity,
    // a chain per endpoint records the client in the endpoint's timed set.
    const chooser = (backends: readonly Backend[]): string[] => {
      if (affinity === undefined) {
        if (backends.length === 1) return [`meta l4proto ${proto} dnat to ${backends[0]!.ip}:${backends[0]!.port}`];
        return [`meta l4proto ${proto} dnat to numgen random mod ${backends.length} map { ${backends.map((b, i) => `${i} : ${b.ip} . ${b.port}`).join(', ')} }`];
      }
      const rules: string[] = [];
      for (const b of backends) usedEndpoints.set(epChain(b), b);
      for (const b of backends) rules.push(`ip saddr @${affSet(b)} goto ${epChain(b)}`);
      if (backends.length === 1) rules.push(`goto ${epChain(backends[0]!)}`);
      else rules.push(`numgen random mod ${backends.length} vmap { ${backends.map((b, i) => `${i} : goto ${epChain(b)}`).join(', ')} }`);
      return rules;
    };

    const vipKey = `${svc.clusterIP} . ${proto} . ${port.port}`;
    if (internal.length) {
      const chain = objectName('svc', id);
      // Pods keep their address (the Kubernetes network model); the device itself and anything
      // from outside the cluster get the pod gateway's, so that replies come back through here.
      const masq = node.clusterCIDR ? `ip saddr != ${node.clusterCIDR} jump mark-for-masquerade` : 'jump mark-for-masquerade';
      piece.chains.set(chain, [masq, ...chooser(internal)]);
      piece.elements.get('service-ips')!.set(vipKey, `goto ${chain}`);
      if (proto === 'udp') piece.udp.set(`${svc.clusterIP}:${port.port}`, new Set(internal.map((b) => b.ip)));
    } else {
      piece.elements.get('no-endpoint-services')!.set(vipKey, 'goto reject-traffic');
    }

    if (svc.type === 'NodePort' && port.nodePort) {
      const externalLocal = svc.externalTrafficPolicy === 'Local';
      const external = pickEndpoints(all, { local: externalLocal, preferClose }, node);
      const npKey = `${proto} . ${port.nodePort}`;
      if (external.length) {
        const chain = objectName('ext', id);
        // Cluster: any device's endpoint, the source rewritten so the reply comes back through
        // this device. Local: this device's endpoints only, the client's address kept.
        piece.chains.set(chain, [...(externalLocal ? [] : ['jump mark-for-masquerade']), ...chooser(external)]);
        piece.elements.get('service-nodeports')!.set(npKey, `goto ${chain}`);
        if (proto === 'udp') piece.udp.set(`node:${port.nodePort}`, new Set(external.map((b) => b.ip)));
      } else {
        piece.elements.get('no-endpoint-nodeports')!.set(npKey, externalLocal ? 'drop' : 'goto reject-traffic');
      }
    }

    for (const [name, b] of usedEndpoints) {
      piece.sets.set(affSet(b), affinity!);
      piece.chains.set(name, [`update @${affSet(b)} { ip saddr }`, `meta l4proto ${proto} dnat to ${b.ip}:${b.port}`]);
    }
  }
  return piece;
}

function setDecl(name: string, timeout: number): string {
  return `set ${name} { type ipv4_addr; flags dynamic,timeout; timeout ${timeout}s; }`;
}

const MAP_TYPES: Record<MapName, string> = {
  'service-ips': 'ipv4_addr . inet_proto . inet_service : verdict',
  'service-nodeports': 'inet_proto . inet_service : verdict',
  'no-endpoint-services': 'ipv4_addr . inet_proto . inet_service : verdict',
  'no-endpoint-nodeports': 'inet_proto . inet_service : verdict',
};

/** The chains every table has, whatever the Services. */
function baseChains(node: ProxyNode): Map<string, string[]> {
  const gateway = podGateway(node.podCIDR);
  return new Map<string, string[]>([
    // Empty: its name carries the facts the table was made for, where a check can see them
    // (nft's JSON listing leaves out the table's comment).
    [`facts-${hash(proxyMarker(node))}`, []],
    ['nat-prerouting', ['type nat hook prerouting priority dstnat; policy accept;', 'jump services']],
    ['nat-output', ['type nat hook output priority -100; policy accept;', 'jump services']],
    ['nat-postrouting', ['type nat hook postrouting priority srcnat; policy accept;', 'jump masquerading']],
    // One lookup for a virtual IP, one for a node port on any of this device's own addresses.
    ['services', ['ip daddr . meta l4proto . th dport vmap @service-ips', 'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports']],
    [
      'masquerading',
      [
        // Hairpin: a pod DNATed to itself sees the gateway's address, and answers through here.
        `ip saddr . ip daddr @hairpin meta mark set meta mark | ${MASQ_MARK}`,
        `meta mark & ${MASQ_MARK} == 0 return`,
        `meta mark set meta mark ^ ${MASQ_MARK}`,
        // Toward a pod, the pod gateway's address: every device routes the pod CIDR back here.
        ...(gateway && node.clusterCIDR ? [`ip daddr ${node.clusterCIDR} snat to ${gateway}`] : []),
        'masquerade fully-random',
      ],
    ],
    ['mark-for-masquerade', [`meta mark set meta mark | ${MASQ_MARK}`]],
    // A Service without ready endpoints refuses (as kube-proxy): a reset or an ICMP unreachable, never a blackhole.
    ['filter-input', ['type filter hook input priority -110; policy accept;', 'ct state new jump endpoints-check', 'ct state new jump nodeport-endpoints-check']],
    ['filter-forward', ['type filter hook forward priority -110; policy accept;', 'ct state new jump endpoints-check']],
    ['filter-output', ['type filter hook output priority -110; policy accept;', 'ct state new jump endpoints-check']],
    ['endpoints-check', ['ip daddr . meta l4proto . th dport vmap @no-endpoint-services']],
    ['nodeport-endpoints-check', ['fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports']],
    ['reject-traffic', ['meta l4proto tcp reject with tcp reset', 'reject']],
  ]);
}

/** The names of the chains every table has. */
export function baseChainNames(node: ProxyNode): string[] {
  return [...baseChains(node).keys()];
}

/** The whole table, as one `nft -f` script that replaces whatever is there in one transaction. */
export function fullRuleset(node: ProxyNode, pieces: Iterable<ServicePiece>, hairpin: Iterable<string> = []): string {
  const t = `${SVC_FAMILY} ${SVC_TABLE}`;
  const out: string[] = [`table ${t}`, `delete table ${t}`, `table ${t} {`, `  comment "${proxyMarker(node)}"`];
  const elements = new Map<MapName, string[]>(MAPS.map((m) => [m, []]));
  const chains: string[] = [];
  const sets: string[] = [];
  for (const piece of pieces) {
    for (const [name, timeout] of piece.sets) sets.push(`  ${setDecl(name, timeout)}`);
    for (const [map, els] of piece.elements) for (const [k, v] of els) elements.get(map)!.push(`${k} : ${v}`);
    for (const [name, rules] of piece.chains) chains.push(`  chain ${name} {`, ...rules.map((r) => `    ${r}`), '  }');
  }
  out.push(...sets);
  const pairs = [...hairpin].map((ip) => `${ip} . ${ip}`);
  out.push(`  set hairpin {`, '    type ipv4_addr . ipv4_addr;', ...(pairs.length ? [`    elements = { ${pairs.join(', ')} }`] : []), '  }');
  for (const map of MAPS) {
    const els = elements.get(map)!;
    out.push(`  map ${map} {`, `    type ${MAP_TYPES[map]};`);
    if (els.length) out.push(`    elements = {`, els.map((e) => `      ${e}`).join(',\n'), '    }');
    out.push('  }');
  }
  for (const [name, rules] of baseChains(node)) out.push(`  chain ${name} {`, ...rules.map((r) => `    ${r}`), '  }');
  out.push(...chains, '}', '');
  return out.join('\n');
}

/** One Service's move from `before` to `after` (its pieces). */
export interface PieceChange {
  before: ServicePiece;
  after: ServicePiece;
}

/**
 * The commands of one transaction that moves each Service from its `before` to its `after`;
 * empty when nothing differs. Phase by phase over all the changes, so that inside the one
 * transaction what is referred to exists before the reference, a map key one Service gives up
 * is deleted before another takes it, and a chain or set goes only once nothing refers to it.
 */
export function transaction(changes: readonly PieceChange[], hairpin: { add: readonly string[]; remove: readonly string[] } = { add: [], remove: [] }): string[] {
  const t = `${SVC_FAMILY} ${SVC_TABLE}`;
  const create: string[] = [];
  const rules: string[] = [];
  const delElements: string[] = [];
  const addElements: string[] = [];
  const remove: string[] = [];
  for (const { before, after } of changes) {
    for (const [name, timeout] of after.sets) if (!before.sets.has(name)) create.push(`add ${setDecl(name, timeout).replace(/^set /, `set ${t} `)}`);
    for (const name of after.chains.keys()) if (!before.chains.has(name)) create.push(`add chain ${t} ${name}`);
    // Endpoint chains first, then the Service chains that jump to them.
    const order = [...after.chains.keys()].sort((a, b) => Number(!a.startsWith('ep-')) - Number(!b.startsWith('ep-')));
    for (const name of order) {
      const now = after.chains.get(name)!;
      const old = before.chains.get(name);
      if (old && old.length === now.length && old.every((r, i) => r === now[i])) continue;
      if (old) rules.push(`flush chain ${t} ${name}`);
      for (const r of now) rules.push(`add rule ${t} ${name} ${r}`);
    }
    for (const map of MAPS) {
      const was = before.elements.get(map)!;
      const now = after.elements.get(map)!;
      const gone = [...was].filter(([k, v]) => now.get(k) !== v).map(([k]) => k);
      const added = [...now].filter(([k, v]) => was.get(k) !== v).map(([k, v]) => `${k} : ${v}`);
      if (gone.length) delElements.push(`delete element ${t} ${map} { ${gone.join(', ')} }`);
      if (added.length) addElements.push(`add element ${t} ${map} { ${added.join(', ')} }`);
    }
    const goneChains = [...before.chains.keys()].filter((n) => !after.chains.has(n));
    for (const name of goneChains) remove.push(`flush chain ${t} ${name}`);
    for (const name of goneChains) remove.push(`delete chain ${t} ${name}`);
    for (const name of before.sets.keys()) if (!after.sets.has(name)) remove.push(`delete set ${t} ${name}`);
  }
  if (hairpin.remove.length) delElements.push(`delete element ${t} hairpin { ${hairpin.remove.map((ip) => `${ip} . ${ip}`).join(', ')} }`);
  if (hairpin.add.length) addElements.push(`add element ${t} hairpin { ${hairpin.add.map((ip) => `${ip} . ${ip}`).join(', ')} }`);
  // Chains flushed in `remove` go after the rules that referred to them were replaced.
  return [...create, ...rules, ...delElements, ...addElements, ...remove.filter((c) => c.startsWith('flush')), ...remove.filter((c) => !c.startsWith('flush'))];
}

/**
 * The keys a piece takes in the maps: a virtual IP's port (service-ips or no-endpoint-services)
 * or a node port. Two Services must not take the same one (a transient the hub may publish while
 * a port moves from one Service to another): the proxy gives it to the one that holds it.
 */
export function pieceClaims(piece: ServicePiece): string[] {
  const out: string[] = [];
  for (const [map, els] of piece.elements) for (const k of els.keys()) out.push(`${map.includes('nodeport') ? 'node' : 'vip'}|${k}`);
  return out;
}

/** The piece without the map keys in `taken` (and without the chains only they reached). */
export function withoutClaims(piece: ServicePiece, taken: ReadonlySet<string>): ServicePiece {
  const elements = new Map<MapName, Map<string, string>>();
  for (const [map, els] of piece.elements) elements.set(map, new Map([...els].filter(([k]) => !taken.has(`${map.includes('nodeport') ? 'node' : 'vip'}|${k}`))));
  return { ...piece, elements };
}

/** UDP endpoints a change took away from a traffic path: their conntrack entries are cleared, or replies would keep going to them. */
export function goneUdpEndpoints(before: ServicePiece, after: ServicePiece): { path: string; ip: string }[] {
  const out: { path: string; ip: string }[] = [];
  for (const [path, ips] of before.udp) {
    const now = after.udp.get(path);
    for (const ip of ips) if (!now?.has(ip)) out.push({ path, ip });
  }
  return out;
}

export const EMPTY_PIECE: ServicePiece = emptyPiece();

/** How many chains, rules and map elements a set of pieces makes (with the base chains): what a check of the table expects. */
export function pieceCounts(node: ProxyNode, pieces: Iterable<ServicePiece>): { chains: number; sets: number; elements: Record<MapName, number> } {
  let chains = baseChains(node).size;
  let sets = 1; // hairpin
  const elements = Object.fromEntries(MAPS.map((m) => [m, 0])) as Record<MapName, number>;
  for (const p of pieces) {
    chains += p.chains.size;
    sets += p.sets.size;
    for (const [m, els] of p.elements) elements[m] += els.size;
  }
  return { chains, sets, elements };
}
