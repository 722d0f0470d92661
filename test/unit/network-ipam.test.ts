import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpamController } from '../../hub/network/ipam-controller.js';
import { parsePodNetworkSettings, PodCidrAllocator, QUARANTINE_MS, type PodNetworkSettings } from '../../hub/network/ipam.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import { nodeCondition, type NodeSpec, type NodeStatus } from '../../shared/resources/node.js';
import { createNode, eventsAbout, testHub, type TestHub } from './builders.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function settings(cidr: string, mask: number): PodNetworkSettings {
  const s = parsePodNetworkSettings(cidr, mask);
  if ('error' in s) throw new Error(s.error);
  return s;
}

describe('the hub flags of the pod network', () => {
  it('takes an IPv4 cluster CIDR and a longer mask size', () => {
    expect(settings('10.42.0.0/16', 24)).toMatchObject({ clusterCIDR: { bits: 16 }, maskSize: 24 });
  });

  it('refuses what cannot be carved into node blocks, naming the flag', () => {
    expect(parsePodNetworkSettings('10.42.0.1/16', 24)).toMatchObject({ flag: '--cluster-cidr', error: expect.stringContaining('host bits set') });
    expect(parsePodNetworkSettings('fd00::/64', 24)).toMatchObject({ flag: '--cluster-cidr', error: expect.stringContaining('IPv4') });
    expect(parsePodNetworkSettings('10.42.0.0', 24)).toMatchObject({ flag: '--cluster-cidr' });
    expect(parsePodNetworkSettings('10.42.0.0/16', 16)).toMatchObject({ flag: '--node-cidr-mask-size', error: expect.stringContaining('not longer than the cluster CIDR') });
    expect(parsePodNetworkSettings('10.42.0.0/16', 31)).toMatchObject({ flag: '--node-cidr-mask-size', error: expect.stringContaining('1 to 30') });
  });
});

describe('PodCidrAllocator', () => {
  it('hands out never-used blocks lowest first', () => {
    const a = new PodCidrAllocator(settings('10.42.0.0/16', 24));
    const first = a.pick(T0);
    expect(first).toEqual({ cidr: '10.42.0.0/24' });
    a.record({ cidr: '10.42.0.0/24', node: 'a', allocatedAt: T0 });
    a.record({ cidr: '10.42.2.0/24', node: 'c', allocatedAt: T0 });
    expect(a.pick(T0)).toEqual({ cidr: '10.42.1.0/24' });
    a.record({ cidr: '10.42.1.0/24', node: 'b', allocatedAt: T0 });
    expect(a.pick(T0)).toEqual({ cidr: '10.42.3.0/24' });
    expect(a.counts(T0)).toEqual({ allocated: 3, quarantined: 0, free: 253 });
  });

  it('prefers a never-used block to a released one, and reuses released ones oldest first, never within the hour', () => {
    const a = new PodCidrAllocator(settings('10.42.0.0/22', 24));
    for (const [i, node] of ['a', 'b', 'c'].entries()) a.record({ cidr: `10.42.${i}.0/24`, node, allocatedAt: T0 });
    a.record(a.releaseRow('b', T0 + 1000)!);
    a.record(a.releaseRow('a', T0 + 2000)!);
    // 10.42.3.0/24 was never used: it goes first, although two are released.
    expect(a.pick(T0 + 3000)).toEqual({ cidr: '10.42.3.0/24' });
    a.record({ cidr: '10.42.3.0/24', node: 'd', allocatedAt: T0 + 3000 });
    const exhausted = a.pick(T0 + QUARANTINE_MS);
    expect(exhausted).toMatchObject({ reason: 'exhausted', retryAt: T0 + 1000 + QUARANTINE_MS });
    expect(a.counts(T0 + QUARANTINE_MS)).toEqual({ allocated: 2, quarantined: 2, free: 0 });
    // An hour after b let it go, b's block is the oldest released: it comes back first.
    expect(a.pick(T0 + 1000 + QUARANTINE_MS)).toEqual({ cidr: '10.42.1.0/24' });
    a.record({ cidr: '10.42.1.0/24', node: 'e', allocatedAt: T0 + 1000 + QUARANTINE_MS });
    expect(a.pick(T0 + 1999 + QUARANTINE_MS)).toMatchObject({ reason: 'exhausted' });
    expect(a.pick(T0 + 2000 + QUARANTINE_MS)).toEqual({ cidr: '10.42.0.0/24' });
  });

  it('says how many blocks exist when none is left', () => {
    const a = new PodCidrAllocator(settings('10.42.0.0/23', 24));
    a.record({ cidr: '10.42.0.0/24', node: 'a', allocatedAt: T0 });
    a.record({ cidr: '10.42.1.0/24', node: 'b', allocatedAt: T0 });
    const r = a.pick(T0);
    expect('message' in r && r.message).toBe('no free pod CIDR: the cluster CIDR 10.42.0.0/23 (--cluster-cidr) holds 2 blocks of /24 (--node-cidr-mask-size); 2 are allocated and 0 were released less than an hour ago (quarantined)');
  });

  it('lets an operator\'s podCIDR stand only when it is a free block of the cluster CIDR', () => {
    const a = new PodCidrAllocator(settings('10.42.0.0/16', 24));
    a.record({ cidr: '10.42.5.0/24', node: 'a', allocatedAt: T0 });
    expect(a.claim('b', '10.42.7.0/24', T0)).toEqual({ row: { cidr: '10.42.7.0/24', node: 'b', allocatedAt: T0 } });
    expect(a.claim('b', '10.42.5.0/24', T0)).toMatchObject({ reason: 'unusable', message: expect.stringContaining('allocated to node a') });
    expect(a.claim('b', '10.43.0.0/24', T0)).toMatchObject({ message: expect.stringContaining('does not lie in the cluster CIDR 10.42.0.0/16') });
    expect(a.claim('b', '10.42.0.0/25', T0)).toMatchObject({ message: expect.stringContaining('is not a /24 block') });
    a.record(a.releaseRow('a', T0)!);
    expect(a.claim('b', '10.42.5.0/24', T0 + 1000)).toMatchObject({ message: expect.stringContaining('quarantined') });
  });

  it('knows blocks held outside a changed cluster CIDR, and does not count them', () => {
    const a = new PodCidrAllocator(settings('10.50.0.0/16', 24), [{ cidr: '10.42.0.0/24', node: 'old', allocatedAt: T0 }]);
    expect(a.blockOf('old')).toBe('10.42.0.0/24');
    expect(a.heldOutside().map((r) => r.node)).toEqual(['old']);
    expect(a.counts(T0)).toEqual({ allocated: 0, quarantined: 0, free: 256 });
    expect(a.pick(T0)).toEqual({ cidr: '10.50.0.0/24' });
  });
});

