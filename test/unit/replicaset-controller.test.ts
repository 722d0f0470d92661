import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReplicaSetController } from '../../hub/controllers/replicaset.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { ReplicaSetSpec, ReplicaSetStatus } from '../../shared/resources/deployment.js';
import type { PodPhase, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { createNode, eventsAbout, testHub, type TestHub } from './builders.js';

const IMAGE = 'flotilla-test/busybox:1';
const START = Date.parse('2025-01-01T12:00:00Z');
const KEY = 'default/web-abc';

let hub: TestHub;
let controller: ReplicaSetController;
let clock: number;

beforeEach(() => {
  hub = testHub();
  clock = START;
  controller = new ReplicaSetController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
  createNode(hub.store, { name: 'edge-1' });
  createNode(hub.store, { name: 'edge-2' });
});
afterEach(() => {
  controller.stop();
  hub.db.close();
});

function createReplicaSet(replicas: number, extra: Partial<ReplicaSetSpec> = {}): StoredObject {
  const spec: ReplicaSetSpec = {
    replicas,
    selector: { matchLabels: { app: 'web', 'pod-template-hash': 'abc' } },
    template: { metadata: { labels: { app: 'web', 'pod-template-hash': 'abc' } }, spec: { containers: [{ name: 'web', image: IMAGE }] } },
    ...extra,
  };
  return hub.store.create({ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', metadata: { name: 'web-abc', namespace: 'default' }, spec } as NewObject);
}

function setReplicas(n: number): void {
  hub.store.mutate('ReplicaSet', 'default', 'web-abc', (rs) => ({ ...rs, spec: { ...(rs.spec as ReplicaSetSpec), replicas: n } }));
}

function pods(): StoredObject[] {
  return hub.store.list('Pod', { namespace: 'default' }).items;
}

function podNames(): string[] {
  return pods().map((p) => p.metadata.name).sort();
}

function rsStatus(): ReplicaSetStatus {
  return hub.store.get('ReplicaSet', 'default', 'web-abc')!.status as ReplicaSetStatus;
}

/** What the scheduler and the agent would write: the pod bound to `node`, in `phase`, Ready or not since `readySince`. */
function report(name: string, o: { node?: string; phase?: PodPhase; ready?: boolean; readySince?: number; restarts?: number } = {}): void {
  const pod = hub.store.get('Pod', 'default', name)!;
  if (o.node) hub.store.update({ ...pod, spec: { ...(pod.spec as PodSpec), nodeName: o.node } });
  const ready = o.ready ?? false;
  const status: PodStatus = {
    phase: o.phase ?? 'Running',
    conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: new Date(o.readySince ?? clock).toISOString() }],
    containerStatuses: [{ name: 'web', image: IMAGE, ready, restartCount: o.restarts ?? 0, state: { running: {} } }],
  };
  hub.store.updateStatus('Pod', 'default', name, status);
}

describe('ReplicaSetController.reconcile', () => {
  it('creates the missing pods without a node, named <rs>-<5 chars>, labelled and owned by the ReplicaSet', () => {
    const rs = createReplicaSet(3);
    controller.reconcile(KEY);
    const created = pods();
    expect(created).toHaveLength(3);
    for (const pod of created) {
      expect(pod.metadata.name).toMatch(/^web-abc-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
      expect((pod.spec as PodSpec).nodeName).toBeUndefined();
      expect(pod.metadata.labels).toEqual({ app: 'web', 'pod-template-hash': 'abc' });
      expect(pod.metadata.ownerReferences).toEqual([{ apiVersion: 'flotilla/v1', kind: 'ReplicaSet', name: 'web-abc', uid: rs.metadata.uid, controller: true }]);
      expect((pod.status as PodStatus).phase).toBe('Pending');
    }
    expect(eventsAbout(hub.store, 'ReplicaSet', 'web-abc').filter((e) => e.startsWith('Normal SuccessfulCreate: Created pod: web-abc-'))).toHaveLength(3);
    expect(rsStatus()).toEqual({ replicas: 3, readyReplicas: 0, availableReplicas: 0, observedGeneration: 1 });
    // Level-triggered: a second look changes nothing.
    controller.reconcile(KEY);
    expect(pods()).toHaveLength(3);
  });

  it('deletes surplus pods unscheduled first, then not Ready, then the newest', () => {
    createReplicaSet(5);
    controller.reconcile(KEY);
    const [a, b, c, d] = podNames() as [string, string, string, string, string];
    // a: Ready on a node since long; b: Ready since recently; c: Running not Ready; d: restarting not Ready; e: unscheduled.
    report(a, { node: 'edge-1', ready: true, readySince: START - 60_000 });
    report(b, { node: 'edge-2', ready: true, readySince: START - 1_000 });
    report(c, { node: 'edge-1', ready: false });
    report(d, { node: 'edge-2', ready: false, restarts: 4 });

    setReplicas(4);
    controller.reconcile(KEY);
    expect(podNames()).toEqual([a, b, c, d].sort());
    setReplicas(3);
    controller.reconcile(KEY);
    expect(podNames()).toEqual([a, b, c].sort()); // more restarts goes first among the not Ready
    setReplicas(1);
    controller.reconcile(KEY);
    expect(podNames()).toEqual([a]); // Ready for less time goes before Ready for longer
    expect(eventsAbout(hub.store, 'ReplicaSet', 'web-abc')).toContain(`Normal SuccessfulDelete: Deleted pod: ${b} (more than the 1 replicas wanted)`);
  });

  it('replaces a pod that has Failed or Succeeded, and deletes it', () => {
    createReplicaSet(2);
    controller.reconcile(KEY);
    const [failed, ok] = podNames() as [string, string];
    report(failed, { node: 'edge-1', phase: 'Failed' });
    report(ok, { node: 'edge-2', phase: 'Succeeded' });
    controller.reconcile(KEY);
    const now = podNames();
    expect(now).toHaveLength(2);
    expect(now).not.toContain(failed);
    expect(now).not.toContain(ok);
    expect(eventsAbout(hub.store, 'ReplicaSet', 'web-abc')).toContain(`Normal SuccessfulDelete: Deleted pod: ${failed} (it has Failed; a new pod replaces it)`);
  });

  it('does not count a pod being deleted (deletionTimestamp), and leaves it alone', () => {
    createReplicaSet(2);
    controller.reconcile(KEY);
    const [leaving] = podNames() as [string];
    const pod = hub.store.get('Pod', 'default', leaving)!;
    hub.store.update({ ...pod, metadata: { ...pod.metadata, deletionTimestamp: new Date(clock).toISOString() } });
    controller.reconcile(KEY);
    expect(podNames()).toHaveLength(3);
    expect(podNames()).toContain(leaving);
    expect(rsStatus().replicas).toBe(2);
  });

  it('replaces a pod whose node is gone', () => {
    createReplicaSet(1);
    controller.reconcile(KEY);
    const [stranded] = podNames() as [string];
    report(stranded, { node: 'edge-2', ready: true });
    hub.store.delete('Node', '', 'edge-2');
    controller.reconcile(KEY);
    expect(podNames()).toHaveLength(1);
    expect(podNames()).not.toContain(stranded);
    expect(eventsAbout(hub.store, 'ReplicaSet', 'web-abc')).toContain(`Normal SuccessfulDelete: Deleted pod: ${stranded} (its node edge-2 is gone; a new pod replaces it)`);
  });

  it('counts ready and available (Ready for minReadySeconds) replicas, and looks again when the next becomes available', () => {
    createReplicaSet(3, { minReadySeconds: 10 });
    controller.reconcile(KEY);
    const [a, b] = podNames() as [string, string, string];
    report(a, { node: 'edge-1', ready: true, readySince: START - 20_000 });
    report(b, { node: 'edge-2', ready: true, readySince: START - 4_000 });
    const result = controller.reconcile(KEY);
    expect(rsStatus()).toEqual({ replicas: 3, readyReplicas: 2, availableReplicas: 1, observedGeneration: 1 });
    expect(result?.requeueAfterMs).toBe(6_001);
    clock += 6_001;
    expect(controller.reconcile(KEY)).toBeUndefined();
    expect(rsStatus().availableReplicas).toBe(2);
  });

  it('takes its pods with it when deleted, and deletes pods of an earlier ReplicaSet of the same name', () => {
    createReplicaSet(2);
    controller.reconcile(KEY);
    const first = podNames();
    hub.store.delete('ReplicaSet', 'default', 'web-abc');
    createReplicaSet(1); // same name, new uid, before the controller looked
    controller.reconcile(KEY);
    const now = podNames();
    expect(now).toHaveLength(1);
    expect(first).not.toContain(now[0]);
    hub.store.delete('ReplicaSet', 'default', 'web-abc');
    controller.reconcile(KEY);
    expect(pods()).toEqual([]);
  });

  it('is woken by its pods and by a node that goes away', async () => {
    controller.start();
    createReplicaSet(2);
    await controller.queue.idle();
    expect(pods()).toHaveLength(2);
    const [victim] = podNames() as [string];
    report(victim, { node: 'edge-1' });
    await controller.queue.idle();
    hub.store.delete('Node', '', 'edge-1');
    await controller.queue.idle();
    expect(podNames()).not.toContain(victim);
    expect(pods()).toHaveLength(2);
  });
});
