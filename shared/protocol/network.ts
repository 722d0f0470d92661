import * as z from 'zod';
import { boundedString, MAX_ADDRESS_LENGTH, MAX_NAME_LENGTH, MAX_NODE_MESSAGE_LENGTH, MAX_REASON_LENGTH, MAX_TIMESTAMP_LENGTH } from './bounds.js';

/**
 * The pod network's messages (docs/PROTOCOL.md, 'The pod network'). The hub writes one retained
 * message per peer on `network/peers/{node}` and one for its relay on `network/relay`; a device
 * reads them all and writes none. A join, a leave or a moved endpoint costs every device one
 * message of a few hundred bytes.
 */

/** A WireGuard key: 32 bytes, base64 (44 characters with one '=' of padding). */
export const wireguardKeySchema = z.string().regex(/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$/, 'must be a WireGuard key (32 bytes, base64)');

/** Where a peer may be reached, and how the hub knows it. */
export const endpointSourceSchema = z.enum([
  /** The operator's --advertise-address on the device. */
  'advertised',
  /** The source address and port of the device's WireGuard packets as the hub's relay sees them: a NAT's mapping. */
  'relay-observed',
  /** The address the device's MQTT connection comes from (a NAT's public address), with the device's WireGuard port. */
  'hub-observed',
  /** An address of one of the device's own interfaces (a LAN address behind NAT). */
  'reported',
]);

export const peerEndpointSchema = z.object({
  /** An IPv4 address. */
  address: boundedString(MAX_ADDRESS_LENGTH),
  port: z.number().int().min(1).max(65535),
  source: endpointSourceSchema,
});

/**
 * hub → devices, retained, on `network/peers/{node}`: one peer of the overlay. An empty
 * retained payload clears it (the node was deleted). Endpoints come in the hub's order of
 * preference; `publicAddress` is where the device's connection to the hub comes from, so that
 * two devices behind one NAT know to try each other's LAN addresses first.
 */
export const peerAnnouncementSchema = z.object({
  v: z.literal(1),
  node: z.string().min(1).max(MAX_NAME_LENGTH),
  publicKey: wireguardKeySchema,
  podCIDR: z.string().min(9).max(18),
  endpoints: z.array(peerEndpointSchema).max(8),
  publicAddress: boundedString(MAX_ADDRESS_LENGTH).optional(),
  /** Bumped by the hub on every change, so a device can tell an old message from a new one. */
  generation: z.number().int().min(0),
});

/**
 * hub → devices, retained, on `network/relay`: the hub's own WireGuard peer, which forwards
 * between devices that cannot reach each other directly. Empty (cleared) when the hub runs no
 * relay. `endpoints` may be empty: a device then uses its MQTT URL's host with `port`.
 */
export const relayAnnouncementSchema = z.object({
  v: z.literal(1),
  publicKey: wireguardKeySchema,
  port: z.number().int().min(1).max(65535),
  endpoints: z.array(z.object({ address: boundedString(MAX_ADDRESS_LENGTH), port: z.number().int().min(1).max(65535) })).max(8),
  clusterCIDR: z.string().min(9).max(18),
});

/** In the desired set of a node: the pod network it is to build. Absent: the node has no pod CIDR yet. */
export const desiredNetworkSchema = z.object({
  podCIDR: z.string().min(9).max(18),
  clusterCIDR: z.string().min(9).max(18),
  /** The Services' virtual IPs come from it (the hub's --service-cidr); absent from an older hub. */
  serviceCIDR: z.string().min(9).max(18).optional(),
  /** The node's site (its label topology.kubernetes.io/zone, else site), for topology-aware routing; absent when it has none. */
  site: z.string().min(1).max(63).optional(),
});

/** How the device's traffic to one peer goes now. */
export const peerPathSchema = z.enum(['direct', 'relay', 'connecting']);

/** One peer as the device sees it (the WireGuard interface's figures for it). */
export const peerReportSchema = z.object({
  node: z.string().min(1).max(MAX_NAME_LENGTH),
  path: peerPathSchema,
  /** The endpoint WireGuard last used for it (ip:port). */
  endpoint: boundedString(MAX_ADDRESS_LENGTH).optional(),
  latestHandshake: z.string().max(MAX_TIMESTAMP_LENGTH).optional(),
  rxBytes: z.number().int().min(0),
  txBytes: z.number().int().min(0),
});

/** The most peers one status report lists (a device may have thousands; the rest are counted). */
export const MAX_PEERS_PER_REPORT = 64;

/** agent → hub, in the node report: the device's side of the overlay. */
export const nodeNetworkReportSchema = z.object({
  /** 'wireguard' when the overlay is on, 'none' when the operator turned it off. */
  overlay: z.enum(['wireguard', 'none']),
  /** Ready when the interface, the pod network and the routes are in place. */
  ready: z.boolean(),
  /** Why not ready (NetworkUnavailable's reason and message). */
  reason: boundedString(MAX_REASON_LENGTH).optional(),
  message: boundedString(MAX_NODE_MESSAGE_LENGTH).optional(),
  publicKey: wireguardKeySchema.optional(),
  port: z.number().int().min(1).max(65535).optional(),
  /** 'kernel' or 'wireguard-go'. */
  implementation: z.enum(['kernel', 'wireguard-go']).optional(),
  interface: boundedString(MAX_NAME_LENGTH).optional(),
  /** The device's own addresses worth trying (its interfaces' IPv4 addresses; --advertise-address first). */
  addresses: z.array(boundedString(MAX_ADDRESS_LENGTH)).max(8).optional(),
  advertiseAddress: boundedString(MAX_ADDRESS_LENGTH).optional(),
  /** The pod CIDR the device has taken into use. */
  podCIDR: z.string().max(18).optional(),
  peers: z.array(peerReportSchema).max(MAX_PEERS_PER_REPORT).optional(),
  /** Peers beyond the list. */
  morePeers: z.number().int().min(0).optional(),
  relay: z.object({ latestHandshake: z.string().max(MAX_TIMESTAMP_LENGTH).optional(), rxBytes: z.number().int().min(0), txBytes: z.number().int().min(0) }).optional(),
});

export type PeerEndpoint = z.infer<typeof peerEndpointSchema>;
export type PeerAnnouncement = z.infer<typeof peerAnnouncementSchema>;
export type RelayAnnouncement = z.infer<typeof relayAnnouncementSchema>;
export type DesiredNetwork = z.infer<typeof desiredNetworkSchema>;
export type PeerReport = z.infer<typeof peerReportSchema>;
export type NodeNetworkReport = z.infer<typeof nodeNetworkReportSchema>;

/** WireGuard's defaults the overlay uses: its port, the keepalive toward and from peers behind NAT, the MTU on a 1500 underlay. */
export const WIREGUARD_DEFAULT_PORT = 51820;
export const PERSISTENT_KEEPALIVE_SECONDS = 25;
export const OVERLAY_MTU = 1420;
export const DEFAULT_CLUSTER_CIDR = '10.42.0.0/16';
export const DEFAULT_NODE_CIDR_MASK_SIZE = 24;
