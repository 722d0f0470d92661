import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MessageBus } from '../../hub/broker/bus.js';
import { Dispatcher } from '../../hub/dispatch/desired.js';
import { ObjectStore } from '../../hub/store/objects.js';
import { decodePayload, desiredStateSchema, type DesiredState } from '../../shared/protocol/messages.js';
import { Topics } from '../../shared/protocol/topics.js';
import type { NodeStatus } from '../../shared/resources/node.js';
import { container, createNode, podObject, testHub, type TestHub } from './builders.js';

interface Publish {
  topic: string;
  payload: Buffer;
  opts: { qos: 0 | 1; retain: boolean };
}

/** A MessageBus that keeps what is published, in order, and the retained message of each topic, as a broker would. */
class RecordingBus implements MessageBus {
  readonly published: Publish[] = [];
  readonly retained = new Map<string, Buffer>();

  async publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    this.published.push({ topic, payload, opts });
    if (opts.retain) {
      // An empty retained message removes the retained message of the topic [MQTT-3.3.1-10].
      if (payload.length === 0) this.retained.delete(topic);
      else this.retained.set(topic, payload);
    }
  }
  async subscribe(): Promise<void> {}
  disconnectNode(): void {}
  connectedClients(): number {
    return 0;
  }
  async close(): Promise<void> {}

  to(topic: string): Publish[] {
    return this.published.filter((p) => p.topic === topic);
  }
}

const topics = new Topics();
const EDGE_1 = topics.desired('edge-1');

let hub: TestHub;
let bus: RecordingBus;
let dispatcher: Dispatcher;

beforeEach(() => {
  hub = testHub();
  bus = new RecordingBus();
  dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log);
});
afterEach(() => {
  dispatcher.stop();
  hub.db.close();
});

/** Decodes a published desired set exactly as the agent does, failing the test on a bad payload. */
function decoded(p: Publish): DesiredState {
  const result = decodePayload(desiredStateSchema, p.payload);
  if (!result.ok) throw new Error(`invalid desired set: ${JSON.stringify(result.errors)}`);
  return result.value;
}

function lastDesired(topic = EDGE_1): DesiredState {
  const all = bus.to(topic);
  expect(all.length).toBeGreaterThan(0);
  return decoded(all.at(-1)!);
}

