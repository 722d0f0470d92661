import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { MessageBus } from '../../hub/broker/bus.js';
import { Relay, type RelayOptions } from '../../hub/network/relay.js';
import { HubStartError } from '../../hub/startup.js';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import type { WgInterfaceState, WgPeerConfig } from '../../shared/net/wireguard.js';
import { Topics } from '../../shared/protocol/topics.js';
import { testHub, type TestHub } from './builders.js';

// The relay's controller without the kernel: the interface calls are replaced, so what is
// tested is when it syncs (coalesced, only on changes that matter), what it publishes, and
// how it reports endpoints. test/integration/network-relay.test.ts runs it on real WireGuard.

const wg = vi.hoisted(() => ({
  syncs: [] as { peers: WgPeerConfig[] }[],
  endpoints: new Map<string, string>(),
  bringUp: undefined as undefined | (() => Promise<{ implementation: 'wireguard-go'; created: boolean }>),
}));

vi.mock('../../shared/net/wireguard.js', async (original) => ({
  ...(await original<typeof import('../../shared/net/wireguard.js')>()),
  syncConfig: (_name: string, _key: string, _port: number, peers: WgPeerConfig[]) => {
    wg.syncs.push({ peers: [...peers] });
    return Promise.resolve();
  },
  show: (): Promise<WgInterfaceState> => {
    const peers = wg.syncs.at(-1)?.peers ?? [];
    return Promise.resolve({ publicKey: 'x', listenPort: 51820, peers: peers.map((p) => ({ publicKey: p.publicKey, allowedIPs: [...p.allowedIPs], latestHandshakeMs: 0, rxBytes: 0, txBytes: 0, ...(wg.endpoints.has(p.publicKey) ? { endpoint: wg.endpoints.get(p.publicKey)! } : {}) })) });
  },
}));

vi.mock('../../hub/network/relay-setup.js', async (original) => ({
  ...(await original<typeof import('../../hub/network/relay-setup.js')>()),
  bringUpRelay: () => (wg.bringUp ? wg.bringUp() : Promise.resolve({ implementation: 'wireguard-go', created: false })),
  removeRelay: () => Promise.resolve(undefined),
}));

const { RelayUnavailable } = await import('../../hub/network/relay-setup.js');

let hub: TestHub;
let dataDir: string;
let published: { topic: string; payload: string; retain: boolean }[];
let relay: Relay | undefined;

function bus(): MessageBus {
  return {
    publish: (topic, payload, opts) => {
      published.push({ topic, payload: payload.toString('utf8'), retain: opts.retain });
      return Promise.resolve();
    },
    subscribe: () => Promise.resolve(),
    disconnectNode: () => undefined,
    connectedClients: () => 0,
    close: () => Promise.resolve(),
  };
}

function options(mode: 'auto' | 'on' | 'off'): RelayOptions {
  return { config: { relay: mode, relayPort: 51820, relayInterface: 'flt-test', clusterCIDR: '10.42.0.0/16' }, dataDir, store: hub.store, bus: bus(), topics: new Topics(), log: hub.log, pollIntervalMs: 20 };
}

function addNode(name: string, podCIDR: string, publicKey: string): void {
  hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name }, spec: { podCIDR, podCIDRs: [podCIDR] } });
  hub.store.updateStatus('Node', '', name, { overlay: { overlay: 'wireguard', ready: true, publicKey } });
}

const settle = () => new Promise((r) => setTimeout(r, 400));

beforeEach(() => {
  hub = testHub();
  dataDir = mkdtempSync(join(tmpdir(), 'flt-relay-ctl-'));
  published = [];
  wg.syncs = [];
  wg.endpoints = new Map();
  wg.bringUp = undefined;
});

