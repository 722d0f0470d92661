import type { WgPeerConfig, WgPeerState } from '../../shared/net/wireguard.js';
import { MAX_PEERS_PER_REPORT, PERSISTENT_KEEPALIVE_SECONDS, type PeerAnnouncement, type PeerEndpoint, type PeerReport, type RelayAnnouncement } from '../../shared/protocol/network.js';

/**
 * How the device reaches each peer: directly (which of its endpoints), or through the hub's
 * relay. Decisions are made from the peer table, what the WireGuard interface reports and the
 * time given, plus this selector's memory of the candidates it tried: no I/O, no clock of its own.
 *
 * The one rule both ends of a pair share is WireGuard's handshake: a pair is direct exactly when
 * the handshake of its direct entry is fresh, and both ends see the same handshake. That makes
 * the choice symmetric, which it must be: a packet that came through the relay from pod IP X is
 * accepted only when X's CIDR is in the relay entry's allowed-IPs, and a direct one only when it
 * is in the direct entry's.
 */

export interface PathTimings {
  /** How long one candidate endpoint is tried before the next (WireGuard retries a handshake every 5 s). */
  trialMs: number;
  /** While relayed, how often the next candidate is tried directly (the entry keeps handshaking on the current one meanwhile). */
  retryMs: number;
  /** A handshake younger than this is fresh: WireGuard's REJECT_AFTER_TIME (180 s) plus a margin; with keepalive a live pair re-handshakes every 2 minutes. */
  freshMs: number;
  /** The next look while a candidate is on trial: soon after its handshake would be seen. */
  trialPollMs: number;
  /** The next look while a peer is relayed: a handshake on its direct entry moves it back, and both ends must see that soon. */
  relayPollMs: number;
  /** The next look when every peer is direct. */
  settledMs: number;
  /** How often a handshake with the relay is started again while the relay's is not fresh. */
  relayKickMs: number;
  /** The shortest wait, so that a deadline already past never makes a busy loop. */
  minCheckMs: number;
}

export const DEFAULT_PATH_TIMINGS: PathTimings = {
  trialMs: 12_000,
  retryMs: 120_000,
  freshMs: 195_000,
  trialPollMs: 5_000,
  relayPollMs: 10_000,
  settledMs: 30_000,
  relayKickMs: 30_000,
  minCheckMs: 1_000,
};

export interface PathInput {
  /** This device: its node name, and the public address its connection to the hub comes from (else its own announcement's). */
  self: { node: string; publicAddress?: string };
  peers: ReadonlyMap<string, PeerAnnouncement>;
  relay?: RelayAnnouncement;
  /** The host of the device's MQTT URL: the relay's address when its announcement lists none. */
  relayHost?: string;
  /** The WireGuard interface's peers as it reports them now. */
  observed: readonly WgPeerState[];
  /** Milliseconds since the epoch. */
  now: number;
}

export interface PathPlan {
  /** Every peer entry of the interface, the relay's last: the whole set `wg syncconf` is to make. */
  wgPeers: WgPeerConfig[];
  /**
   * Keys of entries on which a handshake is to start now (a new candidate, a retry of direct, the
   * relay unreachable), after the set is applied. WireGuard sends a keepalive, and with it starts
   * a handshake, only when a peer's keepalive is turned on; it gives up on a handshake after
   * 90 s and, with no allowed-IPs to carry traffic, a relayed peer's entry would never try again.
   * So the data plane turns these entries' keepalive off and on again (`wg set IFACE peer KEY
   * persistent-keepalive 0`, then 25; one `wg` call can name many peers). A new entry needs none:
   * syncconf turns its keepalive on.
   */
  startHandshake: string[];
  /** At most MAX_PEERS_PER_REPORT peers, relayed and connecting first, then by name. */
  reports: PeerReport[];
  /** Peers configured but not in `reports`. */
  morePeers: number;
  relay?: { latestHandshake?: string; rxBytes: number; txBytes: number };
  /** In how many milliseconds plan() should run again (a trial ends, a retry is due, a handshake goes stale). */
  nextCheckMs: number;
}

type Phase = 'trying' | 'direct' | 'relay';

/** What the selector remembers of one peer: a few numbers and two references into its announcement. */
interface Track {
  publicKey: string;
  /** The announcement's endpoints the candidates were made from (a new array means a new announcement). */
  endpoints: readonly PeerEndpoint[];
  sameNat: boolean;
  phase: Phase;
  /** Index into the peer's candidates of the one configured. */
  candidate: number;
  /** trying: when this candidate's trial ends; relay: when the next candidate is tried. */
  until: number;
  /** Set when the candidates restart while the peer is direct: this plan sets the first candidate once. */
  pin: boolean;
  /** A trial began (a new candidate, a retry): its handshake is to be started. */
  kick: boolean;
  /** The plan that last saw the peer: a track not seen is dropped. */
  epoch: number;
}

