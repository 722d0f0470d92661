import type { WgInterfaceState } from '../../shared/net/wireguard.js';

// What the relay learns by reading its interface (`wg show dump`) every few seconds: where
// each device's packets come from (a NAT's mapping toward the hub), and the figures for
// /metrics. Pure: the caller passes the dump.

export interface ObservedEndpoint {
  address: string;
  port: number;
}

/** A peer is connected while its last handshake is younger than this (WireGuard rekeys every 2 minutes; 3 is its REJECT_AFTER_TIME). */
export const CONNECTED_WITHIN_MS = 180_000;

/** `a.b.c.d:port` as WireGuard prints an IPv4 endpoint; undefined for anything else (IPv6 is not the overlay's). */
export function parseEndpoint(text: string | undefined): ObservedEndpoint | undefined {
  const m = text ? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text) : null;
  if (!m) return undefined;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { address: m[1]!, port } : undefined;
}

/**
 * The endpoint of each node as the relay last saw it, and the nodes whose endpoint changed
 * (appeared, moved, or went with its peer) since `previous`.
 */
export function observeEndpoints(previous: ReadonlyMap<string, ObservedEndpoint>, state: WgInterfaceState, nodeOfKey: ReadonlyMap<string, string>): { endpoints: Map<string, ObservedEndpoint>; changed: string[] } {
  const endpoints = new Map<string, ObservedEndpoint>();
  for (const peer of state.peers) {
    const node = nodeOfKey.get(peer.publicKey);
    const endpoint = parseEndpoint(peer.endpoint);
    if (node !== undefined && endpoint) endpoints.set(node, endpoint);
  }
  const changed: string[] = [];
  for (const [node, endpoint] of endpoints) {
    const before = previous.get(node);
    if (!before || before.address !== endpoint.address || before.port !== endpoint.port) changed.push(node);
  }
  for (const node of previous.keys()) if (!endpoints.has(node)) changed.push(node);
  return { endpoints, changed };
}

/**
 * The relay's counters, summed over its peers: bytes each way and handshakes. WireGuard's own
 * per-peer figures start again at zero when a peer is removed or the interface is made anew, so
 * these add up increments. The first reading of a process is only a baseline: what the
 * interface carried before (it outlives the hub) was counted by the hub that ran then.
 */
export class RelayCounters {
  rxBytes = 0;
  txBytes = 0;
  handshakes = 0;
  peers = 0;
  connected = 0;
  private last = new Map<string, { rx: number; tx: number; handshakeMs: number }>();
  private primed = false;

  update(state: WgInterfaceState, nowMs: number): void {
    const next = new Map<string, { rx: number; tx: number; handshakeMs: number }>();
    for (const peer of state.peers) {
      const before = this.last.get(peer.publicKey);
      if (this.primed) {
        // A figure below the last one means the peer's counters started again.
        this.rxBytes += before && peer.rxBytes >= before.rx ? peer.rxBytes - before.rx : peer.rxBytes;
        this.txBytes += before && peer.txBytes >= before.tx ? peer.txBytes - before.tx : peer.txBytes;
        if (peer.latestHandshakeMs > 0 && peer.latestHandshakeMs !== before?.handshakeMs) this.handshakes++;
      }
      next.set(peer.publicKey, { rx: peer.rxBytes, tx: peer.txBytes, handshakeMs: peer.latestHandshakeMs });
    }
    this.last = next;
    this.primed = true;
    this.peers = state.peers.length;
    this.connected = state.peers.filter((p) => p.latestHandshakeMs > 0 && nowMs - p.latestHandshakeMs < CONNECTED_WITHIN_MS).length;
  }
}
