import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonSetController, REVISION_HASH_LABEL } from '../../hub/controllers/daemonset.js';
import { stableSuffix, templateHash } from '../../hub/controllers/names.js';
import type { StoredObject } from '../../hub/store/types.js';
import type { DaemonSetSpec, DaemonSetStatus } from '../../shared/resources/daemonset.js';
import type { PodSpec } from '../../shared/resources/pod.js';
import { container, createNode, daemonSetObject, eventsAbout, podObject, setNodeLabels, setNodeReady, testHub, type TestHub } from './builders.js';

const KEY = 'default/sensor-reader';
const SENSORS = { fleet: 'sensors' };

let hub: TestHub;
let controller: DaemonSetController;

beforeEach(() => {
  hub = testHub();
  controller = new DaemonSetController(hub.store, hub.events, hub.log);
});
afterEach(() => {
  controller.stop();
  hub.db.close();
});

function createSensorReader(): StoredObject {
  return hub.store.create(daemonSetObject({ name: 'sensor-reader', nodeSelector: SENSORS }));
}

function daemonPods(): StoredObject[] {
  return hub.store.list('Pod', { namespace: 'default' }).items;
}

/** Node name of each pod of the DaemonSet, sorted. */
function podNodes(): string[] {
  return daemonPods()
    .map((p) => (p.spec as PodSpec).nodeName ?? '')
    .sort();
}

function dsStatus(): DaemonSetStatus {
  return hub.store.get('DaemonSet', 'default', 'sensor-reader')!.status as DaemonSetStatus;
}

function podOn(node: string): StoredObject | undefined {
  return hub.store.get('Pod', 'default', `sensor-reader-${stableSuffix(node)}`);
}

