import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildProgram } from '../../hub/cli/main.js';
import { loadHubConfig } from '../../hub/config.js';
import { parseInterfaceName, parseRelayEndpoint, parseRelayMode } from '../../hub/network/relay-flags.js';
import { loadOrCreateRelayKey, RELAY_KEY_FILE } from '../../hub/network/relay-key.js';
import { observeEndpoints, parseEndpoint, RelayCounters, type ObservedEndpoint } from '../../hub/network/relay-observe.js';
import { peerSignature, planPeers, planRoutes, relayAnnouncement, wireguardPeers, type NodeLike } from '../../hub/network/relay-plan.js';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import type { WgInterfaceState, WgPeerState } from '../../shared/net/wireguard.js';
import { relayAnnouncementSchema } from '../../shared/protocol/network.js';

const key = () => publicKeyOf(generatePrivateKey());
const RELAY_KEY = key();

function node(name: string, podCIDR: string | undefined, publicKey: string | undefined, overlay: 'wireguard' | 'none' = 'wireguard'): NodeLike {
  return {
    metadata: { name },
    spec: podCIDR ? { podCIDR, podCIDRs: [podCIDR] } : {},
    status: { overlay: { overlay, ready: true, ...(publicKey ? { publicKey } : {}) } },
  };
}

describe('the relay peer plan', () => {
  it('makes a peer of every node with a pod CIDR and a WireGuard key, allowed-IPs its pod CIDR and no endpoint', () => {
    const [ka, kb] = [key(), key()];
    const plan = planPeers([node('b', '10.42.2.0/24', kb), node('a', '10.42.1.0/24', ka)], RELAY_KEY);
    expect(plan.peers).toEqual([
      { node: 'a', publicKey: ka, podCIDR: '10.42.1.0/24' },
      { node: 'b', publicKey: kb, podCIDR: '10.42.2.0/24' },
    ]);
    expect(wireguardPeers(plan.peers)).toEqual([
      { publicKey: ka, allowedIPs: ['10.42.1.0/24'] },
      { publicKey: kb, allowedIPs: ['10.42.2.0/24'] },
    ]);
    expect(plan.refused).toEqual([]);
  });

  it('skips nodes without a key, without a pod CIDR, with the overlay off, or being deleted', () => {
    const nodes = [
      node('no-key', '10.42.1.0/24', undefined),
      node('no-cidr', undefined, key()),
      node('overlay-none', '10.42.3.0/24', key(), 'none'),
      { metadata: { name: 'no-status' }, spec: { podCIDR: '10.42.4.0/24' } },
      { ...node('deleting', '10.42.5.0/24', key()), metadata: { name: 'deleting', deletionTimestamp: '2026-01-01T00:00:00Z' } },
    ];
    expect(planPeers(nodes, RELAY_KEY)).toEqual({ peers: [], refused: [] });
  });

  it('removes a deleted node: the plan is made from the nodes there are', () => {
    const [ka, kb] = [key(), key()];
    const before = planPeers([node('a', '10.42.1.0/24', ka), node('b', '10.42.2.0/24', kb)], RELAY_KEY);
    const after = planPeers([node('a', '10.42.1.0/24', ka)], RELAY_KEY);
    expect(before.peers.map((p) => p.node)).toEqual(['a', 'b']);
    expect(after.peers.map((p) => p.node)).toEqual(['a']);
    expect(JSON.stringify(after.peers)).not.toBe(JSON.stringify(before.peers));
  });

  it('gives a key or a block claimed twice to the first node by name and refuses the other, with the reason', () => {
    const shared = key();
    const plan = planPeers([node('z-clone', '10.42.9.0/24', shared), node('a', '10.42.1.0/24', shared), node('m', '10.42.1.128/25', key()), node('bad', '10.42.7.1/24', key()), node('own', '10.42.8.0/24', RELAY_KEY)], RELAY_KEY);
    expect(plan.peers.map((p) => p.node)).toEqual(['a']);
    expect(plan.refused.map((r) => r.node).sort()).toEqual(['bad', 'm', 'own', 'z-clone']);
    expect(plan.refused.find((r) => r.node === 'z-clone')?.reason).toMatch(/node a has the same public key/);
    expect(plan.refused.find((r) => r.node === 'm')?.reason).toMatch(/overlaps node a/);
    expect(plan.refused.find((r) => r.node === 'bad')?.reason).toMatch(/host bits/);
  });

  it("changes a node's signature only when what the relay reads of it changes", () => {
    const k = key();
    const a = node('a', '10.42.1.0/24', k);
    const withHeartbeat = { ...a, status: { ...(a.status as object), lastHeartbeatTime: 'now', conditions: [] } };
    expect(peerSignature(withHeartbeat)).toBe(peerSignature(a));
    expect(peerSignature(node('a', '10.42.1.0/24', key()))).not.toBe(peerSignature(a));
    expect(peerSignature(node('a', '10.42.2.0/24', k))).not.toBe(peerSignature(a));
  });

  it('announces the key, the port, the cluster CIDR and the endpoint devices are to use', () => {
    const a = relayAnnouncement(RELAY_KEY, 51820, '10.42.0.0/16', { host: 'hub.example.org' });
    expect(a).toEqual({ v: 1, publicKey: RELAY_KEY, port: 51820, endpoints: [{ address: 'hub.example.org', port: 51820 }], clusterCIDR: '10.42.0.0/16' });
    expect(relayAnnouncement(RELAY_KEY, 51820, '10.42.0.0/16', { host: '192.0.2.1', port: 4500 }).endpoints).toEqual([{ address: '192.0.2.1', port: 4500 }]);
    expect(relayAnnouncement(RELAY_KEY, 51821, '10.42.0.0/16', undefined).endpoints).toEqual([]);
    expect(relayAnnouncementSchema.safeParse(a).success).toBe(true);
  });
});

