import { cidr, containsCidr, formatCidr, nthAddress, parseCidr } from '../../shared/net/cidr.js';
import { isOwnRoute, type IpAddress, type IpRoute } from '../../shared/net/ip.js';
import type { WgInterfaceState, WgPeerConfig, WireguardImplementation } from '../../shared/net/wireguard.js';
import { OVERLAY_MTU, PERSISTENT_KEEPALIVE_SECONDS, type DesiredNetwork } from '../../shared/protocol/network.js';
import type { BridgeNetworkSpec, RuntimeNetwork } from '../runtime/runtime.js';
import { describeConflicts, findConflicts } from './conflicts.js';
import { firewallMarker, firewallRuleset } from './firewall.js';

/** The label on every engine network of the overlay, and its value; with LABEL_NODE, the node that made it. */
export const LABEL_NETWORK = 'flotilla.network';
export const OVERLAY_NETWORK = 'overlay';
export const BRIDGE_NAME_OPTION = 'com.docker.network.bridge.name';

/** What is there now (observe.ts reads it; tests build it). */
export interface ObservedNetwork {
  /** The kind of the interface of the overlay's name; undefined when there is none. */
  wgKind: WireguardImplementation | 'other' | undefined;
  /** `wg show` of it. */
  wg?: WgInterfaceState;
  wgLink?: { mtu: number; up: boolean };
  routes: readonly IpRoute[];
  addresses: readonly IpAddress[];
  /** The `ip flotilla` table: undefined when there is none; its comment otherwise ('' without one). */
  firewall: string | undefined;
  /** The engine networks of the overlay that this node made (by label). */
  networks: readonly RuntimeNetwork[];
  /** How many containers of this node use each network, by name (any state: a stopped one would fail to start without it). */
  networkUsers: ReadonlyMap<string, number>;
  forwarding: boolean;
}

/** What the overlay is to be. */
export interface DesiredOverlay {
  overlay: 'wireguard' | 'none';
  node: string;
  interface: string;
  port: number;
  privateKey: string;
  publicKey: string;
  /** From the desired set; absent until the hub has allocated a pod CIDR. */
  network?: DesiredNetwork;
  /** The peer set the path selector chose. */
  peers: readonly WgPeerConfig[];
  /** Peers (by public key) whose handshake the path selector wants started now (a new trial, a retry of direct). */
  startHandshake?: readonly string[];
  /** The engine takes `com.docker.network.bridge.gateway_mode_ipv4=routed` (Docker 27 and later). */
  routedGateway: boolean;
}

export type NetStep =
  | { action: 'createInterface'; name: string }
  | { action: 'configureInterface'; name: string; privateKey: string; port: number; peers: readonly WgPeerConfig[] }
  | { action: 'linkUp'; name: string; mtu: number }
  | { action: 'startHandshake'; name: string; publicKeys: readonly string[]; keepaliveSeconds: number }
  | { action: 'createNetwork'; spec: BridgeNetworkSpec }
  | { action: 'removeNetwork'; name: string; reason: string }
  | { action: 'enableForwarding' }
  | { action: 'replaceRoute'; dst: string; dev: string; src: string }
  | { action: 'deleteRoute'; dst: string; dev: string }
  | { action: 'applyFirewall'; ruleset: string }
  | { action: 'deleteFirewall' }
  | { action: 'deleteInterface'; name: string };

export type NetStepAction = NetStep['action'];

export interface NetPlan {
  steps: NetStep[];
  /** With the overlay on: everything is in place once the steps are done. */
  ready: boolean;
  /** Why not (NetworkUnavailable's reason and message). */
  reason?: string;
  message?: string;
  /** The engine network pods join; absent while they must wait (NetworkNotReady). */
  podNetwork?: string;
  /** Networks of the overlay that containers still use, waiting to be removed once they are moved. */
  waitingRemovals: string[];
}

/** The engine network of a pod CIDR: named after it, so a new pod CIDR is a new network. */
export function networkName(podCIDR: string): string {
  return `flotilla-${podCIDR.replace('/', '-')}`;
}

/** Its host-side bridge: `flt-` and the block in hex, at most 15 characters (IFNAMSIZ). */
export function bridgeName(podCIDR: string): string {
  const c = cidr(podCIDR);
  return `flt-${c.base.toString(16).padStart(8, '0')}-${c.bits}`;
}

export function bridgeSpec(node: string, podCIDR: string, routedGateway: boolean): BridgeNetworkSpec {
  return {
    name: networkName(podCIDR),
    subnet: podCIDR,
    gateway: nthAddress(cidr(podCIDR), 1),
    labels: { [LABEL_NETWORK]: OVERLAY_NETWORK, 'flotilla.node': node },
    options: {
      [BRIDGE_NAME_OPTION]: bridgeName(podCIDR),
      'com.docker.network.driver.mtu': String(OVERLAY_MTU),
      // Pod traffic leaves through the overlay's own masquerade, which spares the cluster CIDR.
      'com.docker.network.bridge.enable_ip_masquerade': 'false',
      // An engine with its iptables on would NAT the bridge and drop what arrives from the tunnel.
      ...(routedGateway ? { 'com.docker.network.bridge.gateway_mode_ipv4': 'routed' } : {}),
    },
  };
}