describe('IpamController', () => {
  let hub: TestHub;
  let clock: number;
  let controller: IpamController;
  const start = (cidr = '10.42.0.0/16', mask = 24) => {
    controller = new IpamController({ store: hub.store, events: hub.events, log: hub.log }, hub.db, settings(cidr, mask), { now: () => clock });
    controller.start();
  };
  const spec = (name: string) => hub.store.get('Node', '', name)?.spec as NodeSpec;
  const network = (name: string) => nodeCondition(hub.store.get('Node', '', name)?.status as NodeStatus, 'NetworkUnavailable');

  beforeEach(() => {
    hub = testHub();
    clock = T0;
  });
  afterEach(() => {
    controller.stop();
    hub.db.close();
  });

  it('gives each node a distinct block when it appears, and releases it when the node is deleted', async () => {
    start();
    createNode(hub.store, { name: 'a' });
    createNode(hub.store, { name: 'b' });
    await controller.queue.idle();
    expect(spec('a')).toMatchObject({ podCIDR: '10.42.0.0/24', podCIDRs: ['10.42.0.0/24'] });
    expect(spec('b')).toMatchObject({ podCIDR: '10.42.1.0/24', podCIDRs: ['10.42.1.0/24'] });
    hub.store.delete('Node', '', 'a');
    await controller.queue.idle();
    expect(controller.counts()).toMatchObject({ allocated: 1, quarantined: 1 });
    createNode(hub.store, { name: 'c' });
    await controller.queue.idle();
    // Not a's block: it is quarantined.
    expect(spec('c').podCIDR).toBe('10.42.2.0/24');
  });

  it('keeps blocks over a restart, and releases those of nodes deleted meanwhile', async () => {
    start();
    createNode(hub.store, { name: 'a' });
    createNode(hub.store, { name: 'b' });
    await controller.queue.idle();
    controller.stop();
    // Deleted while the hub was down: no controller saw it.
    hub.store.delete('Node', '', 'a');
    clock += 5000;
    start();
    await controller.queue.idle();
    expect(spec('b').podCIDR).toBe('10.42.1.0/24');
    expect(controller.counts()).toMatchObject({ allocated: 1, quarantined: 1 });
    createNode(hub.store, { name: 'c' });
    await controller.queue.idle();
    expect(spec('c').podCIDR).toBe('10.42.2.0/24');
    // A restart with another cluster CIDR: the nodes keep their blocks.
    controller.stop();
    start('10.60.0.0/16', 24);
    await controller.queue.idle();
    expect(spec('b').podCIDR).toBe('10.42.1.0/24');
  });

  it('puts back a podCIDR changed by hand', async () => {
    start();
    createNode(hub.store, { name: 'a' });
    await controller.queue.idle();
    hub.store.mutate('Node', '', 'a', (cur) => ({ ...cur, spec: { ...(cur.spec as object), podCIDR: '10.42.9.0/24', podCIDRs: ['10.42.9.0/24'] } }));
    await controller.queue.idle();
    expect(spec('a').podCIDR).toBe('10.42.0.0/24');
    expect(eventsAbout(hub.store, 'Node', 'a').join('\n')).toContain('PodCIDRImmutable');
  });

  it('keeps an operator\'s podCIDR when it is free, and refuses one that is not', async () => {
    start();
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'mine' }, spec: { podCIDR: '10.42.200.0/24' } });
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'outside' }, spec: { podCIDR: '192.168.1.0/24' } });
    await controller.queue.idle();
    expect(spec('mine')).toMatchObject({ podCIDR: '10.42.200.0/24', podCIDRs: ['10.42.200.0/24'] });
    expect(network('mine')).toBeUndefined();
    expect(network('outside')).toMatchObject({ status: 'True', reason: 'PodCIDRNotUsable', message: expect.stringContaining('does not lie in the cluster CIDR 10.42.0.0/16') });
    expect(eventsAbout(hub.store, 'Node', 'outside').join('\n')).toContain('CIDRAssignmentFailed');
    // The operator takes it back: the node gets a block of its own.
    hub.store.mutate('Node', '', 'outside', (cur) => ({ ...cur, spec: {} }));
    await controller.queue.idle();
    expect(spec('outside').podCIDR).toBe('10.42.0.0/24');
    expect(network('outside')).toBeUndefined();
  });

  it('reports exhaustion with an event and NetworkUnavailable, and gives a block as soon as one is free', async () => {
    start('10.42.0.0/23', 24);
    for (const name of ['a', 'b', 'c']) createNode(hub.store, { name });
    await controller.queue.idle();
    expect(spec('c').podCIDR).toBeUndefined();
    expect(network('c')).toMatchObject({ status: 'True', reason: 'CIDRNotAvailable', message: expect.stringContaining('10.42.0.0/23 (--cluster-cidr) holds 2 blocks of /24') });
    expect(eventsAbout(hub.store, 'Node', 'c')).toEqual([expect.stringMatching(/^Warning CIDRNotAvailable: no free pod CIDR/)]);
    // Status reports do not repeat the event.
    hub.store.mutate('Node', '', 'c', (cur) => ({ ...cur, status: { ...(cur.status as object), lastHeartbeatTime: new Date().toISOString() } }));
    controller.queue.add('c');
    await controller.queue.idle();
    const count = hub.store.list('Event').items.find((e) => (e.involvedObject as { name: string }).name === 'c')?.count;
    expect(count).toBe(1);
    // a is deleted: its block is quarantined, so c still waits, until the hour is over.
    hub.store.delete('Node', '', 'a');
    await controller.queue.idle();
    expect(spec('c').podCIDR).toBeUndefined();
    clock += QUARANTINE_MS;
    controller.queue.add('c');
    await controller.queue.idle();
    expect(spec('c').podCIDR).toBe('10.42.0.0/24');
    expect(network('c')).toBeUndefined();
  });
});

describe('the allocation table', () => {
  it('is part of the hub schema', () => {
    const db = openHubDatabase(':memory:');
    try {
      expect(db.prepare("SELECT name FROM sqlite_master WHERE name IN ('pod_cidrs', 'network_peers') ORDER BY name").all()).toEqual([{ name: 'network_peers' }, { name: 'pod_cidrs' }]);
    } finally {
      db.close();
    }
  });
});
