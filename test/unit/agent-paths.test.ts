import { describe, expect, it } from 'vitest';
import { PathSelector, type PathInput, type PathPlan } from '../../agent/network/paths.js';
import type { WgPeerState } from '../../shared/net/wireguard.js';
import { MAX_PEERS_PER_REPORT, type PeerAnnouncement, type RelayAnnouncement } from '../../shared/protocol/network.js';
import { heapUsedAfterGc } from './heap.js';
import { RELAY_KEY, T0, endpoint, observed, peer, peerMap, podCIDROf, relayAnnouncement, wgKey } from './network-builders.js';

const SELF = 'edge-a';
const self = peer({ node: SELF, n: 1, publicAddress: '203.0.113.7', endpoints: [endpoint('203.0.113.7', 'hub-observed'), endpoint('192.168.1.10', 'reported')] });
/** b: reachable at an advertised address or a NAT's public one, neither on this device's LAN. */
const b = peer({ node: 'edge-b', n: 2, publicAddress: '198.51.100.20', endpoints: [endpoint('192.0.2.10', 'advertised'), endpoint('198.51.100.20', 'hub-observed')] });
const B_KEY = wgKey(2);
const B_CIDR = podCIDROf(2);
const RELAY_UP = observed(RELAY_KEY, { endpoint: '198.51.100.1:51821', handshakeAgoS: 5, rx: 100, tx: 200 });

function input(peers: Map<string, PeerAnnouncement>, now: number, o: { relay?: RelayAnnouncement | null; observed?: WgPeerState[]; relayHost?: string; publicAddress?: string } = {}): PathInput {
  const relay = o.relay === null ? undefined : (o.relay ?? relayAnnouncement());
  return {
    self: { node: SELF, ...(o.publicAddress ? { publicAddress: o.publicAddress } : {}) },
    peers,
    ...(relay ? { relay } : {}),
    ...(o.relayHost ? { relayHost: o.relayHost } : {}),
    observed: o.observed ?? [],
    now,
  };
}

function entry(plan: PathPlan, publicKey: string) {
  const found = plan.wgPeers.find((p) => p.publicKey === publicKey);
  if (!found) return expect.fail(`no WireGuard entry for ${publicKey}`);
  return found;
}

function report(plan: PathPlan, node: string) {
  const found = plan.reports.find((r) => r.node === node);
  if (!found) return expect.fail(`no report for ${node}`);
  return found;
}

const s = (seconds: number) => T0 + seconds * 1000;