/** The bridges of the overlay's engine networks: their addresses and routes are its own. */
export function ownBridges(networks: readonly RuntimeNetwork[]): Set<string> {
  return new Set(networks.flatMap((n) => (n.options[BRIDGE_NAME_OPTION] ? [n.options[BRIDGE_NAME_OPTION]] : [])));
}

/** Own routes: protocol 241, in the main table, on the overlay's interface or one of its bridges. */
function ownRoutes(observed: ObservedNetwork, iface: string): IpRoute[] {
  const bridges = ownBridges(observed.networks);
  return observed.routes.filter((r) => isOwnRoute(r) && (r.table === undefined || r.table === 'main') && r.dev !== undefined && (r.dev === iface || bridges.has(r.dev)));
}

/**
 * The steps that make the device's data plane what `desired` says, from what `observed` shows,
 * without any I/O (as reconcile/plan.ts does for containers). Level-triggered and idempotent:
 * with everything in place it plans nothing, and after a reboot (interface gone) it plans it all
 * again. It touches only what the overlay made: its interface by name (refused unless it is
 * WireGuard), its routes (protocol 241), its nftables table, its labelled engine networks.
 */
export function planNetwork(observed: ObservedNetwork, desired: DesiredOverlay): NetPlan {
  if (desired.overlay === 'none') return planRemoval(observed, desired);
  const steps: NetStep[] = [];
  const name = desired.interface;
  const current = desired.network ? networkName(desired.network.podCIDR) : undefined;
  const waitingRemovals = removeStaleNetworks(observed, current, steps);
  const notReady = (reason: string, message: string): NetPlan => ({ steps, ready: false, reason, message, waitingRemovals });

  if (observed.wgKind === 'other') return notReady('InterfaceConflict', `an interface named ${name} exists and is not a WireGuard interface: the agent leaves it alone; remove it or choose another --wireguard-interface`);
  if (!desired.network) return notReady('NoPodCIDR', 'the hub has not allocated a pod CIDR to this node yet');
  const problem = networkProblem(desired.network);
  if (problem) return notReady('InvalidPodCIDR', problem);
  const { podCIDR, clusterCIDR } = desired.network;
  const conflicts = findConflicts(observed.routes, observed.addresses, { wireguard: name, bridges: ownBridges(observed.networks) }, desired.network);
  if (conflicts.length > 0) return notReady('CIDRConflict', describeConflicts(conflicts));

  const fresh = observed.wgKind === undefined;
  // A WireGuard interface of this name that holds another key is someone else's (an operator's
  // VPN, another agent's): configuring it would replace its key and peers.
  const key = observed.wg?.publicKey;
  if (!fresh && key && key !== NO_KEY && key !== desired.publicKey) return notReady('InterfaceConflict', `the WireGuard interface ${name} holds another key than this agent's: it is not the agent's, so it is left alone; remove it or choose another --wireguard-interface`);
  if (fresh) steps.push({ action: 'createInterface', name });
  if (fresh || !sameInterface(observed.wg, desired)) steps.push({ action: 'configureInterface', name, privateKey: desired.privateKey, port: desired.port, peers: desired.peers });
  if (fresh || !observed.wgLink || !observed.wgLink.up || observed.wgLink.mtu !== OVERLAY_MTU) steps.push({ action: 'linkUp', name, mtu: OVERLAY_MTU });
  // WireGuard starts a handshake without traffic only as a keepalive turns on: an entry that
  // carries no traffic (a candidate on trial, a relayed peer's) would never try again otherwise.
  const kick = (desired.startHandshake ?? []).filter((key) => desired.peers.some((p) => p.publicKey === key));
  if (kick.length > 0) steps.push({ action: 'startHandshake', name, publicKeys: kick, keepaliveSeconds: PERSISTENT_KEEPALIVE_SECONDS });
  const spec = bridgeSpec(desired.node, podCIDR, desired.routedGateway);
  if (!observed.networks.some((n) => n.name === spec.name)) steps.push({ action: 'createNetwork', spec });
  if (!observed.forwarding) steps.push({ action: 'enableForwarding' });
  // One route to the whole cluster CIDR through the tunnel; WireGuard's allowed IPs pick the peer.
  // `src` is the bridge's gateway: the device's own packets to pods elsewhere carry an address
  // the other side routes back.
  const own = ownRoutes(observed, name);
  const route = own.find((r) => r.dst === clusterCIDR && r.dev === name);
  if (fresh || !route || route.prefsrc !== spec.gateway) steps.push({ action: 'replaceRoute', dst: clusterCIDR, dev: name, src: spec.gateway });
  for (const r of own) if (r !== route && r.dev === name) steps.push({ action: 'deleteRoute', dst: r.dst, dev: name });
  if (observed.firewall !== firewallMarker(podCIDR, clusterCIDR)) steps.push({ action: 'applyFirewall', ruleset: firewallRuleset(podCIDR, clusterCIDR) });
  return { steps, ready: true, podNetwork: spec.name, waitingRemovals };
}