describe('DaemonSetController.reconcile', () => {
  it('creates one pod per Ready node that the nodeSelector matches, bound to it and owned by the DaemonSet', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'edge-2', labels: { ...SENSORS, channel: 'canary' } });
    const ds = createSensorReader();
    controller.reconcile(KEY);

    expect(podNodes()).toEqual(['edge-1', 'edge-2']);
    const pod = podOn('edge-1')!;
    const template = (ds.spec as DaemonSetSpec).template;
    expect(pod.metadata.name).toBe(`sensor-reader-${stableSuffix('edge-1')}`);
    expect(pod.metadata.labels).toEqual({ app: 'sensor-reader', [REVISION_HASH_LABEL]: templateHash(template) });
    expect(pod.metadata.ownerReferences).toEqual([{ apiVersion: 'flotilla/v1', kind: 'DaemonSet', name: 'sensor-reader', uid: ds.metadata.uid, controller: true }]);
    expect(pod.spec).toEqual({ ...template.spec, nodeName: 'edge-1' });
    expect(pod.status).toEqual({ phase: 'Pending' });
  });

  it('creates no pod on a node the nodeSelector does not match, nor on a NotReady node', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'gateway', labels: { fleet: 'gateways' } });
    createNode(hub.store, { name: 'unlabelled' });
    createNode(hub.store, { name: 'offline', labels: SENSORS, ready: false });
    createSensorReader();
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['edge-1']);
  });

  it('runs on every node when the template has no nodeSelector', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'gateway' });
    hub.store.create(daemonSetObject({ name: 'sensor-reader' }));
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['edge-1', 'gateway']);
  });

  it('creates the pod once a NotReady node becomes Ready', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS, ready: false });
    createSensorReader();
    controller.reconcile(KEY);
    expect(daemonPods()).toEqual([]);
    setNodeReady(hub.store, 'edge-1', true);
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['edge-1']);
  });

  it('keeps the pod of a node that goes NotReady (the device keeps running it)', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    const before = podOn('edge-1')!;
    setNodeReady(hub.store, 'edge-1', false);
    controller.reconcile(KEY);
    expect(podOn('edge-1')).toEqual(before);
  });

  it('deletes the pod of a node relabelled so that it no longer matches', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'edge-2', labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    const gone = podOn('edge-2')!.metadata.name;
    setNodeLabels(hub.store, 'edge-2', { fleet: 'gateways' });
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['edge-1']);
    expect(eventsAbout(hub.store, 'DaemonSet', 'sensor-reader')).toContain(`Normal SuccessfulDelete: Deleted pod: ${gone} (node edge-2 no longer matches the nodeSelector)`);
  });

  it('deletes the pod of a node that was deleted', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'edge-2', labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    hub.store.delete('Node', '', 'edge-2');
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['edge-1']);
  });

  it('updates the pod spec in place, with the new revision hash, when the template changes', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    const before = podOn('edge-1')!;

    const ds = hub.store.get('DaemonSet', 'default', 'sensor-reader')!;
    const spec = ds.spec as DaemonSetSpec;
    const template = { ...spec.template, spec: { ...spec.template.spec, containers: [container({ name: 'reader', image: 'registry.example/sensor-reader:2.2' })] } };
    hub.store.update({ ...ds, spec: { ...spec, template } });
    controller.reconcile(KEY);

    const after = podOn('edge-1')!;
    expect(after.metadata.uid).toBe(before.metadata.uid);
    expect(after.metadata.labels?.[REVISION_HASH_LABEL]).toBe(templateHash(template));
    expect(after.metadata.labels?.[REVISION_HASH_LABEL]).not.toBe(before.metadata.labels?.[REVISION_HASH_LABEL]);
    expect(after.spec).toEqual({ ...template.spec, nodeName: 'edge-1' });
    expect(dsStatus().observedGeneration).toBe(2);
  });

  it('leaves an up-to-date pod untouched', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    const rv = hub.store.currentResourceVersion();
    controller.reconcile(KEY);
    expect(hub.store.currentResourceVersion()).toBe(rv);
  });

  it('deletes its pods when the DaemonSet is deleted, and only its own', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'edge-2', labels: SENSORS });
    createSensorReader();
    hub.store.create(podObject({ name: 'standalone', nodeName: 'edge-1' }));
    controller.reconcile(KEY);
    expect(daemonPods()).toHaveLength(3);
    hub.store.delete('DaemonSet', 'default', 'sensor-reader');
    controller.reconcile(KEY);
    expect(daemonPods().map((p) => p.metadata.name)).toEqual(['standalone']);
  });

  it('removes an extra pod when a node has more than one', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    const ds = createSensorReader();
    controller.reconcile(KEY);
    const extra = podObject({ name: 'sensor-reader-extra', nodeName: 'edge-1', labels: { app: 'sensor-reader' } });
    hub.store.create({ ...extra, metadata: { ...extra.metadata, ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'DaemonSet', name: 'sensor-reader', uid: ds.metadata.uid, controller: true }] } });
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['edge-1']);
  });

  it('counts desired and ready pods in the status, from each pod’s Ready condition', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'edge-2', labels: SENSORS });
    createNode(hub.store, { name: 'gateway', labels: { fleet: 'gateways' } });
    createSensorReader();
    controller.reconcile(KEY);
    expect(dsStatus()).toMatchObject({ desiredNumberScheduled: 2, currentNumberScheduled: 2, numberReady: 0, updatedNumberScheduled: 2, numberMisscheduled: 0, observedGeneration: 1 });

    const pod = podOn('edge-1')!;
    hub.store.updateStatus('Pod', 'default', pod.metadata.name, { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] });
    const notReady = podOn('edge-2')!;
    hub.store.updateStatus('Pod', 'default', notReady.metadata.name, { phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }] });
    controller.reconcile(KEY);
    expect(dsStatus()).toMatchObject({ desiredNumberScheduled: 2, numberReady: 1 });
  });

  it('gives each node its own pod when two node names share the short name hash', () => {
    // fan-1216 and fan-3080 hash to the same 5 characters.
    expect(stableSuffix('fan-1216')).toBe(stableSuffix('fan-3080'));
    createNode(hub.store, { name: 'fan-1216', labels: SENSORS });
    createNode(hub.store, { name: 'fan-3080', labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['fan-1216', 'fan-3080']);
    expect(hub.store.get('Pod', 'default', `sensor-reader-${stableSuffix('fan-3080', 10)}`)).toBeDefined();
    controller.reconcile(KEY);
    expect(podNodes()).toEqual(['fan-1216', 'fan-3080']);
    expect(dsStatus()).toMatchObject({ desiredNumberScheduled: 2, currentNumberScheduled: 2 });
  });

  it('does not count a pod as scheduled on a matching node that has none yet', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createNode(hub.store, { name: 'offline', labels: SENSORS, ready: false });
    createSensorReader();
    controller.reconcile(KEY);
    expect(dsStatus()).toMatchObject({ desiredNumberScheduled: 2, currentNumberScheduled: 1, updatedNumberScheduled: 1 });
  });

  it('records SuccessfulCreate on the DaemonSet and Scheduled on the pod', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    const pod = podOn('edge-1')!.metadata.name;
    expect(eventsAbout(hub.store, 'DaemonSet', 'sensor-reader')).toEqual([`Normal SuccessfulCreate: Created pod: ${pod} on node edge-1`]);
    expect(eventsAbout(hub.store, 'Pod', pod)).toEqual([`Normal Scheduled: Successfully assigned default/${pod} to edge-1`]);
  });

  it('records a pass over many nodes as one SuccessfulCreate on the DaemonSet, and Scheduled on each pod', () => {
    for (let i = 1; i <= 5; i++) createNode(hub.store, { name: `edge-${i}`, labels: SENSORS });
    createSensorReader();
    controller.reconcile(KEY);
    const events = eventsAbout(hub.store, 'DaemonSet', 'sensor-reader');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatch(new RegExp(`^Normal SuccessfulCreate: Created 5 pods: sensor-reader-\\w+ on node edge-\\d, .* and 2 more$`));
    for (let i = 1; i <= 5; i++) expect(eventsAbout(hub.store, 'Pod', podOn(`edge-${i}`)!.metadata.name)).toEqual([expect.stringMatching(/^Normal Scheduled: /)]);
  });

  it('does nothing for a DaemonSet that never existed', () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    expect(() => controller.reconcile('default/nothing')).not.toThrow();
    expect(daemonPods()).toEqual([]);
  });
});

