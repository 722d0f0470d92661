import type { WgPeerConfig, WgPeerState } from '../../shared/net/wireguard.js';
import { MAX_PEERS_PER_REPORT, PERSISTENT_KEEPALIVE_SECONDS, type PeerAnnouncement, type PeerReport, type RelayAnnouncement } from '../../shared/protocol/network.js';

export interface PathInput {
  self: { node: string; publicAddress?: string };
  peers: ReadonlyMap<string, PeerAnnouncement>;
  relay?: RelayAnnouncement;
  /** The host of the device's MQTT URL: where the relay is when it announces no endpoint. */
  relayHost?: string;
  observed: readonly WgPeerState[];
  now: number;
}

export interface PathPlan {
  /** Every peer entry of the interface: the whole set `wg syncconf` is to make. */
  wgPeers: WgPeerConfig[];
  /** Keys of entries on which a handshake is to start now (their keepalive turned off and on again). */
  startHandshake: string[];
  reports: PeerReport[];
  /** Peers configured but not in `reports`. */
  morePeers: number;
  relay?: { latestHandshake?: string; rxBytes: number; txBytes: number };
  /** When the selector wants to look again, in milliseconds. */
  nextCheckMs: number;
}

/**
 * STAND-IN for the path selector (another part of the overlay writes the real one: direct first,
 * the relay when a handshake goes stale, LAN addresses behind a shared NAT). This one configures
 * every peer directly at its first endpoint, keeps an endpoint WireGuard learnt from a roam, and
 * reports each peer from the interface's figures.
 */
export class PathSelector {
  plan(input: PathInput): PathPlan {
    const observed = new Map(input.observed.map((p) => [p.publicKey, p]));
    const wgPeers: WgPeerConfig[] = [];
    const reports: PeerReport[] = [];
    for (const peer of input.peers.values()) {
      if (peer.node === input.self.node) continue;
      const seen = observed.get(peer.publicKey);
      const first = peer.endpoints[0];
      const endpoint = seen?.endpoint ?? (first ? `${first.address}:${first.port}` : undefined);
      wgPeers.push({ publicKey: peer.publicKey, allowedIPs: [peer.podCIDR], keepaliveSeconds: PERSISTENT_KEEPALIVE_SECONDS, ...(endpoint ? { endpoint } : {}) });
      const handshake = seen && seen.latestHandshakeMs > 0 ? new Date(seen.latestHandshakeMs).toISOString() : undefined;
      reports.push({ node: peer.node, path: handshake ? 'direct' : 'connecting', ...(endpoint ? { endpoint } : {}), ...(handshake ? { latestHandshake: handshake } : {}), rxBytes: seen?.rxBytes ?? 0, txBytes: seen?.txBytes ?? 0 });
    }
    return { wgPeers, startHandshake: [], reports: reports.slice(0, MAX_PEERS_PER_REPORT), morePeers: Math.max(0, reports.length - MAX_PEERS_PER_REPORT), nextCheckMs: 30_000 };
  }
}