describe('PathSelector: candidates', () => {
  it('tries the LAN (reported) endpoints first for a peer behind the same public address, the hub\'s order otherwise', () => {
    const lanPeer = peer({ node: 'edge-c', n: 3, publicAddress: '203.0.113.7', endpoints: [endpoint('203.0.113.7', 'hub-observed', 51821), endpoint('192.168.1.20', 'reported')] });
    const farPeer = peer({ node: 'edge-d', n: 4, publicAddress: '198.51.100.40', endpoints: [endpoint('198.51.100.40', 'hub-observed'), endpoint('192.168.1.30', 'reported')] });
    // Self's public address comes from its own announcement when the caller does not give one.
    const plan = new PathSelector().plan(input(peerMap(self, lanPeer, farPeer), T0));
    expect(entry(plan, wgKey(3)).endpoint).toBe('192.168.1.20:51820');
    expect(entry(plan, wgKey(4)).endpoint).toBe('198.51.100.40:51820');
  });

  it('leaves out loopback endpoints and repeats, and never configures this device itself', () => {
    const c = peer({ node: 'edge-c', n: 3, endpoints: [endpoint('127.0.0.1', 'advertised'), endpoint('192.0.2.30', 'relay-observed'), endpoint('192.0.2.30', 'hub-observed'), endpoint('192.0.2.31', 'reported')] });
    const selector = new PathSelector();
    const plan = selector.plan(input(peerMap(self, c), T0));
    expect(entry(plan, wgKey(3)).endpoint).toBe('192.0.2.30:51820');
    expect(plan.wgPeers.find((p) => p.publicKey === self.publicKey)).toBeUndefined();
    // The repeat is no candidate of its own: the next one is the reported address.
    expect(entry(selector.plan(input(peerMap(self, c), s(12))), wgKey(3)).endpoint).toBe('192.0.2.31:51820');
  });

  it('moves to the next candidate when a trial brings no handshake, then to the relay with the CIDR on the relay entry', () => {
    const selector = new PathSelector();
    const peers = peerMap(self, b);

    const first = selector.plan(input(peers, T0, { observed: [RELAY_UP] }));
    expect(entry(first, B_KEY)).toEqual({ publicKey: B_KEY, endpoint: '192.0.2.10:51820', allowedIPs: [], keepaliveSeconds: 25 });
    expect(entry(first, RELAY_KEY)).toEqual({ publicKey: RELAY_KEY, endpoint: '198.51.100.1:51821', allowedIPs: [B_CIDR], keepaliveSeconds: 25 });
    // While a candidate is on trial, traffic goes through the relay: the report says so.
    expect(report(first, 'edge-b').path).toBe('relay');
    expect(first.nextCheckMs).toBe(5_000);
    // A new entry's handshake starts as syncconf adds it: nothing to start by hand.
    expect(first.startHandshake).toEqual([]);

    // 5 s in: still the first candidate's trial.
    const during = selector.plan(input(peers, s(5), { observed: [RELAY_UP] }));
    expect(entry(during, B_KEY).endpoint).toBe('192.0.2.10:51820');
    expect(during.startHandshake).toEqual([]);
    const second = selector.plan(input(peers, s(12), { observed: [RELAY_UP] }));
    expect(entry(second, B_KEY).endpoint).toBe('198.51.100.20:51820');
    // Each new trial starts a handshake of its own (WireGuard gives up on one after 90 s).
    expect(second.startHandshake).toEqual([B_KEY]);
    expect(entry(second, RELAY_KEY).allowedIPs).toEqual([B_CIDR]);

    // Both failed: relayed, the first candidate kept on the entry, retried in 2 minutes.
    const relayed = selector.plan(input(peers, s(24), { observed: [RELAY_UP] }));
    expect(entry(relayed, B_KEY)).toEqual({ publicKey: B_KEY, endpoint: '192.0.2.10:51820', allowedIPs: [], keepaliveSeconds: 25 });
    expect(entry(relayed, RELAY_KEY).allowedIPs).toEqual([B_CIDR]);
    expect(report(relayed, 'edge-b')).toMatchObject({ path: 'relay', endpoint: '192.0.2.10:51820' });
    expect(relayed.nextCheckMs).toBe(10_000);
    expect(relayed.relay).toEqual({ latestHandshake: new Date(s(-5)).toISOString(), rxBytes: 100, txBytes: 200 });

    expect(relayed.startHandshake).toEqual([B_KEY]);

    const waiting = selector.plan(input(peers, s(100), { observed: [RELAY_UP] }));
    expect(entry(waiting, B_KEY).endpoint).toBe('192.0.2.10:51820');
    expect(waiting.startHandshake).toEqual([]);
    // The retry cycles to the next candidate, and starts a handshake on it.
    const retry = selector.plan(input(peers, s(144), { observed: [RELAY_UP] }));
    expect(entry(retry, B_KEY).endpoint).toBe('198.51.100.20:51820');
    expect(retry.startHandshake).toEqual([B_KEY]);
    expect(entry(selector.plan(input(peers, s(264), { observed: [RELAY_UP] })), B_KEY).endpoint).toBe('192.0.2.10:51820');
  });

  it('reports connecting while neither a direct handshake nor the relay\'s is fresh, and starts the relay\'s handshake every 30 s', () => {
    const selector = new PathSelector();
    const plan = selector.plan(input(peerMap(self, b), T0, { observed: [observed(RELAY_KEY)] }));
    expect(report(plan, 'edge-b').path).toBe('connecting');
    expect(entry(plan, RELAY_KEY).allowedIPs).toEqual([B_CIDR]);
    expect(plan.startHandshake).toEqual([RELAY_KEY]);
    expect(selector.plan(input(peerMap(self, b), s(5), { observed: [observed(RELAY_KEY)] })).startHandshake).toEqual([]);
    // (b's first trial ended meanwhile: its next one starts too.)
    expect(selector.plan(input(peerMap(self, b), s(30), { observed: [observed(RELAY_KEY)] })).startHandshake).toEqual([B_KEY, RELAY_KEY]);
    // Once the relay answers, nothing more is started for it.
    expect(selector.plan(input(peerMap(self, b), s(60), { observed: [observed(RELAY_KEY, { handshakeAgoS: 1, now: s(60) })] })).startHandshake).not.toContain(RELAY_KEY);
  });
});

