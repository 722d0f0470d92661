import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DESIRED_REPLICAS_ANNOTATION, DeploymentController } from '../../hub/controllers/deployment.js';
import { templateHash } from '../../hub/controllers/names.js';
import { ReplicaSetController } from '../../hub/controllers/replicaset.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import { POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, type DeploymentSpec, type DeploymentStatus, type ReplicaSetSpec } from '../../shared/resources/deployment.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { createNode, eventsAbout, testHub, type TestHub } from './builders.js';

const V1 = 'flotilla-test/busybox:1';
const V2 = 'flotilla-test/busybox:2';
const START = Date.parse('2025-01-01T12:00:00Z');
const KEY = 'default/web';

let hub: TestHub;
let deployments: DeploymentController;
let replicaSets: ReplicaSetController;
let clock: number;

beforeEach(() => {
  hub = testHub();
  clock = START;
  const ctx = { store: hub.store, events: hub.events, log: hub.log };
  deployments = new DeploymentController(ctx, { now: () => clock });
  replicaSets = new ReplicaSetController(ctx, { now: () => clock });
  createNode(hub.store, { name: 'edge-1' });
  createNode(hub.store, { name: 'edge-2' });
});
afterEach(() => {
  deployments.stop();
  replicaSets.stop();
  hub.db.close();
});

function template(image: string): DeploymentSpec['template'] {
  return { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image }] } };
}

function createDeployment(spec: Partial<DeploymentSpec> = {}, annotations?: Record<string, string>): StoredObject {
  const full: DeploymentSpec = { replicas: 3, selector: { matchLabels: { app: 'web' } }, template: template(V1), ...spec };
  return hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default', ...(annotations ? { annotations } : {}) }, spec: full } as NewObject);
}

function changeSpec(change: Partial<DeploymentSpec>): void {
  hub.store.mutate('Deployment', 'default', 'web', (d) => ({ ...d, spec: { ...(d.spec as DeploymentSpec), ...change } }));
}

function deployment(): StoredObject {
  return hub.store.get('Deployment', 'default', 'web')!;
}

function status(): DeploymentStatus {
  return (deployment().status as DeploymentStatus | undefined) ?? {};
}

/** The Deployment's ReplicaSets, oldest revision first. */
function revisions(): StoredObject[] {
  const rev = (rs: StoredObject) => Number(rs.metadata.annotations?.[REVISION_ANNOTATION] ?? 0);
  return hub.store.list('ReplicaSet', { namespace: 'default' }).items.sort((a, b) => rev(a) - rev(b));
}

function sizeOf(rs: StoredObject): number {
  return (rs.spec as ReplicaSetSpec).replicas ?? 1;
}

function pods(): StoredObject[] {
  return hub.store.list('Pod', { namespace: 'default' }).items;
}

const isReady = (p: StoredObject) => (p.status as PodStatus | undefined)?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
const imageOf = (p: StoredObject) => (p.spec as PodSpec).containers[0]!.image;

/**
 * Runs both controllers until nothing changes, as their watches would, calling `check` after
 * every single reconcile so that a test sees each state the store passes through.
 */
function settle(check: () => void = () => {}, deploymentPasses = 1): void {
  for (let i = 0; i < 100; i++) {
    const before = hub.store.currentResourceVersion();
    for (let pass = 0; pass < deploymentPasses; pass++) {
      deployments.reconcile(KEY);
      check();
    }
    for (const rs of hub.store.list('ReplicaSet').items) {
      replicaSets.reconcile(`default/${rs.metadata.name}`);
      check();
    }
    if (hub.store.currentResourceVersion() === before) return;
  }
  throw new Error('the controllers did not settle');
}

/** What the scheduler and agent do for one pod: bind it, run it, report it Ready now. */
function makeReady(pod: StoredObject): void {
  hub.store.update({ ...pod, spec: { ...(pod.spec as PodSpec), nodeName: pod.metadata.name.charCodeAt(pod.metadata.name.length - 1) % 2 ? 'edge-1' : 'edge-2' } });
  const ready: PodStatus = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(clock).toISOString() }] };
  hub.store.updateStatus('Pod', 'default', pod.metadata.name, ready);
}

function readyAll(): void {
  for (const p of pods()) if (!isReady(p)) makeReady(p);
  settle();
}

