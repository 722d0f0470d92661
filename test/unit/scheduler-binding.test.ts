import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SchedulerFixture } from './scheduler-builders.js';

const SENSORS = { fleet: 'sensors' };

let f: SchedulerFixture;
beforeEach(() => {
  f = new SchedulerFixture();
});
afterEach(() => f.close());

describe('binding', () => {
  it('binds a pod to the matching Ready node that runs the fewest pods, with PodScheduled=True and a Scheduled event', async () => {
    f.nodes({ name: 'edge-1', labels: SENSORS }, { name: 'edge-2', labels: SENSORS }, { name: 'gateway' });
    f.pods({ name: 'busy-a', nodeName: 'edge-1' }, { name: 'busy-b', nodeName: 'gateway' }, { name: 'busy-c', nodeName: 'gateway' });
    f.start();
    await f.schedule({ name: 'reader', nodeSelector: SENSORS });
    expect(f.nodeOf('reader')).toBe('edge-2');
    expect(f.statusOf('reader')).toEqual({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }] });
    expect(f.events('reader')).toEqual(['Normal Scheduled: Successfully assigned default/reader to edge-2']);
  });

  it('spreads pods created together, as if bound one after another', async () => {
    f.nodes({ name: 'edge-1' }, { name: 'edge-2' }).start();
    await f.schedule({ name: 'a' }, { name: 'b' }, { name: 'c' }, { name: 'd' });
    expect(['a', 'b', 'c', 'd'].map((p) => f.nodeOf(p))).toEqual(['edge-1', 'edge-2', 'edge-1', 'edge-2']);
  });

  it('leaves a pod that already has a node alone, and counts it on that node', async () => {
    f.nodes({ name: 'edge-1', pods: 1 }).start();
    await f.schedule({ name: 'pinned', nodeName: 'edge-1' });
    expect(f.statusOf('pinned')).toBeUndefined();
    expect(f.events('pinned')).toEqual([]);
    await f.schedule({ name: 'late' });
    expect(f.whyPending('late')).toBe('0/1 nodes are available: 1 Too many pods.');
  });

  it('does not schedule pods that have finished, nor count them on their node', async () => {
    f.nodes({ name: 'edge-1', pods: 1 }).start();
    await f.schedule({ name: 'done', nodeName: 'edge-1', phase: 'Succeeded' }, { name: 'failed', phase: 'Failed' });
    expect(f.nodeOf('failed')).toBeUndefined();
    expect(f.events('failed')).toEqual([]);
    await f.schedule({ name: 'next' });
    expect(f.nodeOf('next')).toBe('edge-1');
  });

  it('tries a pod named directly (reconcile) and ignores one that does not exist', () => {
    f.nodes({ name: 'edge-1' }).start();
    f.scheduler.stop();
    f.pods({ name: 'direct' });
    f.scheduler.reconcile('default/direct');
    expect(f.nodeOf('direct')).toBe('edge-1');
    expect(() => f.scheduler.reconcile('default/gone')).not.toThrow();
  });
});