describe('PathSelector: direct and back', () => {
  it('goes direct on a fresh handshake: the CIDR moves to the peer\'s own entry', () => {
    const selector = new PathSelector();
    const peers = peerMap(self, b);
    selector.plan(input(peers, T0, { observed: [RELAY_UP] }));
    const plan = selector.plan(input(peers, s(4), { observed: [RELAY_UP, observed(B_KEY, { endpoint: '192.0.2.10:51820', handshakeAgoS: 1, now: s(4), rx: 10, tx: 20 })] }));
    expect(entry(plan, B_KEY)).toEqual({ publicKey: B_KEY, endpoint: '192.0.2.10:51820', allowedIPs: [B_CIDR], keepaliveSeconds: 25 });
    expect(entry(plan, RELAY_KEY).allowedIPs).toEqual([]);
    expect(report(plan, 'edge-b')).toEqual({ node: 'edge-b', path: 'direct', endpoint: '192.0.2.10:51820', latestHandshake: new Date(s(3)).toISOString(), rxBytes: 10, txBytes: 20 });
    expect(plan.nextCheckMs).toBe(30_000);
  });

  it('goes direct again after being relayed, when the entry handshakes (the other end reached it)', () => {
    const selector = new PathSelector();
    const peers = peerMap(self, b);
    for (const t of [0, 12, 24, 60]) selector.plan(input(peers, s(t), { observed: [RELAY_UP] }));
    const plan = selector.plan(input(peers, s(70), { observed: [RELAY_UP, observed(B_KEY, { endpoint: '198.51.100.20:40001', handshakeAgoS: 2, now: s(70) })] }));
    expect(entry(plan, B_KEY).allowedIPs).toEqual([B_CIDR]);
    expect(entry(plan, B_KEY).endpoint).toBe('198.51.100.20:40001');
    expect(entry(plan, RELAY_KEY).allowedIPs).toEqual([]);
  });

  it('falls back to the relay when a direct handshake goes stale, and tries the candidates again from the first', () => {
    const selector = new PathSelector();
    const peers = peerMap(self, b);
    const handshakeAt = s(0);
    const live = (now: number) => [observed(RELAY_KEY, { handshakeAgoS: 5, now }), observed(B_KEY, { endpoint: '198.51.100.20:51820', handshakeAgoS: (now - handshakeAt) / 1000, now })];
    selector.plan(input(peers, s(0), { observed: live(s(0)) }));
    // Due again when the handshake turns stale (195 s after it), not later.
    expect(selector.plan(input(peers, s(180), { observed: live(s(180)) })).nextCheckMs).toBe(15_000);
    const stale = selector.plan(input(peers, s(195), { observed: live(s(195)) }));
    expect(entry(stale, B_KEY)).toEqual({ publicKey: B_KEY, endpoint: '192.0.2.10:51820', allowedIPs: [], keepaliveSeconds: 25 });
    expect(entry(stale, RELAY_KEY).allowedIPs).toEqual([B_CIDR]);
    expect(report(stale, 'edge-b').path).toBe('relay');
    expect(stale.nextCheckMs).toBe(5_000);
    expect(stale.startHandshake).toEqual([B_KEY]);
  });

  it('keeps the endpoint WireGuard roamed to while the handshake is fresh', () => {
    const selector = new PathSelector();
    const peers = peerMap(self, b);
    selector.plan(input(peers, T0));
    const roamed = observed(B_KEY, { endpoint: '198.51.100.99:61000', handshakeAgoS: 1, now: s(3) });
    const plan = selector.plan(input(peers, s(3), { observed: [RELAY_UP, roamed] }));
    expect(entry(plan, B_KEY).endpoint).toBe('198.51.100.99:61000');
    // Still kept on the next look, long after the candidate's trial would have ended.
    const later = observed(B_KEY, { endpoint: '198.51.100.99:61000', handshakeAgoS: 30, now: s(100) });
    expect(entry(selector.plan(input(peers, s(100), { observed: [RELAY_UP, later] })), B_KEY).endpoint).toBe('198.51.100.99:61000');
  });

  it('restarts the candidates at once when the peer\'s announced endpoints change', () => {
    const selector = new PathSelector();
    for (const t of [0, 12, 24]) selector.plan(input(peerMap(self, b), s(t), { observed: [RELAY_UP] }));
    // The same endpoints in a newer announcement change nothing.
    const bumped = { ...b, endpoints: b.endpoints.map((e) => ({ ...e })), generation: 2 };
    const same = selector.plan(input(peerMap(self, bumped), s(30), { observed: [RELAY_UP] }));
    expect(same.nextCheckMs).toBe(10_000);

    const moved = peer({ node: 'edge-b', n: 2, publicAddress: '198.51.100.77', generation: 3, endpoints: [endpoint('198.51.100.77', 'hub-observed'), endpoint('192.0.2.10', 'advertised')] });
    const plan = selector.plan(input(peerMap(self, moved), s(31), { observed: [RELAY_UP] }));
    expect(entry(plan, B_KEY).endpoint).toBe('198.51.100.77:51820');
    expect(plan.nextCheckMs).toBe(5_000);
    expect(entry(selector.plan(input(peerMap(self, moved), s(43), { observed: [RELAY_UP] })), B_KEY).endpoint).toBe('192.0.2.10:51820');
  });

  it('moves a direct peer to its new endpoints once when they change (a NAT moved), unless WireGuard already uses one of them', () => {
    const selector = new PathSelector();
    const oldEndpoint = '198.51.100.20:51820';
    selector.plan(input(peerMap(self, b), s(0), { observed: [RELAY_UP, observed(B_KEY, { endpoint: oldEndpoint, handshakeAgoS: 1 })] }));
    const moved = peer({ node: 'edge-b', n: 2, generation: 2, endpoints: [endpoint('198.51.100.77', 'hub-observed')] });
    const plan = selector.plan(input(peerMap(self, moved), s(10), { observed: [RELAY_UP, observed(B_KEY, { endpoint: oldEndpoint, handshakeAgoS: 11, now: s(10) })] }));
    expect(entry(plan, B_KEY)).toEqual({ publicKey: B_KEY, endpoint: '198.51.100.77:51820', allowedIPs: [B_CIDR], keepaliveSeconds: 25 });
    // From then on, roaming is followed again.
    const after = selector.plan(input(peerMap(self, moved), s(20), { observed: [RELAY_UP, observed(B_KEY, { endpoint: '198.51.100.77:3333', handshakeAgoS: 1, now: s(20) })] }));
    expect(entry(after, B_KEY).endpoint).toBe('198.51.100.77:3333');

    const again = peer({ node: 'edge-b', n: 2, generation: 3, endpoints: [endpoint('192.0.2.99', 'advertised'), endpoint('198.51.100.77', 'hub-observed', 3333)] });
    const kept = selector.plan(input(peerMap(self, again), s(30), { observed: [RELAY_UP, observed(B_KEY, { endpoint: '198.51.100.77:3333', handshakeAgoS: 1, now: s(30) })] }));
    expect(entry(kept, B_KEY).endpoint).toBe('198.51.100.77:3333');
  });

  it('starts over for a peer with a new key: the old key\'s handshake does not count', () => {
    const selector = new PathSelector();
    selector.plan(input(peerMap(self, b), s(0), { observed: [RELAY_UP, observed(B_KEY, { endpoint: '192.0.2.10:51820', handshakeAgoS: 1 })] }));
    const rekeyed = { ...b, publicKey: wgKey(222), generation: 2 };
    const plan = selector.plan(input(peerMap(self, rekeyed), s(5), { observed: [RELAY_UP, observed(B_KEY, { endpoint: '192.0.2.10:51820', handshakeAgoS: 1, now: s(5) })] }));
    expect(entry(plan, wgKey(222)).allowedIPs).toEqual([]);
    expect(entry(plan, RELAY_KEY).allowedIPs).toEqual([B_CIDR]);
    expect(plan.wgPeers.find((p) => p.publicKey === B_KEY)).toBeUndefined();
  });
});