function rolledOutTo(image: string, replicas: number): boolean {
  const all = pods();
  return all.length === replicas && all.every((p) => isReady(p) && imageOf(p) === image) && status().updatedReplicas === replicas && status().availableReplicas === replicas;
}

/**
 * Rolls the template to `image`, one pod becoming Ready at a time; returns the fewest Ready and
 * the most pods seen at any step. `deploymentPasses` > 1 lets the Deployment controller run
 * ahead of the ReplicaSet controller, as it may when their queues interleave.
 */
function rollTo(image: string, replicas: number, deploymentPasses = 1): { minReady: number; maxPods: number } {
  let minReady = Infinity;
  let maxPods = 0;
  const check = () => {
    const all = pods();
    minReady = Math.min(minReady, all.filter(isReady).length);
    maxPods = Math.max(maxPods, all.length);
  };
  changeSpec({ template: template(image) });
  for (let round = 0; round < 200 && !rolledOutTo(image, replicas); round++) {
    settle(check, deploymentPasses);
    const waiting = pods().find((p) => !isReady(p));
    if (waiting) makeReady(waiting);
    check();
  }
  settle(check);
  expect(rolledOutTo(image, replicas)).toBe(true);
  return { minReady, maxPods };
}

describe('DeploymentController: the first revision', () => {
  it('creates one ReplicaSet <name>-<template hash>, owned, labelled, revision 1, and its pods', () => {
    const d = createDeployment({}, { 'kubernetes.io/change-cause': 'first' });
    settle();
    const [rs] = revisions();
    const hash = templateHash(template(V1));
    expect(rs!.metadata.name).toBe(`web-${hash}`);
    expect(rs!.metadata.labels).toEqual({ app: 'web', [POD_TEMPLATE_HASH_LABEL]: hash });
    expect(rs!.metadata.ownerReferences).toEqual([{ apiVersion: 'flotilla/v1', kind: 'Deployment', name: 'web', uid: d.metadata.uid, controller: true }]);
    expect(rs!.metadata.annotations).toMatchObject({ [REVISION_ANNOTATION]: '1', 'kubernetes.io/change-cause': 'first', [DESIRED_REPLICAS_ANNOTATION]: '3' });
    expect((rs!.spec as ReplicaSetSpec).selector).toEqual({ matchLabels: { app: 'web', [POD_TEMPLATE_HASH_LABEL]: hash } });
    expect(deployment().metadata.annotations?.[REVISION_ANNOTATION]).toBe('1');
    expect(pods()).toHaveLength(3);
    expect(pods().every((p) => p.metadata.labels?.[POD_TEMPLATE_HASH_LABEL] === hash && !(p.spec as PodSpec).nodeName)).toBe(true);
    expect(eventsAbout(hub.store, 'Deployment', 'web')).toContain(`Normal ScalingReplicaSet: Scaled up replica set web-${hash} to 3`);
  });

  it('reports replicas, updated, ready, available and the Available and Progressing conditions', () => {
    createDeployment();
    settle();
    expect(status()).toMatchObject({ observedGeneration: 1, replicas: 3, updatedReplicas: 3, readyReplicas: 0, availableReplicas: 0, unavailableReplicas: 3 });
    expect(status().conditions?.find((c) => c.type === 'Available')).toMatchObject({ status: 'False', reason: 'MinimumReplicasUnavailable' });
    // The pods being created is progress (Kubernetes' ReplicaSetUpdated).
    expect(status().conditions?.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'True', reason: 'ReplicaSetUpdated' });
    readyAll();
    expect(status()).toMatchObject({ replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3, unavailableReplicas: 0 });
    expect(status().conditions?.find((c) => c.type === 'Available')).toMatchObject({ status: 'True', reason: 'MinimumReplicasAvailable' });
    expect(status().conditions?.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'True', reason: 'NewReplicaSetAvailable' });
  });

  it('counts a pod available only after minReadySeconds, and looks again then', () => {
    createDeployment({ minReadySeconds: 5 });
    settle();
    readyAll();
    expect(status()).toMatchObject({ readyReplicas: 3, availableReplicas: 0 });
    expect(deployments.reconcile(KEY)?.requeueAfterMs).toBe(5_001);
    clock += 5_001;
    settle();
    expect(status()).toMatchObject({ readyReplicas: 3, availableReplicas: 3 });
  });
});