describe('Dispatcher.sync', () => {
  it('publishes, retained at QoS 1, exactly the pods bound to the node', async () => {
    createNode(hub.store, { name: 'edge-1' });
    createNode(hub.store, { name: 'edge-2' });
    const web = hub.store.create(podObject({ name: 'web', nodeName: 'edge-1', labels: { app: 'web' } }));
    hub.store.create(podObject({ name: 'db', namespace: 'data', nodeName: 'edge-1' }));
    hub.store.create(podObject({ name: 'elsewhere', nodeName: 'edge-2' }));
    hub.store.create(podObject({ name: 'unbound' }));

    await dispatcher.sync('edge-1');

    expect(bus.published).toHaveLength(1);
    expect(bus.published[0]!.opts).toEqual({ qos: 1, retain: true });
    const desired = lastDesired();
    expect(desired.rev).toBe(1);
    expect(desired.pods.map((p) => `${p.namespace}/${p.name}`).sort()).toEqual(['data/db', 'default/web']);
    expect(desired.pods.find((p) => p.name === 'web')).toEqual({ uid: web.metadata.uid, name: 'web', namespace: 'default', labels: { app: 'web' }, spec: web.spec });
  });

  it('leaves out pods that are being deleted', async () => {
    createNode(hub.store, { name: 'edge-1' });
    hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' }));
    const leaving = podObject({ name: 'leaving', nodeName: 'edge-1' });
    hub.store.create(leaving);
    hub.store.mutate('Pod', 'default', 'leaving', (cur) => ({ ...cur, metadata: { ...cur.metadata, deletionTimestamp: new Date().toISOString() } }));
    await dispatcher.sync('edge-1');
    expect(lastDesired().pods.map((p) => p.name)).toEqual(['web']);
  });

  it('publishes an empty set, still with a revision, to a node with no pods', async () => {
    createNode(hub.store, { name: 'edge-1' });
    await dispatcher.sync('edge-1');
    expect(lastDesired()).toEqual({ v: 1, rev: 1, pods: [], configs: [], secrets: [] });
  });

  it('increments the revision only when the set changes, and publishes only then', async () => {
    createNode(hub.store, { name: 'edge-1' });
    hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' }));
    await dispatcher.sync('edge-1');
    await dispatcher.sync('edge-1');
    expect(bus.to(EDGE_1).map((p) => decoded(p).rev)).toEqual([1]);

    hub.store.mutate('Pod', 'default', 'web', (cur) => ({ ...cur, spec: { containers: [container({ name: 'app', image: 'flotilla-test/busybox:2' })], nodeName: 'edge-1' } }));
    await dispatcher.sync('edge-1');
    hub.store.updateStatus('Pod', 'default', 'web', { phase: 'Running' }); // status is not part of the desired set
    await dispatcher.sync('edge-1');
    expect(bus.to(EDGE_1).map((p) => decoded(p).rev)).toEqual([1, 2]);
    expect(lastDesired().pods[0]!.spec.containers[0]!.image).toBe('flotilla-test/busybox:2');
    expect(dispatcher.revision('edge-1')).toBe(2);
  });

  it('records the published revision in the node status', async () => {
    createNode(hub.store, { name: 'edge-1' });
    await dispatcher.sync('edge-1');
    const status = hub.store.get('Node', '', 'edge-1')!.status as NodeStatus;
    expect(status.desiredRevision).toBe(1);
    expect(status.conditions).toEqual([{ type: 'Ready', status: 'True' }]);
  });

  it('republishes the same revision, once, after a restart when the set is unchanged', async () => {
    createNode(hub.store, { name: 'edge-1' });
    hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' }));
    await dispatcher.sync('edge-1');
    dispatcher.stop();

    // A restarted hub: new store and dispatcher over the same database.
    const store = new ObjectStore(hub.db);
    const restarted = new Dispatcher(hub.db, store, bus, topics, hub.log);
    try {
      await restarted.sync('edge-1');
      await restarted.sync('edge-1');
    } finally {
      restarted.stop();
    }
    expect(bus.to(EDGE_1).map((p) => decoded(p).rev)).toEqual([1, 1]);
    expect(bus.to(EDGE_1)[1]!.payload.equals(bus.to(EDGE_1)[0]!.payload)).toBe(true);
  });

  it('continues the revision after a restart when the set changed while the hub was down', async () => {
    createNode(hub.store, { name: 'edge-1' });
    await dispatcher.sync('edge-1');
    hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' }));
    const restarted = new Dispatcher(hub.db, new ObjectStore(hub.db), bus, topics, hub.log);
    await restarted.sync('edge-1');
    restarted.stop();
    expect(bus.to(EDGE_1).map((p) => decoded(p).rev)).toEqual([1, 2]);
  });

  it('clears the retained desired set with an empty retained message when the node is deleted', async () => {
    createNode(hub.store, { name: 'edge-1' });
    hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' }));
    await dispatcher.sync('edge-1');
    expect(bus.retained.has(EDGE_1)).toBe(true);

    hub.store.delete('Node', '', 'edge-1');
    await dispatcher.sync('edge-1');
    const last = bus.to(EDGE_1).at(-1)!;
    expect(last.payload.length).toBe(0);
    expect(last.opts).toEqual({ qos: 1, retain: true });
    expect(bus.retained.has(EDGE_1)).toBe(false);
    expect(dispatcher.revision('edge-1')).toBeUndefined();

    await dispatcher.sync('edge-1');
    expect(bus.to(EDGE_1)).toHaveLength(2);
  });

  it('publishes nothing for a node that never existed', async () => {
    await dispatcher.sync('ghost');
    expect(bus.published).toEqual([]);
  });
});

