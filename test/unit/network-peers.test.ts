import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MessageBus } from '../../hub/broker/bus.js';
import { MAX_ENDPOINTS, peerContent, peerEndpoints, usableAddress } from '../../hub/network/peer-announcement.js';
import { PeerPublisher } from '../../hub/network/peers.js';
import { decodePayload } from '../../shared/protocol/messages.js';
import { peerAnnouncementSchema, type NodeNetworkReport, type PeerAnnouncement } from '../../shared/protocol/network.js';
import { Topics } from '../../shared/protocol/topics.js';
import type { NodeStatus } from '../../shared/resources/node.js';
import { createNode, testHub, type TestHub } from './builders.js';

const KEY = 'mDh0VwDbbY0+hHUWzXuuvd+aCCJ3PRjqHSNYzs0ObVs=';
const KEY2 = 'cHJvYmFibHkgbm90IGEgcmVhbCBrZXkgYnV0IDMyQkI=';

function overlay(fields: Partial<NodeNetworkReport> = {}): NodeNetworkReport {
  return { overlay: 'wireguard', ready: true, publicKey: KEY, port: 51821, implementation: 'wireguard-go', ...fields };
}

describe('peer endpoints', () => {
  it('orders advertised, relay-observed, hub-observed, then reported, each with its port', () => {
    const endpoints = peerEndpoints({
      node: 'a',
      podCIDR: '10.42.0.0/24',
      overlay: overlay({ advertiseAddress: '198.51.100.7', addresses: ['192.168.1.20', '10.1.0.5'] }),
      hubObserved: '::ffff:203.0.113.9',
      relayObserved: { address: '203.0.113.9', port: 40001 },
    });
    expect(endpoints).toEqual([
      { address: '198.51.100.7', port: 51821, source: 'advertised' },
      { address: '203.0.113.9', port: 40001, source: 'relay-observed' },
      { address: '203.0.113.9', port: 51821, source: 'hub-observed' },
      { address: '192.168.1.20', port: 51821, source: 'reported' },
      { address: '10.1.0.5', port: 51821, source: 'reported' },
    ]);
  });

  it('keeps one of each address and port, with the best source, and at most eight', () => {
    const addresses = ['198.51.100.7', ...Array.from({ length: 8 }, (_, i) => `192.168.1.${i + 1}`), '198.51.100.7'];
    const endpoints = peerEndpoints({ node: 'a', podCIDR: '10.42.0.0/24', overlay: overlay({ advertiseAddress: '198.51.100.7', addresses }), hubObserved: '198.51.100.7' });
    expect(endpoints).toHaveLength(MAX_ENDPOINTS);
    expect(endpoints.filter((e) => e.address === '198.51.100.7')).toEqual([{ address: '198.51.100.7', port: 51821, source: 'advertised' }]);
  });

  it('never offers loopback, 0.0.0.0 or what is not an IPv4 address', () => {
    expect(usableAddress('127.0.0.1')).toBeUndefined();
    expect(usableAddress('::ffff:127.0.0.1')).toBeUndefined();
    expect(usableAddress('0.0.0.0')).toBeUndefined();
    expect(usableAddress('fe80::1')).toBeUndefined();
    expect(usableAddress('pi.example.com')).toBeUndefined();
    expect(usableAddress('::ffff:192.0.2.1')).toBe('192.0.2.1');
    const content = peerContent({ node: 'a', podCIDR: '10.42.0.0/24', overlay: overlay({ addresses: ['127.0.0.1'] }), hubObserved: '127.0.0.1' });
    expect(content).toEqual({ v: 1, node: 'a', publicKey: KEY, podCIDR: '10.42.0.0/24', endpoints: [] });
  });

  it('makes no peer without a pod CIDR, a key, or with the overlay off', () => {
    expect(peerContent({ node: 'a', podCIDR: undefined, overlay: overlay() })).toBeUndefined();
    // The report an agent sends as it connects, before it has looked at its network: its key alone.
    expect(peerContent({ node: 'a', podCIDR: '10.42.0.0/24', overlay: { overlay: 'wireguard', ready: false, publicKey: KEY, port: 51821 } })).toBeUndefined();
    expect(peerContent({ node: 'a', podCIDR: '10.42.0.0/24', overlay: overlay({ publicKey: undefined }) })).toBeUndefined();
    expect(peerContent({ node: 'a', podCIDR: '10.42.0.0/24', overlay: { overlay: 'none', ready: false } })).toBeUndefined();
    expect(peerContent({ node: 'a', podCIDR: '10.42.0.0/24', overlay: undefined })).toBeUndefined();
  });

  it('fits a full announcement in a few hundred bytes, within the schema', () => {
    const content = peerContent({ node: 'a-device-with-a-long-name-0001', podCIDR: '10.42.255.0/24', overlay: overlay({ advertiseAddress: '198.51.100.7', addresses: Array.from({ length: 8 }, (_, i) => `192.168.100.${i + 100}`) }), hubObserved: '203.0.113.200', relayObserved: { address: '203.0.113.200', port: 65000 } })!;
    const message: PeerAnnouncement = { ...content, generation: Math.floor(Date.now() / 1000) };
    expect(peerAnnouncementSchema.safeParse(message).success).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(message))).toBeLessThan(900);
  });
});

