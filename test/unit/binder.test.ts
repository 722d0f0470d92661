import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodBinder } from '../../hub/controllers/binder.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { createNode, eventsAbout, podObject, setNodeReady, testHub, type TestHub } from './builders.js';

const SENSORS = { fleet: 'sensors' };

let hub: TestHub;
let binder: PodBinder;

beforeEach(() => {
  hub = testHub();
  binder = new PodBinder(hub.store, hub.events, hub.log);
});
afterEach(() => {
  binder.stop();
  hub.db.close();
});

function nodeOf(pod: string): string | undefined {
  return (hub.store.get('Pod', 'default', pod)!.spec as PodSpec).nodeName;
}

function statusOf(pod: string): PodStatus | undefined {
  return hub.store.get('Pod', 'default', pod)!.status as PodStatus | undefined;
}

function createPod(name: string, nodeSelector?: Record<string, string>): void {
  hub.store.create(podObject({ name, ...(nodeSelector ? { nodeSelector } : {}) }));
}

describe('PodBinder.reconcile', () => {
  it('binds a pod to the matching Ready node that runs the fewest pods', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'edge-2', labels: SENSORS });
    createNode(hub.store, { name: 'gateway' });
    hub.store.create(podObject({ name: 'busy-a', nodeName: 'edge-1' }));
    hub.store.create(podObject({ name: 'busy-b', nodeName: 'gateway' }));
    hub.store.create(podObject({ name: 'busy-c', nodeName: 'gateway' }));
    createPod('reader', SENSORS);

    binder.reconcile('default/reader');

    expect(nodeOf('reader')).toBe('edge-2');
    expect(statusOf('reader')?.conditions).toEqual([{ type: 'PodScheduled', status: 'True' }]);
    expect(eventsAbout(hub.store, 'Pod', 'reader')).toEqual(['Normal Scheduled: Successfully assigned default/reader to edge-2']);
  });

  it('spreads pods across nodes as they are bound one after another', () => {
    createNode(hub.store, { name: 'edge-1' });
    createNode(hub.store, { name: 'edge-2' });
    for (const name of ['a', 'b', 'c', 'd']) {
      createPod(name);
      binder.reconcile(`default/${name}`);
    }
    expect(['a', 'b', 'c', 'd'].map(nodeOf)).toEqual(['edge-1', 'edge-2', 'edge-1', 'edge-2']);
  });

  it('skips cordoned and NotReady nodes', () => {
    createNode(hub.store, { name: 'edge-1', unschedulable: true });
    createNode(hub.store, { name: 'edge-2', ready: false });
    createNode(hub.store, { name: 'edge-3' });
    hub.store.create(podObject({ name: 'busy', nodeName: 'edge-3' }));
    createPod('app');
    binder.reconcile('default/app');
    expect(nodeOf('app')).toBe('edge-3');
  });

  it('leaves a pod that already has a node alone', () => {
    createNode(hub.store, { name: 'edge-1' });
    hub.store.create(podObject({ name: 'pinned', nodeName: 'elsewhere' }));
    const rv = hub.store.currentResourceVersion();
    binder.reconcile('default/pinned');
    expect(nodeOf('pinned')).toBe('elsewhere');
    expect(hub.store.currentResourceVersion()).toBe(rv);
  });

  it('ignores a pod that no longer exists', () => {
    expect(() => binder.reconcile('default/gone')).not.toThrow();
  });

  describe('when nothing fits', () => {
    beforeEach(() => {
      createNode(hub.store, { name: 'edge-1', labels: SENSORS, ready: false });
      createNode(hub.store, { name: 'gateway-1', labels: { fleet: 'gateways' } });
      createNode(hub.store, { name: 'gateway-2', labels: { fleet: 'gateways' } });
      createPod('reader', SENSORS);
      binder.reconcile('default/reader');
    });

    const message = "0/3 nodes are available: 1 node(s) were not ready, 2 node(s) didn't match Pod's node affinity/selector.";

    it('leaves the pod unbound and Pending, with PodScheduled False (Unschedulable) and a message counting the reasons', () => {
      expect(nodeOf('reader')).toBeUndefined();
      expect(statusOf('reader')).toEqual({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }] });
    });

    it('records a FailedScheduling Warning event with the same message', () => {
      expect(eventsAbout(hub.store, 'Pod', 'reader')).toEqual([`Warning FailedScheduling: ${message}`]);
    });

    it('counts a repeated failure on the same event rather than adding one', () => {
      binder.reconcile('default/reader');
      const events = hub.store.list('Event').items;
      expect(events).toHaveLength(1);
      expect(events[0]!.count).toBe(2);
    });
  });

  it('orders the reasons as Kubernetes does (sorted), whatever the order of the nodes', () => {
    // Node names sort so that the nodes that do not match come first.
    createNode(hub.store, { name: 'a-gateway', labels: { fleet: 'gateways' } });
    createNode(hub.store, { name: 'b-gateway', labels: { fleet: 'gateways' } });
    createNode(hub.store, { name: 'c-cordoned', labels: SENSORS, unschedulable: true });
    createNode(hub.store, { name: 'z-sensor', labels: SENSORS, ready: false });
    createPod('reader', SENSORS);
    binder.reconcile('default/reader');
    expect(statusOf('reader')?.conditions?.[0]?.message).toBe(
      "0/4 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector.",
    );
  });

  it('says so when there are no nodes at all', () => {
    createPod('app');
    binder.reconcile('default/app');
    expect(statusOf('app')?.conditions?.[0]).toEqual({ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/0 nodes are available.' });
  });
});

describe('PodBinder watches', () => {
  it('binds new pods, and retries an unschedulable pod when a node becomes Ready', async () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS, ready: false });
    binder.start();
    createPod('reader', SENSORS);
    await binder.queue.idle();
    expect(nodeOf('reader')).toBeUndefined();
    expect(statusOf('reader')?.conditions?.[0]).toMatchObject({ status: 'False', reason: 'Unschedulable' });

    setNodeReady(hub.store, 'edge-1', true);
    await binder.queue.idle();
    expect(nodeOf('reader')).toBe('edge-1');
    expect(statusOf('reader')).toEqual({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }] });
  });

  it('binds pods that were waiting before it started', async () => {
    createNode(hub.store, { name: 'edge-1' });
    createPod('early');
    binder.start();
    await binder.queue.idle();
    expect(nodeOf('early')).toBe('edge-1');
  });
});