describe('PathSelector: the peer set', () => {
  it('drops a removed peer, and a peer that comes back starts its candidates over', () => {
    const selector = new PathSelector();
    for (const t of [0, 12, 24]) selector.plan(input(peerMap(self, b), s(t), { observed: [RELAY_UP] }));
    const gone = selector.plan(input(peerMap(self), s(30), { observed: [RELAY_UP] }));
    expect(gone.wgPeers).toEqual([{ publicKey: RELAY_KEY, endpoint: '198.51.100.1:51821', allowedIPs: [], keepaliveSeconds: 25 }]);
    expect(gone.reports).toEqual([]);
    expect(gone.nextCheckMs).toBe(30_000);
    const back = selector.plan(input(peerMap(self, b), s(31), { observed: [RELAY_UP] }));
    expect(entry(back, B_KEY).endpoint).toBe('192.0.2.10:51820');
    expect(back.nextCheckMs).toBe(5_000);
  });

  it('without a relay, keeps each peer\'s CIDR on its own entry, keeps trying, and reports connecting', () => {
    const selector = new PathSelector();
    const plan = selector.plan(input(peerMap(self, b), T0, { relay: null }));
    expect(plan.wgPeers).toEqual([{ publicKey: B_KEY, endpoint: '192.0.2.10:51820', allowedIPs: [B_CIDR], keepaliveSeconds: 25 }]);
    expect(plan.relay).toBeUndefined();
    expect(report(plan, 'edge-b').path).toBe('connecting');
    expect(entry(selector.plan(input(peerMap(self, b), s(12), { relay: null })), B_KEY).endpoint).toBe('198.51.100.20:51820');
  });

  it('reaches a relay that lists no endpoint at the MQTT URL\'s host, with the relay\'s port', () => {
    const relay = relayAnnouncement({ endpoints: [] });
    expect(entry(new PathSelector().plan(input(peerMap(self, b), T0, { relay, relayHost: 'hub.example.net' })), RELAY_KEY).endpoint).toBe('hub.example.net:51821');
    expect(entry(new PathSelector().plan(input(peerMap(self, b), T0, { relay, relayHost: '2001:db8::1' })), RELAY_KEY).endpoint).toBe('[2001:db8::1]:51821');
    expect(entry(new PathSelector().plan(input(peerMap(self, b), T0, { relay })), RELAY_KEY).endpoint).toBeUndefined();
  });

  it('never puts one CIDR or one key in two entries: this device keeps its own, else the peer announced last has it', () => {
    const mine = peer({ node: 'edge-x', n: 9, podCIDR: self.podCIDR });
    const noCidr = { ...peer({ node: 'edge-y', n: 11 }), podCIDR: '' };
    // A node deleted while this device was away, whose CIDR went to edge-n since.
    const stale = peer({ node: 'edge-a0', n: 10, podCIDR: B_CIDR });
    const sameKey = peer({ node: 'edge-k', n: 12, publicKey: B_KEY });
    const plan = new PathSelector().plan(input(peerMap(mine, stale, b, noCidr, sameKey, self), T0, { relay: null }));
    expect(plan.wgPeers).toEqual([{ publicKey: B_KEY, allowedIPs: [podCIDROf(12)], keepaliveSeconds: 25 }]);
    expect(plan.reports.map((r) => r.node)).toEqual(['edge-k']);

    const other = new PathSelector().plan(input(peerMap(self, b, stale), T0, { relay: null }));
    expect(other.wgPeers).toEqual([{ publicKey: wgKey(10), allowedIPs: [B_CIDR], keepaliveSeconds: 25 }]);
  });

  it('reports at most MAX_PEERS_PER_REPORT peers: relayed and connecting first, then by name, and counts the rest', () => {
    const peers = peerMap(self);
    const handshakes: WgPeerState[] = [RELAY_UP];
    for (let n = 10; n < 10 + MAX_PEERS_PER_REPORT + 6; n++) {
      const node = `edge-${String(n).padStart(3, '0')}`;
      peers.set(node, peer({ node, n, endpoints: [endpoint(`192.0.2.${n}`, 'advertised')] }));
      // Every third peer has no handshake: relayed.
      if (n % 3 !== 0) handshakes.push(observed(wgKey(n), { endpoint: `192.0.2.${n}:51820`, handshakeAgoS: 1 }));
    }
    const plan = new PathSelector().plan(input(peers, T0, { observed: handshakes }));
    expect(plan.reports).toHaveLength(MAX_PEERS_PER_REPORT);
    expect(plan.morePeers).toBe(6);
    const relayed = plan.reports.filter((r) => r.path !== 'direct');
    expect(relayed.map((r) => r.node)).toEqual([...peers.keys()].filter((node) => node !== SELF && Number(node.slice(5)) % 3 === 0));
    expect(plan.reports.slice(0, relayed.length)).toEqual(relayed);
    const direct = plan.reports.slice(relayed.length).map((r) => r.node);
    expect(direct).toEqual([...direct].sort());
    expect(direct[0]).toBe('edge-010');
  });
});

