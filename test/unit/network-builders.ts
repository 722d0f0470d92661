/**
 * Builders for the overlay's unit tests: peers as the hub announces them, and WireGuard peers as
 * the interface reports them. A test says "b behind NAT 203.0.113.7, handshake 10 s ago", and
 * the builder fills in keys, CIDRs and counters.
 */
import type { WgPeerState } from '../../shared/net/wireguard.js';
import type { PeerAnnouncement, PeerEndpoint, RelayAnnouncement } from '../../shared/protocol/network.js';

/** A fixed clock: handshakes are "seconds ago" relative to it. */
export const T0 = Date.parse('2026-01-01T12:00:00Z');

/** A WireGuard public key made from a number: 32 bytes, base64, distinct for each number. */
export function wgKey(n: number): string {
  const bytes = Buffer.alloc(32, 0x5a);
  bytes.writeUInt32BE(n >>> 0, 0);
  return bytes.toString('base64');
}

export const RELAY_KEY = wgKey(0xffff_fff0);

export function endpoint(address: string, source: PeerEndpoint['source'], port = 51820): PeerEndpoint {
  return { address, port, source };
}

export interface PeerOptions {
  node: string;
  /** Index of the node: its key and its /24 in 10.42.0.0/16 when not given. */
  n: number;
  endpoints?: PeerEndpoint[];
  publicAddress?: string;
  generation?: number;
  podCIDR?: string;
  publicKey?: string;
}

export function peer(o: PeerOptions): PeerAnnouncement {
  return {
    v: 1,
    node: o.node,
    publicKey: o.publicKey ?? wgKey(o.n),
    podCIDR: o.podCIDR ?? podCIDROf(o.n),
    endpoints: o.endpoints ?? [],
    ...(o.publicAddress ? { publicAddress: o.publicAddress } : {}),
    generation: o.generation ?? 1,
  };
}

/** The n-th /24 from 10.42.0.0 on (10.42.n.0/24 for n < 256; up to 53,000 nodes). */
export function podCIDROf(n: number): string {
  return `10.${42 + (n >> 8)}.${n & 0xff}.0/24`;
}

export function relayAnnouncement(o: Partial<RelayAnnouncement> = {}): RelayAnnouncement {
  return { v: 1, publicKey: RELAY_KEY, port: 51821, endpoints: [{ address: '198.51.100.1', port: 51821 }], clusterCIDR: '10.42.0.0/16', ...o };
}

export function peerMap(...peers: PeerAnnouncement[]): Map<string, PeerAnnouncement> {
  return new Map(peers.map((p) => [p.node, p]));
}

/** A WireGuard peer as `wg show dump` reports it; `handshakeAgoS` undefined: no handshake yet. */
export function observed(publicKey: string, o: { endpoint?: string; handshakeAgoS?: number; now?: number; rx?: number; tx?: number; allowedIPs?: string[] } = {}): WgPeerState {
  const now = o.now ?? T0;
  return {
    publicKey,
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    allowedIPs: o.allowedIPs ?? [],
    latestHandshakeMs: o.handshakeAgoS === undefined ? 0 : now - o.handshakeAgoS * 1000,
    rxBytes: o.rx ?? 0,
    txBytes: o.tx ?? 0,
    keepaliveSeconds: 25,
  };
}

export function payloadOf(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
