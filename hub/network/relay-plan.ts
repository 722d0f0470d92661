import { formatCidr, overlaps, parseCidr, type Cidr } from '../../shared/net/cidr.js';
import { isOwnRoute, type IpRoute } from '../../shared/net/ip.js';
import type { WgPeerConfig } from '../../shared/net/wireguard.js';
import { relayAnnouncementSchema, wireguardKeySchema, type RelayAnnouncement } from '../../shared/protocol/network.js';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import type { RelayEndpoint } from './relay-flags.js';

// What the relay should be, worked out from the store without any I/O: its peers, its
// announcement, its routes. relay.ts applies it.

/** One device the relay forwards for. */
export interface RelayPeer {
  node: string;
  publicKey: string;
  podCIDR: string;
}

export interface PeerPlan {
  peers: RelayPeer[];
  /** Nodes left out although they have a key and a CIDR, and why (a clone's key, an overlapping block). */
  refused: { node: string; reason: string }[];
}

/** The part of a Node the plan reads. */
export interface NodeLike {
  metadata: { name: string; deletionTimestamp?: string };
  spec?: unknown;
  status?: unknown;
}

/** What of a node the relay depends on: a node whose signature is unchanged needs no new plan. */
export function peerSignature(node: NodeLike): string {
  const spec = node.spec as NodeSpec | undefined;
  const overlay = (node.status as NodeStatus | undefined)?.overlay;
  return `${spec?.podCIDR ?? ''} ${overlay?.overlay ?? ''} ${overlay?.publicKey ?? ''} ${node.metadata.deletionTimestamp ? 'deleting' : ''}`;
}

/**
 * The relay's peers: every Node with a pod CIDR whose agent reports the WireGuard overlay with a
 * public key; allowed-IPs its pod CIDR, so that the relay takes from a device only packets
 * from that device's pods and sends it only packets for them. WireGuard keeps one peer per key
 * and one owner per address: a key or a block claimed twice goes to the first node by name, and
 * the other is refused (a cloned device image, or a hand-edited podCIDR).
 */
export function planPeers(nodes: readonly NodeLike[], relayPublicKey: string): PeerPlan {
  const peers: RelayPeer[] = [];
  const refused: PeerPlan['refused'] = [];
  const keys = new Map<string, string>();
  const blocks: { node: string; cidr: Cidr }[] = [];
  for (const node of [...nodes].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0))) {
    const name = node.metadata.name;
    const podCIDR = (node.spec as NodeSpec | undefined)?.podCIDR;
    const overlay = (node.status as NodeStatus | undefined)?.overlay;
    if (node.metadata.deletionTimestamp || !podCIDR || overlay?.overlay !== 'wireguard' || !overlay.publicKey) continue;
    const cidr = parseCidr(podCIDR);
    if ('error' in cidr) {
      refused.push({ node: name, reason: `spec.podCIDR ${cidr.error}` });
      continue;
    }
    if (!wireguardKeySchema.safeParse(overlay.publicKey).success || overlay.publicKey === relayPublicKey) {
      refused.push({ node: name, reason: 'its public key is not a WireGuard key, or is the relay\'s own' });
      continue;
    }
    const keyOwner = keys.get(overlay.publicKey);
    if (keyOwner !== undefined) {
      refused.push({ node: name, reason: `node ${keyOwner} has the same public key (a cloned device?)` });
      continue;
    }
    const clash = blocks.find((b) => overlaps(b.cidr, cidr));
    if (clash) {
      refused.push({ node: name, reason: `its pod CIDR ${podCIDR} overlaps node ${clash.node}'s` });
      continue;
    }
    keys.set(overlay.publicKey, name);
    blocks.push({ node: name, cidr });
    peers.push({ node: name, publicKey: overlay.publicKey, podCIDR: formatCidr(cidr) });
  }
  return { peers, refused };
}

/** The peers as `wg syncconf` takes them: no endpoint (learnt from each device's handshake, NAT and all) and no keepalive (the devices keep their NAT mappings open). */
export function wireguardPeers(peers: readonly RelayPeer[]): WgPeerConfig[] {
  return peers.map((p) => ({ publicKey: p.publicKey, allowedIPs: [p.podCIDR] }));
}

/** The retained relay announcement. Without --relay-endpoint, devices use their MQTT URL's host with `port`. */
export function relayAnnouncement(publicKey: string, port: number, clusterCIDR: string, endpoint: RelayEndpoint | undefined): RelayAnnouncement {
  return relayAnnouncementSchema.parse({ v: 1, publicKey, port, endpoints: endpoint ? [{ address: endpoint.host, port: endpoint.port ?? port }] : [], clusterCIDR });
}

export interface RoutePlan {
  /** The cluster CIDR's route through the relay is missing (or not ours yet). */
  replace: boolean;
  /** Our routes through the relay to anything else (a cluster CIDR of an earlier run). */
  remove: string[];
  /** Another's route to exactly the cluster CIDR, which the relay must not take over. */
  conflict?: IpRoute;
}

/**
 * The relay's one route: the whole cluster CIDR through its interface, marked as ours. Routes of
 * the main table only; a more specific route of the host's (a LAN inside the cluster CIDR)
 * still wins, as routing does, and is left alone.
 */
export function planRoutes(routes: readonly IpRoute[], iface: string, clusterCIDR: string): RoutePlan {
  const main = routes.filter((r) => (r.table === undefined || r.table === 'main') && (r.type === undefined || r.type === 'unicast'));
  const mine = main.filter((r) => isOwnRoute(r) && r.dev === iface);
  const conflict = main.find((r) => r.dst === clusterCIDR && !(isOwnRoute(r) && r.dev === iface));
  return {
    replace: !mine.some((r) => r.dst === clusterCIDR),
    remove: mine.filter((r) => r.dst !== clusterCIDR).map((r) => r.dst),
    ...(conflict ? { conflict } : {}),
  };
}