class RecordingBus implements MessageBus {
  readonly published: { topic: string; payload: Buffer }[] = [];
  remote = new Map<string, string>();
  private connected: ((node: string) => void)[] = [];
  async publish(topic: string, payload: Buffer): Promise<void> {
    this.published.push({ topic, payload });
  }
  async subscribe(): Promise<void> {}
  disconnectNode(): void {}
  connectedClients(): number {
    return 0;
  }
  async close(): Promise<void> {}
  remoteAddress(node: string): string | undefined {
    return this.remote.get(node);
  }
  onDeviceConnected(handler: (node: string) => void): void {
    this.connected.push(handler);
  }
  connect(node: string, address: string): void {
    this.remote.set(node, address);
    for (const h of this.connected) h(node);
  }
  to(topic: string) {
    return this.published.filter((p) => p.topic === topic);
  }
}

describe('PeerPublisher', () => {
  const topics = new Topics();
  let hub: TestHub;
  let bus: RecordingBus;
  let publisher: PeerPublisher;
  const start = async () => {
    publisher = new PeerPublisher({ db: hub.db, store: hub.store, bus, topics, log: hub.log });
    await publisher.start();
    await publisher.queue.idle();
  };
  const last = (node: string): PeerAnnouncement | 'cleared' | undefined => {
    const p = bus.to(topics.peer(node)).at(-1);
    if (!p) return undefined;
    if (p.payload.length === 0) return 'cleared';
    const d = decodePayload(peerAnnouncementSchema, p.payload);
    if (!d.ok) throw new Error('invalid peer message');
    return d.value;
  };
  const report = (node: string, o: NodeNetworkReport | undefined, beat = '') =>
    hub.store.mutate('Node', '', node, (cur) => ({ ...cur, status: { ...(cur.status as NodeStatus), ...(o ? { overlay: o } : {}), lastHeartbeatTime: beat } }));
  const joined = (node: string, cidr: string) => {
    createNode(hub.store, { name: node });
    hub.store.mutate('Node', '', node, (cur) => ({ ...cur, spec: { podCIDR: cidr, podCIDRs: [cidr] } }));
  };

  beforeEach(() => {
    hub = testHub();
    bus = new RecordingBus();
  });
  afterEach(() => {
    publisher.stop();
    hub.db.close();
  });

  it('publishes a peer once it has a pod CIDR and a key, again only when it changes, and clears it on deletion', async () => {
    await start();
    joined('a', '10.42.0.0/24');
    await publisher.queue.idle();
    expect(last('a')).toBeUndefined();
    bus.remote.set('a', '203.0.113.5');
    report('a', overlay());
    await publisher.queue.idle();
    const first = last('a') as PeerAnnouncement;
    expect(first).toMatchObject({ node: 'a', podCIDR: '10.42.0.0/24', publicAddress: '203.0.113.5', endpoints: [{ address: '203.0.113.5', port: 51821, source: 'hub-observed' }] });
    // A status report that moves only figures: nothing published.
    report('a', { ...overlay(), peers: [{ node: 'b', path: 'direct', rxBytes: 5, txBytes: 9 }] }, 'later');
    await publisher.queue.idle();
    expect(bus.to(topics.peer('a'))).toHaveLength(1);
    // The device's NAT moved: it connects again from elsewhere, and the peer follows at once.
    bus.connect('a', '203.0.113.77');
    await publisher.queue.idle();
    const second = last('a') as PeerAnnouncement;
    expect(second.publicAddress).toBe('203.0.113.77');
    expect(second.generation).toBeGreaterThan(first.generation);
    report('a', overlay({ publicKey: KEY2 }));
    await publisher.queue.idle();
    expect((last('a') as PeerAnnouncement).publicKey).toBe(KEY2);
    hub.store.delete('Node', '', 'a');
    await publisher.queue.idle();
    expect(last('a')).toBe('cleared');
  });

  it('clears the peer of a node whose overlay is turned off', async () => {
    await start();
    joined('a', '10.42.0.0/24');
    report('a', overlay());
    await publisher.queue.idle();
    report('a', { overlay: 'none', ready: false });
    await publisher.queue.idle();
    expect(last('a')).toBe('cleared');
  });

  it('republishes every peer on start with the generation devices have, and clears those deleted meanwhile', async () => {
    await start();
    joined('a', '10.42.0.0/24');
    joined('b', '10.42.1.0/24');
    bus.remote.set('a', '203.0.113.5');
    report('a', overlay());
    report('b', overlay({ publicKey: KEY2 }));
    await publisher.queue.idle();
    const before = last('a') as PeerAnnouncement;
    publisher.stop();
    hub.store.delete('Node', '', 'b');
    // The device of a has not connected again yet: its last address stands.
    bus = new RecordingBus();
    await start();
    expect(last('a')).toEqual(before);
    expect(last('b')).toBe('cleared');
  });
});