export class PathSelector {
  private readonly timings: PathTimings;
  private readonly tracks = new Map<string, Track>();
  private epoch = 0;
  // Indexes a plan builds and empties again: the only per-peer memory a plan needs besides its output.
  private readonly observedByKey = new Map<string, WgPeerState>();
  private readonly cidrOwner = new Map<string, string>();
  private readonly keyOwner = new Map<string, string>();
  private relayKickAt = -Infinity;

  constructor(opts: Partial<PathTimings> = {}) {
    this.timings = { ...DEFAULT_PATH_TIMINGS, ...opts };
  }

  plan(input: PathInput): PathPlan {
    const t = this.timings;
    const { now, peers, relay } = input;
    const epoch = ++this.epoch;
    const selfAnnouncement = peers.get(input.self.node);
    const selfPublic = input.self.publicAddress ?? selfAnnouncement?.publicAddress;

    this.observedByKey.clear();
    for (const o of input.observed) this.observedByKey.set(o.publicKey, o);
    const relayObserved = relay ? this.observedByKey.get(relay.publicKey) : undefined;
    const relayUp = relayObserved !== undefined && this.fresh(relayObserved, now);
    this.claimOwners(input.self.node, selfAnnouncement, peers, relay);

    const wgPeers: WgPeerConfig[] = [];
    const relayAllowed: string[] = [];
    const reports: PeerReport[] = [];
    const startHandshake: string[] = [];
    let configured = 0;
    let due = Infinity;
    let anyTrying = false;
    let anyRelayed = false;

    for (const [node, peer] of peers) {
      if (node === input.self.node || !peer.podCIDR) continue;
      // Two peers claiming one CIDR or one key: the one announced last has it, the other is left out.
      if (this.cidrOwner.get(peer.podCIDR) !== node || this.keyOwner.get(peer.publicKey) !== node) continue;
      const sameNat = selfPublic !== undefined && peer.publicAddress === selfPublic;
      const track = this.track(node, peer, sameNat, now);
      track.epoch = epoch;
      const observed = this.observedByKey.get(peer.publicKey);
      let endpoint: string | undefined;
      const fresh = observed !== undefined && this.fresh(observed, now);

      if (fresh) {
        track.phase = 'direct';
        const candidate = candidateAt(peer.endpoints, sameNat, track.candidate);
        if (track.pin) {
          // New endpoints announced (a NAT moved): go to the first of them now, unless WireGuard already talks to one of them.
          endpoint = observed.endpoint !== undefined && isCandidate(peer.endpoints, sameNat, observed.endpoint) ? observed.endpoint : candidate && format(candidate);
          track.pin = false;
        } else {
          // The peer came from where WireGuard saw it last (roaming follows a NAT's new mapping): never rewritten.
          endpoint = observed.endpoint ?? (candidate && format(candidate));
        }
        due = Math.min(due, observed.latestHandshakeMs + t.freshMs);
        track.kick = false;
      } else {
        track.pin = false;
        if (track.phase === 'direct') this.restart(track, now);
        else if (now >= track.until) {
          const count = candidateCount(peer.endpoints, sameNat);
          track.kick = true;
          if (track.phase === 'trying' && track.candidate + 1 < count) {
            track.candidate++;
            track.until = now + t.trialMs;
          } else {
            // Every candidate failed, or a retry is due: through the relay, cycling the direct tries slowly.
            track.candidate = track.phase === 'trying' ? 0 : count > 0 ? (track.candidate + 1) % count : 0;
            track.phase = 'relay';
            track.until = now + t.retryMs;
          }
        }
        const candidate = candidateAt(peer.endpoints, sameNat, track.candidate);
        endpoint = candidate && format(candidate);
        if (track.kick && endpoint) startHandshake.push(peer.publicKey);
        track.kick = false;
        due = Math.min(due, track.until);
        if (track.phase === 'trying') anyTrying = true;
        else anyRelayed = true;
      }

      // With a relay, a peer not direct is reached through it, and its direct entry carries no
      // traffic (keepalive still makes WireGuard handshake on it). With none, the direct entry is all there is.
      const direct = fresh || !relay;
      if (!direct) relayAllowed.push(peer.podCIDR);
      wgPeers.push(wgPeer(peer.publicKey, endpoint, direct ? [peer.podCIDR] : []));
      configured++;
      const path = fresh ? 'direct' : relay && relayUp ? 'relay' : 'connecting';
      keepReport(reports, node, path, observed, endpoint);
    }
    this.dropUnseen(epoch);
    // Only the tracks outlive a plan: a device holds as little per peer as it can between plans.
    this.observedByKey.clear();
    this.cidrOwner.clear();
    this.keyOwner.clear();

    let relayReport: PathPlan['relay'];
    if (relay) {
      const first = relay.endpoints[0];
      const endpoint = first ? `${first.address}:${first.port}` : input.relayHost ? `${hostPart(input.relayHost)}:${relay.port}` : undefined;
      wgPeers.push(wgPeer(relay.publicKey, endpoint, relayAllowed));
      if (!relayUp && endpoint && now >= this.relayKickAt) {
        startHandshake.push(relay.publicKey);
        this.relayKickAt = now + t.relayKickMs;
      }
      if (!relayUp) due = Math.min(due, this.relayKickAt);
      relayReport = {
        ...(relayObserved && relayObserved.latestHandshakeMs > 0 ? { latestHandshake: new Date(relayObserved.latestHandshakeMs).toISOString() } : {}),
        rxBytes: relayObserved?.rxBytes ?? 0,
        txBytes: relayObserved?.txBytes ?? 0,
      };
    }

    let next = t.settledMs;
    if (anyTrying) next = Math.min(next, t.trialPollMs);
    if (anyRelayed) next = Math.min(next, t.relayPollMs);
    next = Math.max(t.minCheckMs, Math.min(next, due - now));
    return { wgPeers, startHandshake, reports, morePeers: configured - reports.length, ...(relayReport ? { relay: relayReport } : {}), nextCheckMs: next };
  }