describe('DaemonSetController watches', () => {
  it('reacts to DaemonSets, nodes joining, relabelling and leaving once started', async () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    createSensorReader();
    controller.start();
    await controller.queue.idle();
    expect(podNodes()).toEqual(['edge-1']);

    createNode(hub.store, { name: 'edge-2', labels: SENSORS });
    await controller.queue.idle();
    expect(podNodes()).toEqual(['edge-1', 'edge-2']);

    setNodeLabels(hub.store, 'edge-1', { fleet: 'gateways' });
    await controller.queue.idle();
    expect(podNodes()).toEqual(['edge-2']);

    hub.store.delete('Node', '', 'edge-2');
    await controller.queue.idle();
    expect(daemonPods()).toEqual([]);
  });

  it('recreates a pod deleted by hand, and deletes all pods when the DaemonSet goes', async () => {
    createNode(hub.store, { name: 'edge-1', labels: SENSORS });
    controller.start();
    createSensorReader();
    await controller.queue.idle();
    const first = podOn('edge-1')!;
    hub.store.delete('Pod', 'default', first.metadata.name);
    await controller.queue.idle();
    const second = podOn('edge-1')!;
    expect(second.metadata.uid).not.toBe(first.metadata.uid);

    hub.store.delete('DaemonSet', 'default', 'sensor-reader');
    await controller.queue.idle();
    expect(daemonPods()).toEqual([]);
  });
});
