import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NodeLifecycleController } from '../../hub/controllers/nodelifecycle.js';
import { ReplicaSetController } from '../../hub/controllers/replicaset.js';
import { nodeNotFoundMessage } from '../../hub/scheduler/missing-node.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { ReplicaSetSpec } from '../../shared/resources/deployment.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { createNode, eventsAbout, podObject, testHub, type TestHub } from './builders.js';
import { SchedulerFixture } from './scheduler-builders.js';

// Pods pinned to a node by spec.nodeName: Kubernetes accepts them and they wait Pending for
// that node. Neither the ReplicaSet controller nor the node lifecycle controller may delete
// them, since whatever replaced them would be pinned to the same node.

const IMAGE = 'flotilla-test/busybox:1';
const T0 = Date.parse('2025-01-01T12:00:00Z');
const EVICTION_S = 60;

let hub: TestHub;
let clock: number;
const stops: (() => void)[] = [];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(T0);
  clock = T0;
  hub = testHub();
});
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
  hub.db.close();
  vi.useRealTimers();
});

function advance(seconds: number): void {
  clock += seconds * 1000;
  vi.setSystemTime(clock);
}

function replicaSet(name: string, nodeName?: string): StoredObject {
  const spec: ReplicaSetSpec = {
    replicas: 2,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: IMAGE }], ...(nodeName ? { nodeName } : {}) } },
  };
  return hub.store.create({ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', metadata: { name, namespace: 'default' }, spec } as NewObject);
}

function podsOf(app: string): StoredObject[] {
  return hub.store.list('Pod', { namespace: 'default' }).items.filter((p) => p.metadata.labels?.app === app);
}

function rsController(): ReplicaSetController {
  const c = new ReplicaSetController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
  stops.push(() => c.stop());
  return c;
}

describe('the ReplicaSet controller and a template pinned to a node', () => {
  it('keeps pods pinned to a node that does not exist, pass after pass, without deleting or making any', () => {
    replicaSet('pinned', 'ghost');
    const c = rsController();
    c.reconcile('default/pinned');
    const first = podsOf('pinned').map((p) => p.metadata.uid).sort();
    expect(first).toHaveLength(2);
    const rv = hub.store.currentResourceVersion();
    for (let i = 0; i < 5; i++) c.reconcile('default/pinned');
    expect(podsOf('pinned').map((p) => p.metadata.uid).sort()).toEqual(first);
    // Nothing written: not a pod, not an event, not even the status again.
    expect(hub.store.currentResourceVersion()).toBe(rv);
    expect(eventsAbout(hub.store, 'ReplicaSet', 'pinned').filter((e) => e.includes('SuccessfulDelete'))).toEqual([]);
  });

  it('keeps pinned pods when their node is deleted, but replaces the pods the scheduler had placed there', () => {
    createNode(hub.store, { name: 'edge-1' });
    replicaSet('pinned', 'edge-1');
    replicaSet('placed');
    const c = rsController();
    c.reconcile('default/pinned');
    c.reconcile('default/placed');
    for (const p of podsOf('placed')) hub.store.mutate('Pod', 'default', p.metadata.name, (cur) => ({ ...cur, spec: { ...(cur.spec as PodSpec), nodeName: 'edge-1' } }));
    const pinned = podsOf('pinned').map((p) => p.metadata.name).sort();
    const placed = podsOf('placed').map((p) => p.metadata.name);
    hub.store.delete('Node', '', 'edge-1');
    c.reconcile('default/pinned');
    c.reconcile('default/placed');
    expect(podsOf('pinned').map((p) => p.metadata.name).sort()).toEqual(pinned);
    const now = podsOf('placed');
    expect(now).toHaveLength(2);
    for (const p of now) expect(placed).not.toContain(p.metadata.name);
  });
});

describe('the node lifecycle controller and pods pinned to a NotReady node', () => {
  function lifecycle(): NodeLifecycleController {
    const c = new NodeLifecycleController({ store: hub.store, events: hub.events, log: hub.log }, { nodeGraceSeconds: 3_600, evictionTimeoutSeconds: EVICTION_S, now: () => clock });
    stops.push(() => c.stop());
    return c;
  }

  function notReadyNode(name: string): void {
    createNode(hub.store, { name, ready: false });
  }

  it('does not evict pods whose controller pins them to the node, and evicts the ones it placed elsewhere', () => {
    notReadyNode('edge-1');
    replicaSet('pinned', 'edge-1');
    replicaSet('placed');
    const rs = rsController();
    rs.reconcile('default/pinned');
    rs.reconcile('default/placed');
    for (const p of podsOf('placed')) hub.store.mutate('Pod', 'default', p.metadata.name, (cur) => ({ ...cur, spec: { ...(cur.spec as PodSpec), nodeName: 'edge-1' } }));
    const c = lifecycle();
    c.reconcile('edge-1');
    advance(EVICTION_S);
    c.reconcile('edge-1');
    expect(podsOf('placed')).toEqual([]);
    const pinned = podsOf('pinned');
    expect(pinned).toHaveLength(2);
    for (const p of pinned) expect((p.status as PodStatus).conditions?.find((x) => x.type === 'Ready')).toMatchObject({ status: 'False', reason: 'NodeNotReady' });
    for (const p of pinned) expect(eventsAbout(hub.store, 'Pod', p.metadata.name).filter((e) => e.includes('TaintManagerEviction'))).toEqual([]);
  });

  it('gives a pod that comes to a node after its taint the whole toleration time, counted from the pod', () => {
    notReadyNode('edge-1');
    const c = lifecycle();
    c.reconcile('edge-1');
    advance(EVICTION_S * 2);
    hub.store.create(podObject({ name: 'late', nodeName: 'edge-1' }));
    expect(c.reconcile('edge-1')).toEqual({ requeueAfterMs: EVICTION_S * 1000 });
    expect(hub.store.get('Pod', 'default', 'late')).toBeDefined();
    advance(EVICTION_S);
    c.reconcile('edge-1');
    expect(hub.store.get('Pod', 'default', 'late')).toBeUndefined();
  });
});

describe('the scheduler and a pod bound to a node that does not exist', () => {
  let f: SchedulerFixture;
  beforeEach(() => {
    vi.useRealTimers();
    f = new SchedulerFixture();
  });
  afterEach(() => f.close());

  const turn = () => new Promise((r) => setImmediate(r));

  it('says so once (PodScheduled=False, NodeNotFound, and one Warning), and turns PodScheduled True when the node joins', async () => {
    f.nodes({ name: 'edge-1' }).start();
    f.pods({ name: 'waiting', nodeName: 'ghost' });
    await turn();
    expect(f.scheduledCondition('waiting')).toEqual({ type: 'PodScheduled', status: 'False', reason: 'NodeNotFound', message: nodeNotFoundMessage('ghost') });
    expect(f.events('waiting')).toEqual([`Warning NodeNotFound: ${nodeNotFoundMessage('ghost')}`]);
    expect(f.statusOf('waiting')?.phase).toBe('Pending');
    // Its own status write, and later changes, say nothing more.
    const rv = f.hub.store.currentResourceVersion();
    f.hub.store.mutate('Pod', 'default', 'waiting', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { touched: 'yes' } } }));
    await turn();
    await turn();
    expect(Number(f.hub.store.currentResourceVersion())).toBe(Number(rv) + 1);
    expect(f.scheduler.missingNodes.size).toBe(1);

    f.nodes({ name: 'ghost' });
    await turn();
    expect(f.scheduledCondition('waiting')).toEqual({ type: 'PodScheduled', status: 'True' });
    expect(f.nodeOf('waiting')).toBe('ghost');
    expect(f.scheduler.missingNodes.size).toBe(0);
  });

  it('marks many pinned pods a batch per turn of the event loop, not all in one transaction', async () => {
    f.nodes({ name: 'edge-1' }).start();
    f.hub.store.transaction(() => {
      for (let i = 0; i < 600; i++) f.pods({ name: `p-${i}`, nodeName: 'ghost' });
    });
    const marked = () => f.hub.store.list('Pod').items.filter((p) => (p.status as PodStatus | undefined)?.conditions?.some((c) => c.reason === 'NodeNotFound')).length;
    await turn();
    expect(marked()).toBe(256);
    for (let i = 0; i < 5; i++) await turn();
    expect(marked()).toBe(600);
  });

  it('marks the pods left on a node that is deleted, and forgets a pod once it is gone', async () => {
    f.nodes({ name: 'edge-1' }).start();
    f.pods({ name: 'bare', nodeName: 'edge-1' });
    await turn();
    expect(f.scheduledCondition('bare')).toBeUndefined();
    f.hub.store.delete('Node', '', 'edge-1');
    await turn();
    expect(f.scheduledCondition('bare')).toMatchObject({ status: 'False', reason: 'NodeNotFound' });
    f.hub.store.delete('Pod', 'default', 'bare');
    expect(f.scheduler.missingNodes.size).toBe(0);
  });
});