describe('when nothing fits', () => {
  const message = "0/3 nodes are available: 1 node(s) were not ready, 2 node(s) didn't match Pod's node affinity/selector.";

  beforeEach(async () => {
    f.nodes({ name: 'edge-1', labels: SENSORS, ready: false }, { name: 'gateway-1', labels: { fleet: 'gateways' } }, { name: 'gateway-2', labels: { fleet: 'gateways' } });
    f.start();
    await f.schedule({ name: 'reader', nodeSelector: SENSORS });
  });

  it('leaves the pod unbound and Pending, with PodScheduled False (Unschedulable) and a message counting the reasons', () => {
    expect(f.nodeOf('reader')).toBeUndefined();
    expect(f.statusOf('reader')).toEqual({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }] });
  });

  it('records a FailedScheduling Warning event with the same message', () => {
    expect(f.events('reader')).toEqual([`Warning FailedScheduling: ${message}`]);
  });

  it('does not try again while nothing changes: a heartbeat of a node is no change', async () => {
    f.hub.store.mutate('Node', '', 'gateway-1', (n) => ({ ...n, status: { ...(n.status as object), lastHeartbeatTime: new Date().toISOString() } }));
    await new Promise((r) => setTimeout(r, 20));
    await f.settle();
    expect(f.hub.store.list('Event').items.map((e) => e.count)).toEqual([1]);
  });

  it('tries again when a node changes, and counts the same failure up on its event at most once a minute', async () => {
    const rv = f.hub.store.currentResourceVersion();
    f.hub.store.mutate('Node', '', 'gateway-1', (n) => ({ ...n, metadata: { ...n.metadata, labels: { fleet: 'gateways', rack: 'a' } } }));
    await new Promise((r) => setImmediate(r));
    await f.settle();
    const events = f.hub.store.list('Event').items;
    expect(events).toHaveLength(1);
    expect(events[0]!.count).toBe(1);
    // The node's write only: the retry wrote neither the pod (same condition) nor its event.
    expect(Number(f.hub.store.currentResourceVersion())).toBe(Number(rv) + 1);

    const every = new SchedulerFixture({ failedSchedulingEventEveryMs: 0 });
    try {
      every.nodes({ name: 'gateway-1', labels: { fleet: 'gateways' } }).start();
      await every.schedule({ name: 'reader', nodeSelector: SENSORS });
      every.hub.store.mutate('Node', '', 'gateway-1', (n) => ({ ...n, metadata: { ...n.metadata, labels: { fleet: 'gateways', rack: 'a' } } }));
      await new Promise((r) => setImmediate(r));
      await every.settle();
      expect(every.hub.store.list('Event').items.map((e) => e.count)).toEqual([2]);
    } finally {
      every.close();
    }
  });

  it('binds the pod once a node becomes Ready', async () => {
    f.hub.store.updateStatus('Node', '', 'edge-1', { conditions: [{ type: 'Ready', status: 'True' }] });
    await new Promise((r) => setImmediate(r));
    await f.settle();
    expect(f.nodeOf('reader')).toBe('edge-1');
    expect(f.statusOf('reader')).toEqual({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }] });
  });
});

describe('retries', () => {
  it('binds a waiting pod when a pod is deleted and frees the room it needs', async () => {
    f.nodes({ name: 'edge-1', memory: '1Gi' }).start();
    await f.schedule({ name: 'big', memory: '768Mi' }, { name: 'second', memory: '512Mi' });
    expect(f.whyPending('second')).toBe('0/1 nodes are available: 1 Insufficient memory.');
    f.hub.store.delete('Pod', 'default', 'big');
    await new Promise((r) => setImmediate(r));
    await f.settle();
    expect(f.nodeOf('second')).toBe('edge-1');
  });

  it('binds a waiting pod when a pod on its node finishes', async () => {
    f.nodes({ name: 'edge-1', cpu: '1' }).start();
    await f.schedule({ name: 'job', cpu: '1' }, { name: 'next', cpu: '500m' });
    expect(f.nodeOf('next')).toBeUndefined();
    f.hub.store.updateStatus('Pod', 'default', 'job', { phase: 'Succeeded' });
    await new Promise((r) => setImmediate(r));
    await f.settle();
    expect(f.nodeOf('next')).toBe('edge-1');
  });

  it('waits for the back-off before trying a pod again', async () => {
    const slow = new SchedulerFixture({ initialBackoffMs: 60_000, maxBackoffMs: 60_000 });
    try {
      slow.nodes({ name: 'edge-1', ready: false }).start();
      await slow.schedule({ name: 'app' });
      slow.hub.store.updateStatus('Node', '', 'edge-1', { conditions: [{ type: 'Ready', status: 'True' }] });
      await new Promise((r) => setTimeout(r, 20));
      await slow.settle();
      expect(slow.nodeOf('app')).toBeUndefined();
      expect(slow.scheduler.queue.get('default/app')?.state).toBe('backoff');
    } finally {
      slow.close();
    }
  });

  it('binds pods that were waiting before it started', async () => {
    f.nodes({ name: 'edge-1' }).pods({ name: 'early' }).start();
    await f.settle();
    expect(f.nodeOf('early')).toBe('edge-1');
  });

  it('counts DaemonSet pods (created with their node) in the aggregates', async () => {
    f.nodes({ name: 'edge-1', cpu: '1' }, { name: 'edge-2', cpu: '1' }).start();
    await f.schedule({ name: 'ds-edge-1', nodeName: 'edge-1', cpu: '800m' });
    await f.schedule({ name: 'app', cpu: '500m' });
    expect(f.nodeOf('app')).toBe('edge-2');
  });
});