describe('the relay route plan', () => {
  it('adds the cluster route once, removes an old cluster CIDR of ours, and leaves others alone', () => {
    const routes = [
      { dst: '10.0.0.0/8', dev: 'eth0' },
      { dst: '10.43.0.0/16', dev: 'flotilla-relay', protocol: '241' },
      { dst: '10.44.0.0/16', dev: 'wg0', protocol: '241' },
      { dst: '10.42.0.1/32', dev: 'lo', table: 'local', type: 'local' },
    ];
    expect(planRoutes(routes, 'flotilla-relay', '10.42.0.0/16')).toEqual({ replace: true, remove: ['10.43.0.0/16'] });
    expect(planRoutes([{ dst: '10.42.0.0/16', dev: 'flotilla-relay', protocol: '241' }], 'flotilla-relay', '10.42.0.0/16')).toEqual({ replace: false, remove: [] });
  });

  it("refuses to take over another's route to the cluster CIDR", () => {
    const plan = planRoutes([{ dst: '10.42.0.0/16', dev: 'br-lan', protocol: 'kernel' }], 'flotilla-relay', '10.42.0.0/16');
    expect(plan.conflict).toEqual({ dst: '10.42.0.0/16', dev: 'br-lan', protocol: 'kernel' });
  });
});

describe('relay-observed endpoints', () => {
  const [ka, kb] = [key(), key()];
  const nodeOfKey = new Map([
    [ka, 'a'],
    [kb, 'b'],
  ]);
  const peer = (publicKey: string, endpoint?: string, extra: Partial<WgPeerState> = {}): WgPeerState => ({ publicKey, allowedIPs: [], latestHandshakeMs: 0, rxBytes: 0, txBytes: 0, ...(endpoint ? { endpoint } : {}), ...extra });
  const state = (...peers: WgPeerState[]): WgInterfaceState => ({ publicKey: RELAY_KEY, listenPort: 51820, peers });

  it('parses IPv4 endpoints and nothing else', () => {
    expect(parseEndpoint('203.0.113.7:40001')).toEqual({ address: '203.0.113.7', port: 40001 });
    expect(parseEndpoint('[2001:db8::1]:51820')).toBeUndefined();
    expect(parseEndpoint('(none)')).toBeUndefined();
    expect(parseEndpoint(undefined)).toBeUndefined();
  });

  it('reports a node whose endpoint appears, moves (a NAT that changed its mapping) or goes', () => {
    let seen: Map<string, ObservedEndpoint> = new Map();
    let r = observeEndpoints(seen, state(peer(ka, '198.51.100.2:51820'), peer(kb)), nodeOfKey);
    expect(r.changed).toEqual(['a']);
    expect(r.endpoints.get('a')).toEqual({ address: '198.51.100.2', port: 51820 });
    seen = r.endpoints;
    r = observeEndpoints(seen, state(peer(ka, '198.51.100.2:51820'), peer(kb)), nodeOfKey);
    expect(r.changed).toEqual([]);
    r = observeEndpoints(seen, state(peer(ka, '198.51.100.2:61000'), peer(kb, '203.0.113.9:1024')), nodeOfKey);
    expect(r.changed.sort()).toEqual(['a', 'b']);
    seen = r.endpoints;
    r = observeEndpoints(seen, state(peer(kb, '203.0.113.9:1024')), nodeOfKey);
    expect(r.changed).toEqual(['a']);
    expect(r.endpoints.has('a')).toBe(false);
    // A peer of no known node (the plan changed since) is not anyone's endpoint.
    expect(observeEndpoints(new Map(), state(peer(key(), '192.0.2.1:1')), nodeOfKey).endpoints.size).toBe(0);
  });

  it('counts bytes and handshakes from the second reading on, across counter resets and removed peers', () => {
    const c = new RelayCounters();
    const now = 1_000_000_000;
    c.update(state(peer(ka, undefined, { rxBytes: 500, txBytes: 400, latestHandshakeMs: now - 10_000 })), now);
    expect([c.rxBytes, c.txBytes, c.handshakes, c.peers, c.connected]).toEqual([0, 0, 0, 1, 1]);
    c.update(state(peer(ka, undefined, { rxBytes: 800, txBytes: 450, latestHandshakeMs: now - 10_000 }), peer(kb, undefined, { rxBytes: 100, txBytes: 10, latestHandshakeMs: now - 200_000 })), now);
    expect([c.rxBytes, c.txBytes, c.handshakes, c.peers, c.connected]).toEqual([400, 60, 1, 2, 1]);
    // a's counters started again (the interface was made anew); b went.
    c.update(state(peer(ka, undefined, { rxBytes: 50, txBytes: 5, latestHandshakeMs: now })), now);
    expect([c.rxBytes, c.txBytes, c.handshakes, c.peers]).toEqual([450, 65, 2, 1]);
  });
});