describe('DeploymentController: rolling update', () => {
  it.each([
    { replicas: 3, maxSurge: 1, maxUnavailable: 1, surge: 1, unavailable: 1, name: '3 replicas, 1/1' },
    { replicas: 10, maxSurge: '25%', maxUnavailable: '25%', surge: 3, unavailable: 2, name: '10 replicas, 25%/25% (3 up, 2 down)' },
    { replicas: 4, maxSurge: 0, maxUnavailable: 1, surge: 0, unavailable: 1, name: '4 replicas, surge 0, unavailable 1' },
    { replicas: 4, maxSurge: 2, maxUnavailable: 0, surge: 2, unavailable: 0, name: '4 replicas, surge 2, unavailable 0' },
    { replicas: 2, maxSurge: '10%', maxUnavailable: '10%', surge: 1, unavailable: 0, name: '2 replicas, 10%/10% (1 up, 0 down)' },
  ])('$name: never fewer than replicas - maxUnavailable Ready, never more than replicas + maxSurge pods', ({ replicas, maxSurge, maxUnavailable, surge, unavailable }) => {
    createDeployment({ replicas, strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge, maxUnavailable } } });
    settle();
    readyAll();
    const { minReady, maxPods } = rollTo(V2, replicas);
    expect(minReady).toBeGreaterThanOrEqual(replicas - unavailable);
    expect(maxPods).toBeLessThanOrEqual(replicas + surge);
    // The old ReplicaSet stays, scaled to zero, as revision 1 of the history.
    const [old, current] = revisions();
    expect(sizeOf(old!)).toBe(0);
    expect(current!.metadata.annotations?.[REVISION_ANNOTATION]).toBe('2');
    expect(deployment().metadata.annotations?.[REVISION_ANNOTATION]).toBe('2');
    const events = eventsAbout(hub.store, 'Deployment', 'web');
    expect(events).toContain(`Normal ScalingReplicaSet: Scaled down replica set ${old!.metadata.name} to 0`);
    expect(events).toContain(`Normal ScalingReplicaSet: Scaled up replica set ${current!.metadata.name} to ${replicas}`);
  });

  it('holds both bounds when the Deployment controller runs ahead of the ReplicaSet controller', () => {
    createDeployment({ replicas: 6, strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 2, maxUnavailable: 2 } } });
    settle();
    readyAll();
    const { minReady, maxPods } = rollTo(V2, 6, 4);
    expect(minReady).toBeGreaterThanOrEqual(4);
    expect(maxPods).toBeLessThanOrEqual(8);
  });

  it('keeps revisionHistoryLimit old ReplicaSets and deletes older ones', () => {
    createDeployment({ replicas: 2, revisionHistoryLimit: 2 });
    settle();
    readyAll();
    for (const tag of ['2', '3', '4', '5']) rollTo(`flotilla-test/busybox:${tag}`, 2);
    expect(revisions().map((rs) => rs.metadata.annotations?.[REVISION_ANNOTATION])).toEqual(['3', '4', '5']);
    expect(eventsAbout(hub.store, 'Deployment', 'web').filter((e) => e.startsWith('Normal SuccessfulDelete: Deleted old replica set'))).toHaveLength(2);
  });

  it('re-uses the ReplicaSet of an earlier template as the newest revision (what undo does)', () => {
    createDeployment();
    settle();
    readyAll();
    rollTo(V2, 3);
    const first = revisions()[0]!;
    rollTo(V1, 3);
    const after = revisions();
    expect(after).toHaveLength(2);
    expect(after[1]!.metadata.uid).toBe(first.metadata.uid);
    expect(after.map((rs) => rs.metadata.annotations?.[REVISION_ANNOTATION])).toEqual(['2', '3']);
    expect(deployment().metadata.annotations?.[REVISION_ANNOTATION]).toBe('3');
    expect(eventsAbout(hub.store, 'Deployment', 'web')).toContain(`Normal FoundNewReplicaSet: Replica set ${first.metadata.name} (revision 1) matches the template again; it is now revision 3`);
  });
});