describe('failed writes', () => {
  it('tries a pod again when its binding could not be written', async () => {
    f.nodes({ name: 'edge-1' }).start();
    const store = f.hub.store;
    const mutate = store.mutate.bind(store);
    let failures = 1;
    store.mutate = (kind, namespace, name, fn) => {
      if (kind === 'Pod' && failures-- > 0) throw new Error('database is locked');
      return mutate(kind, namespace, name, fn);
    };
    await f.schedule({ name: 'app' });
    await new Promise((r) => setTimeout(r, 10));
    await f.settle();
    expect(f.nodeOf('app')).toBe('edge-1');
    expect(f.scheduler.cache.pod('default/app')).toMatchObject({ nodeName: 'edge-1', assumed: false });
  });

  it('forgets what a rolled-back batch assumed and places its pods again', async () => {
    f.nodes({ name: 'edge-1', pods: 2 }).start();
    // Created before the failure is armed: the next outermost transaction is the scheduler's batch.
    f.pods({ name: 'a' }, { name: 'b' });
    const store = f.hub.store;
    const transaction = store.transaction.bind(store);
    let depth = 0;
    let fail = true;
    store.transaction = <T>(fn: () => T): T => {
      depth++;
      try {
        if (depth === 1 && fail) {
          fail = false;
          return transaction(() => {
            fn();
            throw new Error('disk I/O error');
          });
        }
        return transaction(fn);
      } finally {
        depth--;
      }
    };
    await f.settle();
    expect(fail).toBe(false);
    await new Promise((r) => setTimeout(r, 10));
    await f.settle();
    // Had the rolled-back placements stayed counted, the node (room for two) would look full.
    expect([f.nodeOf('a'), f.nodeOf('b')]).toEqual(['edge-1', 'edge-1']);
    expect(f.events('a')).toEqual(['Normal Scheduled: Successfully assigned default/a to edge-1']);
  });
});

describe('a pod spec the scheduler cannot read', () => {
  it('stays Pending with a message naming the field, and is tried again only when the pod changes', async () => {
    f.nodes({ name: 'edge-1', labels: { ram: '2' } }).start();
    await f.schedule({
      name: 'bad',
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'ram', operator: 'Gt', values: ['lots'] }] }] } } },
    });
    const field = 'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values';
    expect(f.whyPending('bad')).toBe(`the pod cannot be scheduled: ${field}: must be one integer when operator is Gt`);
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'edge-2' }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
    await new Promise((r) => setImmediate(r));
    await f.settle();
    expect(f.hub.store.list('Event').items.find((e) => e.reason === 'FailedScheduling')?.count).toBe(1);
  });

  it('says which quantity is malformed', async () => {
    f.nodes({ name: 'edge-1' }).start();
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Pod', metadata: { name: 'odd', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'x', resources: { requests: { memory: '12 parsecs' } } }] } });
    await f.settle();
    expect(f.whyPending('odd')).toMatch(/^the pod cannot be scheduled: spec\.containers\[0\]\.resources\.requests\.memory: '12 parsecs' is not a valid quantity/);
  });
});

describe('the FailedScheduling message', () => {
  it('orders the reasons as Kubernetes does (sorted), whatever the order of the nodes', async () => {
    f.nodes(
      { name: 'a-gateway', labels: { fleet: 'gateways' } },
      { name: 'b-gateway', labels: { fleet: 'gateways' } },
      { name: 'c-cordoned', labels: SENSORS, unschedulable: true },
      { name: 'z-sensor', labels: SENSORS, ready: false },
    ).start();
    await f.schedule({ name: 'reader', nodeSelector: SENSORS });
    expect(f.whyPending('reader')).toBe("0/4 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector.");
  });

  it('says so when there are no nodes at all', async () => {
    f.start();
    await f.schedule({ name: 'app' });
    expect(f.scheduledCondition('app')).toEqual({ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/0 nodes are available.' });
  });

  it('counts each short resource of a node, as Kubernetes does', async () => {
    f.nodes({ name: 'small-1', cpu: '1', memory: '1Gi' }, { name: 'small-2', cpu: '1', memory: '4Gi' }, { name: 'sensor', labels: { role: 'sensor' } }).start();
    const notOnSensors = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'role', operator: 'NotIn' as const, values: ['sensor'] }] }] } } };
    await f.schedule({ name: 'picky', cpu: '2', memory: '2Gi', affinity: notOnSensors });
    expect(f.whyPending('picky')).toBe("0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu.");
  });
});