/** With `--overlay none`: everything of the overlay goes (its pods are moved by the pod planner first). */
function planRemoval(observed: ObservedNetwork, desired: DesiredOverlay): NetPlan {
  const steps: NetStep[] = [];
  // Routes on the interface go with it; those on a bridge go with its network.
  if (observed.wgKind === 'kernel' || observed.wgKind === 'wireguard-go') steps.push({ action: 'deleteInterface', name: desired.interface });
  if (observed.firewall !== undefined) steps.push({ action: 'deleteFirewall' });
  const waitingRemovals = removeStaleNetworks(observed, undefined, steps);
  return { steps, ready: true, waitingRemovals };
}

/** Networks of the overlay other than `current`: removed once no container of this node uses them. */
function removeStaleNetworks(observed: ObservedNetwork, current: string | undefined, steps: NetStep[]): string[] {
  const waiting: string[] = [];
  for (const n of observed.networks) {
    if (n.name === current) continue;
    if ((observed.networkUsers.get(n.name) ?? 0) > 0) waiting.push(n.name);
    else steps.push({ action: 'removeNetwork', name: n.name, reason: current ? `the pod CIDR is now ${current}` : 'the overlay is off or has no pod CIDR' });
  }
  return waiting;
}

/** What is wrong with the hub's network (it validates; this side checks again at its edge). */
export function networkProblem(network: DesiredNetwork): string | undefined {
  const pod = parseCidr(network.podCIDR);
  if ('error' in pod) return `network.podCIDR: ${pod.error}`;
  const cluster = parseCidr(network.clusterCIDR);
  if ('error' in cluster) return `network.clusterCIDR: ${cluster.error}`;
  if (!containsCidr(cluster, pod)) return `network.podCIDR: ${formatCidr(pod)} is not inside the cluster CIDR ${formatCidr(cluster)}`;
  if (pod.bits > 30) return `network.podCIDR: ${formatCidr(pod)} is too small for a bridge (at most /30)`;
  return undefined;
}

/** Whether the interface has the key, port and peers wanted (`wg syncconf` is needed otherwise). */
function sameInterface(state: WgInterfaceState | undefined, desired: DesiredOverlay): boolean {
  if (!state || state.publicKey !== desired.publicKey || state.listenPort !== desired.port) return false;
  return samePeers(state, desired.peers);
}

/**
 * The peers configured are the ones wanted: the same keys, allowed IPs and keepalive, and the
 * endpoint wanted where one is given (the path selector passes on an endpoint WireGuard learnt
 * from a roaming peer, so a roam is not undone here).
 */
export function samePeers(state: WgInterfaceState, peers: readonly WgPeerConfig[]): boolean {
  if (state.peers.length !== peers.length) return false;
  const byKey = new Map(state.peers.map((p) => [p.publicKey, p]));
  for (const want of peers) {
    const have = byKey.get(want.publicKey);
    if (!have) return false;
    if ([...have.allowedIPs].sort().join(',') !== [...want.allowedIPs].sort().join(',')) return false;
    if ((have.keepaliveSeconds ?? 0) !== (want.keepaliveSeconds ?? 0)) return false;
    if (want.endpoint && have.endpoint !== want.endpoint && !(isHostName(want.endpoint) && portOf(want.endpoint) === portOf(have.endpoint))) return false;
  }
  return true;
}

/** What `wg show` prints for the key of an interface not configured yet. */
const NO_KEY = '(none)';

/**
 * An endpoint given by name (the relay at the host of the MQTT URL): WireGuard shows it resolved,
 * so only its port can be compared, or every pass would configure the interface again.
 */
function isHostName(endpoint: string): boolean {
  return !/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(endpoint);
}

function portOf(endpoint: string | undefined): string | undefined {
  return endpoint?.slice(endpoint.lastIndexOf(':') + 1);
}

/** The device's own IPv4 addresses worth offering to peers: not loopback, not the overlay's, not in the cluster CIDR. */
export function ownAddresses(observed: Pick<ObservedNetwork, 'addresses' | 'networks'>, iface: string, clusterCIDR: string | undefined, advertise: string | undefined, max = 8): string[] {
  const bridges = ownBridges(observed.networks);
  const cluster = clusterCIDR ? parseCidr(clusterCIDR) : undefined;
  const inCluster = (ip: string) => cluster !== undefined && !('error' in cluster) && containsCidr(cluster, cidr(`${ip}/32`));
  const found = observed.addresses.filter((a) => a.ifname !== 'lo' && !a.local.startsWith('127.') && a.ifname !== iface && !bridges.has(a.ifname) && !inCluster(a.local)).map((a) => a.local);
  return [...new Set([...(advertise ? [advertise] : []), ...found])].slice(0, max);
}