  private fresh(observed: WgPeerState, now: number): boolean {
    return observed.latestHandshakeMs > 0 && now - observed.latestHandshakeMs < this.timings.freshMs;
  }

  /** The track of a peer, its candidates restarted when its key, its endpoints or its NAT relation to this device changed. */
  private track(node: string, peer: PeerAnnouncement, sameNat: boolean, now: number): Track {
    let track = this.tracks.get(node);
    if (!track) {
      // A new entry: syncconf turns its keepalive on, which starts its handshake.
      track = { publicKey: peer.publicKey, endpoints: peer.endpoints, sameNat, phase: 'trying', candidate: 0, until: now + this.timings.trialMs, pin: false, kick: false, epoch: 0 };
      this.tracks.set(node, track);
      return track;
    }
    if (track.publicKey !== peer.publicKey) {
      // Another key is another tunnel: nothing observed of the old one counts.
      track.publicKey = peer.publicKey;
      track.endpoints = peer.endpoints;
      track.sameNat = sameNat;
      track.phase = 'trying';
      this.restart(track, now);
      return track;
    }
    if (track.sameNat !== sameNat || (track.endpoints !== peer.endpoints && !sameEndpoints(track.endpoints, peer.endpoints))) {
      if (track.phase === 'direct') {
        track.candidate = 0;
        track.pin = true;
      } else this.restart(track, now);
    }
    track.endpoints = peer.endpoints;
    track.sameNat = sameNat;
    return track;
  }

  private restart(track: Track, now: number): void {
    track.phase = 'trying';
    track.candidate = 0;
    track.until = now + this.timings.trialMs;
    track.pin = false;
    track.kick = true;
  }

  /**
   * Who holds each pod CIDR and each key: this device its own, else the peer latest in the
   * book's order, which is the order announcements came in. Two holders mean a stale
   * announcement, most likely of a node deleted while this device was away (the hub's empty
   * retained payload is not kept by the broker, so a device that reconnects never sees it): the
   * CIDR's new holder was announced after it.
   */
  private claimOwners(self: string, selfAnnouncement: PeerAnnouncement | undefined, peers: ReadonlyMap<string, PeerAnnouncement>, relay: RelayAnnouncement | undefined): void {
    this.cidrOwner.clear();
    this.keyOwner.clear();
    for (const [node, peer] of peers) {
      if (node === self || !peer.podCIDR) continue;
      this.cidrOwner.set(peer.podCIDR, node);
      this.keyOwner.set(peer.publicKey, node);
    }
    // This device's own CIDR and key are never a peer's; the relay's key is the relay's entry.
    if (selfAnnouncement?.podCIDR) this.cidrOwner.set(selfAnnouncement.podCIDR, self);
    if (selfAnnouncement) this.keyOwner.set(selfAnnouncement.publicKey, self);
    if (relay) this.keyOwner.set(relay.publicKey, '');
  }