describe('PathSelector at scale', () => {
  it('plans 10,000 peers in one pass (figures printed)', () => {
    const N = 10_000;
    const peers = peerMap(self);
    const handshakes: WgPeerState[] = [RELAY_UP];
    for (let n = 2; n < N + 2; n++) {
      const node = `edge-${n}`;
      peers.set(node, peer({ node, n, publicAddress: `198.51.${n >> 8}.${n & 0xff}`, endpoints: [endpoint(`192.0.2.${n & 0xff}`, 'advertised', 50000 + (n >> 8)), endpoint(`198.51.${n >> 8}.${n & 0xff}`, 'hub-observed'), endpoint(`10.0.${n >> 8}.${n & 0xff}`, 'reported')] }));
      if (n % 2 === 0) handshakes.push(observed(wgKey(n), { endpoint: `198.51.${n >> 8}.${n & 0xff}:51820`, handshakeAgoS: 30 }));
    }
    const heapBefore = heapUsedAfterGc();
    const selector = new PathSelector();
    let started = process.hrtime.bigint();
    const first = selector.plan(input(peers, T0, { observed: handshakes }));
    const firstMs = Number(process.hrtime.bigint() - started) / 1e6;
    started = process.hrtime.bigint();
    const rounds = 20;
    let last = first;
    for (let i = 1; i <= rounds; i++) last = selector.plan(input(peers, T0 + i * 5_000, { observed: handshakes }));
    const steadyMs = Number(process.hrtime.bigint() - started) / 1e6 / rounds;
    const withOutput = heapUsedAfterGc() - heapBefore;
    // What a selector keeps between plans (its tracks and reused maps), the plan's output dropped.
    const before = heapUsedAfterGc();
    const other = new PathSelector();
    other.plan(input(peers, T0, { observed: handshakes }));
    const kept = heapUsedAfterGc() - before;
    console.log(`PathSelector.plan, ${N} peers: first ${firstMs.toFixed(1)} ms, then ${steadyMs.toFixed(1)} ms a plan; the selector keeps ${Math.round(kept / N)} B a peer between plans; a plan's output is about ${Math.round((withOutput - kept) / 2 / N)} B a peer`);

    expect(last.wgPeers).toHaveLength(N + 1);
    expect(entry(last, RELAY_KEY).allowedIPs).toHaveLength(N / 2);
    expect(last.reports).toHaveLength(MAX_PEERS_PER_REPORT);
    expect(last.reports.every((r) => r.path === 'relay')).toBe(true);
    expect(last.morePeers).toBe(N - MAX_PEERS_PER_REPORT);
    expect(new Set(last.wgPeers.flatMap((p) => p.allowedIPs)).size).toBe(N);
  });
});
