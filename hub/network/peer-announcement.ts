import { containsAddress, parseIPv4, type Cidr } from '../../shared/net/cidr.js';
import { WIREGUARD_DEFAULT_PORT, type NodeNetworkReport, type PeerAnnouncement, type PeerEndpoint } from '../../shared/protocol/network.js';

/**
 * What the hub tells every device of one peer (docs/PROTOCOL.md, 'The pod network'), built from
 * the node's object and what the broker and the relay saw of its device; no I/O.
 */

/** The most endpoints of one peer (the message's bound). */
export const MAX_ENDPOINTS = 8;

export interface PeerInputs {
  node: string;
  podCIDR: string | undefined;
  overlay: NodeNetworkReport | undefined;
  /** Where the device's MQTT connection comes from. */
  hubObserved?: string;
  /** The source of the device's WireGuard packets at the hub's relay (a NAT's mapping). */
  relayObserved?: { address: string; port: number };
}

/** The announcement without its generation; undefined when the node is no peer (no pod CIDR, no key, overlay off). */
export type PeerContent = Omit<PeerAnnouncement, 'generation'>;

const LOOPBACK: Cidr = { base: 0x7f000000, bits: 8 };
const UNSPECIFIED: Cidr = { base: 0, bits: 8 };

/** An address another device could send to: IPv4, and neither loopback nor 0.0.0.0/8. */
export function usableAddress(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const plain = text.startsWith('::ffff:') ? text.slice('::ffff:'.length) : text;
  const ip = parseIPv4(plain);
  if (ip === undefined || containsAddress(LOOPBACK, ip) || containsAddress(UNSPECIFIED, ip)) return undefined;
  return plain;
}

/**
 * Endpoints in order of preference: the operator's advertised address, the relay's observation
 * (a NAT's mapping, port included), the hub's observation (the NAT's public address with the
 * device's WireGuard port), then the device's own interface addresses (a LAN behind the same
 * NAT). The same address and port appear once, with the best source; at most MAX_ENDPOINTS.
 */
export function peerEndpoints(inputs: PeerInputs): PeerEndpoint[] {
  const overlay = inputs.overlay;
  const port = overlay?.port ?? WIREGUARD_DEFAULT_PORT;
  const candidates: { address: string | undefined; port: number; source: PeerEndpoint['source'] }[] = [
    { address: overlay?.advertiseAddress, port, source: 'advertised' },
    { address: inputs.relayObserved?.address, port: inputs.relayObserved?.port ?? port, source: 'relay-observed' },
    { address: inputs.hubObserved, port, source: 'hub-observed' },
    ...(overlay?.addresses ?? []).map((address) => ({ address, port, source: 'reported' as const })),
  ];
  const seen = new Set<string>();
  const endpoints: PeerEndpoint[] = [];
  for (const c of candidates) {
    const address = usableAddress(c.address);
    if (!address || seen.has(`${address}:${c.port}`)) continue;
    seen.add(`${address}:${c.port}`);
    endpoints.push({ address, port: c.port, source: c.source });
    if (endpoints.length === MAX_ENDPOINTS) break;
  }
  return endpoints;
}

export function peerContent(inputs: PeerInputs): PeerContent | undefined {
  const overlay = inputs.overlay;
  // A device is announced once its agent has looked at its network (it reports its addresses then):
  // its first report, sent as it connects, holds only its key, and announcing that would cost
  // every device a second message for the same join a moment later.
  if (!inputs.podCIDR || overlay?.overlay !== 'wireguard' || !overlay.publicKey || !(overlay.addresses?.length || overlay.implementation)) return undefined;
  const publicAddress = usableAddress(inputs.hubObserved);
  return { v: 1, node: inputs.node, publicKey: overlay.publicKey, podCIDR: inputs.podCIDR, endpoints: peerEndpoints(inputs), ...(publicAddress ? { publicAddress } : {}) };
}