  private dropUnseen(epoch: number): void {
    for (const [node, track] of this.tracks) if (track.epoch !== epoch) this.tracks.delete(node);
  }
}

// ---------------------------------------------------------------------------------------------
// Candidates: a peer's endpoints in the order they are tried, read in place (no array is made).
// With the same public address as this device (one NAT), its LAN ('reported') addresses come
// first; then the hub's order. Loopback, unspecified and repeated endpoints are left out.

function inPass(e: PeerEndpoint, pass: 0 | 1, sameNat: boolean): boolean {
  return sameNat ? (pass === 0) === (e.source === 'reported') : pass === 1;
}

function usable(e: PeerEndpoint): boolean {
  return !e.address.startsWith('127.') && e.address !== '0.0.0.0';
}

/** The endpoint at position `p` of the two passes over the list, when it is a candidate there. */
function eligible(endpoints: readonly PeerEndpoint[], sameNat: boolean, p: number): PeerEndpoint | undefined {
  const n = endpoints.length;
  const e = endpoints[p % n]!;
  if (!inPass(e, p < n ? 0 : 1, sameNat) || !usable(e)) return undefined;
  for (let q = 0; q < p; q++) {
    const f = endpoints[q % n]!;
    if (f.address === e.address && f.port === e.port && inPass(f, q < n ? 0 : 1, sameNat)) return undefined;
  }
  return e;
}

function candidateCount(endpoints: readonly PeerEndpoint[], sameNat: boolean): number {
  let count = 0;
  for (let p = 0; p < 2 * endpoints.length; p++) if (eligible(endpoints, sameNat, p)) count++;
  return count;
}

function candidateAt(endpoints: readonly PeerEndpoint[], sameNat: boolean, k: number): PeerEndpoint | undefined {
  let index = 0;
  for (let p = 0; p < 2 * endpoints.length; p++) {
    const e = eligible(endpoints, sameNat, p);
    if (e && index++ === k) return e;
  }
  return undefined;
}

function isCandidate(endpoints: readonly PeerEndpoint[], sameNat: boolean, endpoint: string): boolean {
  for (let p = 0; p < 2 * endpoints.length; p++) {
    const e = eligible(endpoints, sameNat, p);
    if (e && format(e) === endpoint) return true;
  }
  return false;
}

/** A peer entry, keepalive on: the handshake goes on with no traffic, and a NAT's mapping stays open both ways. */
function wgPeer(publicKey: string, endpoint: string | undefined, allowedIPs: string[]): WgPeerConfig {
  // Built without spreading: this runs for every peer of every plan.
  const entry: WgPeerConfig = { publicKey, allowedIPs, keepaliveSeconds: PERSISTENT_KEEPALIVE_SECONDS };
  if (endpoint) entry.endpoint = endpoint;
  return entry;
}

function format(e: { address: string; port: number }): string {
  return `${e.address}:${e.port}`;
}

/** A host for an endpoint: an IPv6 literal goes in brackets. */
function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function sameEndpoints(a: readonly PeerEndpoint[], b: readonly PeerEndpoint[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.address !== b[i]!.address || a[i]!.port !== b[i]!.port || a[i]!.source !== b[i]!.source) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Reports: the MAX_PEERS_PER_REPORT first by (relayed or connecting before direct, then name),
// kept sorted as peers go by; a report object is made only for a peer that gets in.

function rank(path: PeerReport['path']): number {
  return path === 'direct' ? 1 : 0;
}

function before(pathA: PeerReport['path'], nodeA: string, b: PeerReport): boolean {
  const ra = rank(pathA);
  const rb = rank(b.path);
  return ra !== rb ? ra < rb : nodeA < b.node;
}

function keepReport(reports: PeerReport[], node: string, path: PeerReport['path'], observed: WgPeerState | undefined, endpoint: string | undefined): void {
  if (reports.length >= MAX_PEERS_PER_REPORT && !before(path, node, reports[reports.length - 1]!)) return;
  let lo = 0;
  let hi = reports.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(path, node, reports[mid]!)) hi = mid;
    else lo = mid + 1;
  }
  const shown = observed?.endpoint ?? endpoint;
  reports.splice(lo, 0, {
    node,
    path,
    ...(shown ? { endpoint: shown } : {}),
    ...(observed && observed.latestHandshakeMs > 0 ? { latestHandshake: new Date(observed.latestHandshakeMs).toISOString() } : {}),
    rxBytes: observed?.rxBytes ?? 0,
    txBytes: observed?.txBytes ?? 0,
  });
  if (reports.length > MAX_PEERS_PER_REPORT) reports.pop();
}