describe('DeploymentController: scale, pause, Recreate, deadline, deletion', () => {
  it('scales the ReplicaSet up and down with spec.replicas', () => {
    createDeployment();
    settle();
    readyAll();
    const name = revisions()[0]!.metadata.name;
    changeSpec({ replicas: 5 });
    settle();
    expect(pods()).toHaveLength(5);
    changeSpec({ replicas: 1 });
    settle();
    expect(pods()).toHaveLength(1);
    expect(eventsAbout(hub.store, 'Deployment', 'web')).toEqual(expect.arrayContaining([`Normal ScalingReplicaSet: Scaled up replica set ${name} to 5`, `Normal ScalingReplicaSet: Scaled down replica set ${name} to 1`]));
  });

  it('spreads a resize in the middle of a rollout over both ReplicaSets in proportion', () => {
    createDeployment({ replicas: 10 });
    settle();
    readyAll();
    changeSpec({ template: template(V2) });
    settle();
    const [oldBefore, newBefore] = revisions().map(sizeOf) as [number, number];
    expect(oldBefore + newBefore).toBe(13); // 10 + 25 % surge, rounded up
    changeSpec({ replicas: 20 });
    settle();
    const [oldAfter, newAfter] = revisions().map(sizeOf) as [number, number];
    expect(oldAfter + newAfter).toBe(25); // 20 + 5
    expect(oldAfter).toBeGreaterThan(oldBefore);
    expect(newAfter).toBeGreaterThan(newBefore);
  });

  it('rolls nothing out while paused, and the new revision once resumed', () => {
    createDeployment();
    settle();
    readyAll();
    changeSpec({ paused: true, template: template(V2) });
    settle();
    expect(revisions()).toHaveLength(1);
    expect(status().conditions?.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'Unknown', reason: 'DeploymentPaused' });
    changeSpec({ replicas: 4 });
    settle();
    expect(pods().filter((p) => imageOf(p) === V1)).toHaveLength(4); // a paused Deployment still scales
    changeSpec({ paused: false, replicas: 3 });
    settle();
    expect(revisions()).toHaveLength(2);
    const events = eventsAbout(hub.store, 'Deployment', 'web');
    expect(events).toEqual(expect.arrayContaining(['Normal Paused: Rollout paused: no new revision is rolled out until it is resumed', 'Normal Resumed: Rollout resumed']));
  });

  it('Recreate: every old pod is gone before the first new one is created', () => {
    createDeployment({ strategy: { type: 'Recreate' } });
    settle();
    readyAll();
    let overlap = false;
    changeSpec({ template: template(V2) });
    settle(() => {
      const images = new Set(pods().map(imageOf));
      if (images.has(V1) && images.has(V2)) overlap = true;
    });
    expect(overlap).toBe(false);
    expect(pods().map(imageOf)).toEqual([V2, V2, V2]);
    readyAll();
    expect(rolledOutTo(V2, 3)).toBe(true);
  });

  it('marks Progressing False (ProgressDeadlineExceeded) with a Warning when nothing moves for progressDeadlineSeconds', () => {
    createDeployment({ progressDeadlineSeconds: 30 });
    settle();
    readyAll();
    changeSpec({ template: template(V2) });
    settle();
    expect(deployments.reconcile(KEY)?.requeueAfterMs).toBe(30_000);
    clock += 30_000;
    settle();
    expect(status().conditions?.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'False', reason: 'ProgressDeadlineExceeded' });
    const rs = revisions()[1]!.metadata.name;
    expect(eventsAbout(hub.store, 'Deployment', 'web')).toContain(`Warning ProgressDeadlineExceeded: ReplicaSet "${rs}" has timed out progressing. (progressDeadlineSeconds=30)`);
    // Progress afterwards makes it Progressing again.
    makeReady(pods().find((p) => !isReady(p))!);
    settle();
    expect(status().conditions?.find((c) => c.type === 'Progressing')).toMatchObject({ status: 'True' });
  });

  it('deletes its ReplicaSets and their pods when deleted', () => {
    createDeployment();
    settle();
    readyAll();
    rollTo(V2, 3);
    expect(revisions()).toHaveLength(2);
    hub.store.delete('Deployment', 'default', 'web');
    settle();
    expect(revisions()).toEqual([]);
    expect(pods()).toEqual([]);
  });

  it('runs from its watches once started', async () => {
    deployments.start();
    replicaSets.start();
    createDeployment({ replicas: 2 });
    for (let i = 0; i < 20 && pods().length < 2; i++) await Promise.all([deployments.queue.idle(), replicaSets.queue.idle()]);
    expect(pods()).toHaveLength(2);
    hub.store.delete('Deployment', 'default', 'web');
    for (let i = 0; i < 20 && pods().length > 0; i++) await Promise.all([deployments.queue.idle(), replicaSets.queue.idle()]);
    expect(pods()).toEqual([]);
  });
});