afterEach(() => {
  relay?.stop();
  relay = undefined;
  hub.db.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the relay controller', () => {
  it('applies a burst of node changes with one sync, and ignores changes the relay does not read', async () => {
    relay = await Relay.start(options('on'));
    await settle();
    const before = wg.syncs.length;
    const keys = Array.from({ length: 30 }, () => publicKeyOf(generatePrivateKey()));
    keys.forEach((k, i) => addNode(`n${i}`, `10.42.${i}.0/24`, k));
    await settle();
    expect(wg.syncs.length - before).toBe(1);
    expect(wg.syncs.at(-1)!.peers).toHaveLength(30);
    expect(wg.syncs.at(-1)!.peers.find((p) => p.publicKey === keys[7])).toEqual({ publicKey: keys[7], allowedIPs: ['10.42.7.0/24'] });
    // A heartbeat (what every status report writes) is no reason to sync.
    hub.store.mutate('Node', '', 'n3', (cur) => ({ ...cur, status: { ...(cur.status as object), lastHeartbeatTime: new Date().toISOString() } }));
    await settle();
    expect(wg.syncs.length - before).toBe(1);
    hub.store.delete('Node', '', 'n3');
    await settle();
    expect(wg.syncs.length - before).toBe(2);
    expect(wg.syncs.at(-1)!.peers.map((p) => p.publicKey)).not.toContain(keys[3]);
    expect(relay.families().find((f) => f.name === 'flotilla_relay_peers')?.samples[0]?.value).toBe(29);
  });

  it('publishes its announcement retained, and reports observed endpoints that appear and move', async () => {
    const k = publicKeyOf(generatePrivateKey());
    addNode('a', '10.42.1.0/24', k);
    relay = await Relay.start(options('on'));
    const announcement = published.find((p) => p.topic === 'flotilla/v1/network/relay');
    expect(announcement?.retain).toBe(true);
    expect(JSON.parse(announcement!.payload)).toMatchObject({ v: 1, port: 51820, endpoints: [], clusterCIDR: '10.42.0.0/16' });
    const changes: string[] = [];
    relay.onObservedChange((node) => changes.push(node));
    expect(relay.observedEndpoint('a')).toBeUndefined();
    wg.endpoints.set(k, '203.0.113.5:40000');
    await settle();
    expect(relay.observedEndpoint('a')).toEqual({ address: '203.0.113.5', port: 40000 });
    expect(changes).toEqual(['a']);
    wg.endpoints.set(k, '203.0.113.5:40001');
    await settle();
    expect(relay.observedEndpoint('a')).toEqual({ address: '203.0.113.5', port: 40001 });
    expect(changes).toEqual(['a', 'a']);
  });

  it('with auto, where the interface cannot be made, warns, clears the announcement and reports itself down', async () => {
    wg.bringUp = () => Promise.reject(new RelayUnavailable('the hub lacks CAP_NET_ADMIN'));
    const warn = vi.spyOn(hub.log, 'warn');
    relay = await Relay.start(options('auto'));
    expect(relay.running).toBe(false);
    expect(String(warn.mock.calls[0]?.[1])).toMatch(/^the relay is off: .*CAP_NET_ADMIN.*--relay off/);
    expect(published).toEqual([{ topic: 'flotilla/v1/network/relay', payload: '', retain: true }]);
    expect(relay.families().find((f) => f.name === 'flotilla_relay_up')?.samples[0]?.value).toBe(0);
  });

  it('with on, makes the same failure a start-up error that names --relay', async () => {
    wg.bringUp = () => Promise.reject(new RelayUnavailable('wireguard-go is not installed'));
    const failed = Relay.start(options('on'));
    await expect(failed).rejects.toBeInstanceOf(HubStartError);
    await expect(failed).rejects.toMatchObject({ flag: '--relay', message: expect.stringMatching(/^--relay on: .*wireguard-go is not installed/) });
  });

  it('with off, clears the announcement and makes nothing', async () => {
    relay = await Relay.start(options('off'));
    expect(published).toEqual([{ topic: 'flotilla/v1/network/relay', payload: '', retain: true }]);
    expect(wg.syncs).toEqual([]);
  });
});