describe('relay flags', () => {
  it('takes auto, on and off', () => {
    expect(['auto', 'on', 'off'].map(parseRelayMode)).toEqual(['auto', 'on', 'off']);
    expect(() => parseRelayMode('yes')).toThrow(/auto, on or off/);
  });

  it('takes an interface name of 1 to 15 safe characters', () => {
    expect(parseInterfaceName('flotilla-relay')).toBe('flotilla-relay');
    for (const bad of ['', 'a-name-too-long-x', 'a/b', 'a b', '..']) expect(() => parseInterfaceName(bad), bad).toThrow(/not an interface name/);
  });

  it('takes HOST or HOST:PORT', () => {
    expect(parseRelayEndpoint('hub.example.org')).toEqual({ host: 'hub.example.org' });
    expect(parseRelayEndpoint('198.51.100.1:4500')).toEqual({ host: '198.51.100.1', port: 4500 });
    for (const bad of ['', 'host:0', 'host:70000', '[2001:db8::1]:51820', 'http://x', 'a:b:c']) expect(() => parseRelayEndpoint(bad), bad).toThrow();
    expect(() => parseRelayEndpoint('300.1.1.1')).toThrow(/not an IPv4 address/);
    expect(() => parseRelayEndpoint('10.0.0:51820')).toThrow(/not an IPv4 address/);
  });

  /** The hub's configuration as `flotilla hub ARGS` would build it, without starting a hub. */
  function hubFlags(args: string[]): Record<string, unknown> {
    const program = buildProgram();
    const hub = program.commands.find((c) => c.name() === 'hub')!;
    hub.action(() => undefined);
    program.parse(['hub', ...args], { from: 'user' });
    return hub.opts();
  }

  it('defaults to auto on 51820 with the interface flotilla-relay and no endpoint, and names the flag in an error', () => {
    expect(hubFlags([])).toMatchObject({ relay: 'auto', relayPort: 51820, relayInterface: 'flotilla-relay' });
    expect(hubFlags([]).relayEndpoint).toBeUndefined();
    expect(hubFlags(['--relay', 'on', '--relay-port', '4500', '--relay-interface', 'flt0', '--relay-endpoint', 'hub.example.org:4501'])).toMatchObject({ relay: 'on', relayPort: 4500, relayInterface: 'flt0', relayEndpoint: { host: 'hub.example.org', port: 4501 } });
    const errors: string[] = [];
    for (const args of [['--relay', 'maybe'], ['--relay-port', '0'], ['--relay-interface', 'much-too-long-name'], ['--relay-endpoint', 'a:b:c']]) {
      const program = buildProgram();
      program.commands.find((c) => c.name() === 'hub')!.configureOutput({ writeErr: (text) => errors.push(text), writeOut: () => undefined });
      expect(() => program.parse(['hub', ...args], { from: 'user' }), args.join(' ')).toThrow();
      expect(errors.pop(), args.join(' ')).toContain(args[0]);
    }
  });

  it('puts the cluster CIDR and the relay settings in the hub configuration', () => {
    expect(loadHubConfig({})).toMatchObject({ clusterCIDR: '10.42.0.0/16', relay: 'auto', relayPort: 51820, relayInterface: 'flotilla-relay' });
    expect(() => loadHubConfig({ relay: 'maybe' })).toThrow(/relay/);
  });
});

describe('the relay key', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('is made once, 0600, and read back the same', () => {
    dir = mkdtempSync(join(tmpdir(), 'flt-relay-key-'));
    const first = loadOrCreateRelayKey(dir);
    expect(statSync(join(dir, RELAY_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(loadOrCreateRelayKey(dir)).toEqual(first);
    expect(publicKeyOf(readFileSync(join(dir, RELAY_KEY_FILE), 'utf8').trim())).toBe(first.publicKey);
  });

  it('refuses a file that holds no key rather than replacing it', () => {
    dir = mkdtempSync(join(tmpdir(), 'flt-relay-key-'));
    writeFileSync(join(dir, RELAY_KEY_FILE), 'garbage\n');
    expect(() => loadOrCreateRelayKey(dir!)).toThrow(/holds no WireGuard private key/);
    expect(readFileSync(join(dir, RELAY_KEY_FILE), 'utf8')).toBe('garbage\n');
  });
});