describe('Dispatcher watches', () => {
  it('publishes on start, when pods bound to a node change, and when a node goes', async () => {
    createNode(hub.store, { name: 'edge-1' });
    createNode(hub.store, { name: 'edge-2' });
    dispatcher.start();
    await dispatcher.queue.idle();
    expect(bus.published.map((p) => p.topic).sort()).toEqual([EDGE_1, topics.desired('edge-2')]);

    hub.store.create(podObject({ name: 'web', nodeName: 'edge-1' }));
    await dispatcher.queue.idle();
    expect(lastDesired()).toMatchObject({ rev: 2, pods: [{ name: 'web' }] });
    expect(bus.to(topics.desired('edge-2'))).toHaveLength(1);

    hub.store.delete('Pod', 'default', 'web');
    await dispatcher.queue.idle();
    expect(lastDesired()).toMatchObject({ rev: 3, pods: [] });

    hub.store.delete('Node', '', 'edge-2');
    await dispatcher.queue.idle();
    expect(bus.to(topics.desired('edge-2')).at(-1)!.payload.length).toBe(0);
  });

  it('does not republish when only a node’s status changes', async () => {
    createNode(hub.store, { name: 'edge-1' });
    dispatcher.start();
    await dispatcher.queue.idle();
    hub.store.updateStatus('Node', '', 'edge-1', { conditions: [{ type: 'Ready', status: 'False' }] });
    await dispatcher.queue.idle();
    expect(bus.to(EDGE_1)).toHaveLength(1);
  });
});

describe('the desired set carries the pod network', () => {
  it('sends network once the node has a pod CIDR; a new pod CIDR is a new revision, a status write none', async () => {
    dispatcher.stop();
    dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log, { clusterCIDR: '10.42.0.0/16' });
    dispatcher.start();
    createNode(hub.store, { name: 'edge-1' });
    await dispatcher.queue.idle();
    const first = lastDesired();
    expect(first.network).toBeUndefined();
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, spec: { ...(cur.spec as object), podCIDR: '10.42.3.0/24', podCIDRs: ['10.42.3.0/24'] } }));
    await dispatcher.queue.idle();
    const second = lastDesired();
    expect(second.network).toEqual({ podCIDR: '10.42.3.0/24', clusterCIDR: '10.42.0.0/16' });
    expect(second.rev).toBe(first.rev + 1);
    const sent = bus.to(EDGE_1).length;
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, status: { ...(cur.status as NodeStatus), lastHeartbeatTime: new Date().toISOString() } }));
    await dispatcher.queue.idle();
    expect(bus.to(EDGE_1).length).toBe(sent);
  });
});

describe('the desired set names the service CIDR and the node\'s site', () => {
  it('sends serviceCIDR, and the site from topology.kubernetes.io/zone else site; a site changed is a new revision', async () => {
    dispatcher.stop();
    dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log, { clusterCIDR: '10.42.0.0/16', serviceCIDR: '10.43.0.0/16' });
    dispatcher.start();
    createNode(hub.store, { name: 'edge-1', labels: { site: 'depot' } });
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, spec: { podCIDR: '10.42.3.0/24', podCIDRs: ['10.42.3.0/24'] } }));
    await dispatcher.queue.idle();
    expect(lastDesired().network).toEqual({ podCIDR: '10.42.3.0/24', clusterCIDR: '10.42.0.0/16', serviceCIDR: '10.43.0.0/16', site: 'depot' });
    const rev = lastDesired().rev;
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { site: 'depot', 'topology.kubernetes.io/zone': 'north' } } }));
    await dispatcher.queue.idle();
    expect(lastDesired().network?.site).toBe('north');
    expect(lastDesired().rev).toBe(rev + 1);
  });
});

describe('the desired set\'s pod CIDR is the IPAM\'s', () => {
  it('keeps sending the held block while spec.podCIDR is cleared by hand', async () => {
    dispatcher.stop();
    const held = new Map([['edge-1', '10.42.3.0/24']]);
    dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log, { clusterCIDR: '10.42.0.0/16', podCIDROf: (n) => held.get(n) });
    dispatcher.start();
    createNode(hub.store, { name: 'edge-1' });
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, spec: { podCIDR: '10.42.3.0/24', podCIDRs: ['10.42.3.0/24'] } }));
    await dispatcher.queue.idle();
    const rev = lastDesired().rev;
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, spec: {} }));
    await dispatcher.queue.idle();
    expect(lastDesired().network).toEqual({ podCIDR: '10.42.3.0/24', clusterCIDR: '10.42.0.0/16' });
    expect(lastDesired().rev).toBe(rev);
  });
});
