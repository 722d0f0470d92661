import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { EndpointsController } from '../../hub/controllers/endpoints.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { NodeStatus } from '../../shared/resources/node.js';
import type { Container, PodStatus } from '../../shared/resources/pod.js';
import type { EndpointSliceFields, EndpointsFields, ServiceSpec } from '../../shared/resources/service.js';
import { container, createNode, eventsAbout, podObject, testHub, type TestHub } from './builders.js';

let hub: TestHub;
let controller: EndpointsController;

beforeEach(() => {
  hub = testHub();
  controller = new EndpointsController({ store: hub.store, events: hub.events, log: hub.log });
  nodeAt('edge-1', '192.0.2.11');
  nodeAt('edge-2', '192.0.2.12');
});
afterEach(() => {
  controller.stop();
  hub.db.close();
});

function nodeAt(name: string, ip: string): void {
  createNode(hub.store, { name });
  hub.store.mutate('Node', '', name, (cur) => ({ ...cur, status: { ...(cur.status as NodeStatus), addresses: [{ type: 'Hostname', address: name }, { type: 'InternalIP', address: ip }] } }));
}

const WEB: Container = container({ name: 'web', image: 'flotilla-test/busybox:1', ports: [{ name: 'http', containerPort: 80, hostPort: 8080 }, { name: 'metrics', containerPort: 9100 }] });

function service(spec: ServiceSpec, name = 'web', namespace = 'default'): StoredObject {
  return hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Service', metadata: { name, namespace, labels: { tier: 'front' } }, spec } as NewObject);
}

interface PodOptions {
  name: string;
  node?: string;
  ready?: boolean;
  labels?: Record<string, string>;
  namespace?: string;
  podIP?: string;
  phase?: PodStatus['phase'];
  containers?: Container[];
}

function pod(o: PodOptions): StoredObject {
  const created = hub.store.create(podObject({ name: o.name, namespace: o.namespace ?? 'default', labels: o.labels ?? { app: 'web' }, containers: o.containers ?? [WEB], ...(o.node !== undefined ? { nodeName: o.node } : { nodeName: 'edge-1' }) }));
  setPodStatus(o.name, o.ready ?? true, o.podIP, o.phase, o.namespace);
  return created;
}

function setPodStatus(name: string, ready: boolean, podIP?: string, phase: PodStatus['phase'] = 'Running', namespace = 'default'): void {
  hub.store.updateStatus('Pod', namespace, name, { phase, ...(podIP ? { podIP } : {}), conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } satisfies PodStatus);
}

function endpoints(name = 'web', namespace = 'default'): (StoredObject & EndpointsFields) | undefined {
  return hub.store.get('Endpoints', namespace, name) as (StoredObject & EndpointsFields) | undefined;
}

/** "ip:port" of every ready (or not-ready) address, sorted. */
function listed(kind: 'addresses' | 'notReadyAddresses', name = 'web'): string[] {
  return (endpoints(name)?.subsets ?? []).flatMap((s) => (s[kind] ?? []).flatMap((a) => (s.ports ?? [{ port: 0 }]).map((p) => `${a.targetRef?.name}@${a.ip}:${p.port}`))).sort();
}

describe('EndpointsController.reconcile', () => {
  it('lists the ready pods the selector picks in addresses and the others in notReadyAddresses, at the hostPort on the node address', () => {
    service({ selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] });
    pod({ name: 'web-a', node: 'edge-1' });
    pod({ name: 'web-b', node: 'edge-2', ready: false });
    pod({ name: 'db', labels: { app: 'db' } });
    pod({ name: 'web-other-ns', namespace: 'kube', node: 'edge-1' });
    pod({ name: 'web-unbound', node: '' });
    pod({ name: 'web-done', phase: 'Succeeded', ready: false });
    controller.reconcile('default/web');

    const ep = endpoints()!;
    expect(ep.metadata.labels).toEqual({ tier: 'front' });
    expect(ep.subsets).toEqual([
      {
        addresses: [{ ip: '192.0.2.11', nodeName: 'edge-1', targetRef: { kind: 'Pod', name: 'web-a', namespace: 'default', uid: hub.store.get('Pod', 'default', 'web-a')!.metadata.uid } }],
        notReadyAddresses: [{ ip: '192.0.2.12', nodeName: 'edge-2', targetRef: { kind: 'Pod', name: 'web-b', namespace: 'default', uid: hub.store.get('Pod', 'default', 'web-b')!.metadata.uid } }],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
    ]);
    expect(eventsAbout(hub.store, 'Service', 'web')).toEqual(['Normal EndpointsUpdated: Endpoints now list 1 ready and 1 not-ready address(es)']);
  });

  it('lists a port without a hostPort at the pod IP (else the node address) and the container port', () => {
    service({ selector: { app: 'web' }, ports: [{ name: 'metrics', port: 9100 }] });
    pod({ name: 'with-ip', podIP: '10.88.0.5' });
    pod({ name: 'without-ip', node: 'edge-2' });
    controller.reconcile('default/web');
    expect(listed('addresses')).toEqual(['with-ip@10.88.0.5:9100', 'without-ip@192.0.2.12:9100']);
  });

  it('matches a numeric targetPort to the containerPort, and leaves out a pod that lacks a named one', () => {
    service({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 80 }] });
    service({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] }, 'named');
    pod({ name: 'declares', podIP: '10.88.0.5' });
    pod({ name: 'undeclared', podIP: '10.88.0.6', containers: [container({ name: 'c', image: 'flotilla-test/busybox:1' })] });
    controller.reconcile('default/web');
    controller.reconcile('default/named');
    // 80 is declared with hostPort 8080 on one pod; the other is reached on the number itself.
    expect(listed('addresses')).toEqual(['declares@192.0.2.11:8080', 'undeclared@10.88.0.6:80']);
    expect(listed('addresses', 'named')).toEqual(['declares@192.0.2.11:8080']);
  });

  it('groups pods by the ports they are reached on, one subset per set of ports', () => {
    service({ selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] });
    pod({ name: 'host-port' });
    pod({ name: 'plain', podIP: '10.88.0.7', containers: [container({ name: 'web', image: 'x:1', ports: [{ name: 'http', containerPort: 80 }] })] });
    controller.reconcile('default/web');
    expect(endpoints()!.subsets!.map((s) => s.ports)).toEqual([[{ name: 'http', port: 80, protocol: 'TCP' }], [{ name: 'http', port: 8080, protocol: 'TCP' }]]);
  });

  it('writes no Endpoints for a Service without a selector, and deletes those of a deleted Service', () => {
    service({ ports: [{ port: 80 }] }, 'manual');
    controller.reconcile('default/manual');
    expect(endpoints('manual')).toBeUndefined();

    service({ selector: { app: 'web' }, ports: [{ port: 80 }] });
    controller.reconcile('default/web');
    expect(endpoints()).toBeDefined();
    hub.store.delete('Service', 'default', 'web');
    controller.reconcile('default/web');
    expect(endpoints()).toBeUndefined();
  });
});

describe('EndpointsController triggers', () => {
  it('follows pods becoming ready, changing labels and going away, node addresses, and its own Endpoints being deleted', async () => {
    service({ selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] });
    pod({ name: 'web-a', ready: false });
    controller.start();
    await controller.queue.idle();
    expect(listed('notReadyAddresses')).toEqual(['web-a@192.0.2.11:8080']);

    setPodStatus('web-a', true);
    await controller.queue.idle();
    expect(listed('addresses')).toEqual(['web-a@192.0.2.11:8080']);
    expect(listed('notReadyAddresses')).toEqual([]);

    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, status: { ...(cur.status as NodeStatus), addresses: [{ type: 'InternalIP', address: '192.0.2.99' }] } }));
    await controller.queue.idle();
    expect(listed('addresses')).toEqual(['web-a@192.0.2.99:8080']);

    hub.store.delete('Endpoints', 'default', 'web');
    await controller.queue.idle();
    expect(listed('addresses')).toEqual(['web-a@192.0.2.99:8080']);

    hub.store.mutate('Pod', 'default', 'web-a', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { app: 'other' } } }));
    await controller.queue.idle();
    expect(endpoints()!.subsets).toBeUndefined();

    pod({ name: 'web-b', node: 'edge-2' });
    await controller.queue.idle();
    expect(listed('addresses')).toEqual(['web-b@192.0.2.12:8080']);
    hub.store.delete('Pod', 'default', 'web-b');
    await controller.queue.idle();
    expect(endpoints()!.subsets).toBeUndefined();

    hub.store.delete('Service', 'default', 'web');
    await controller.queue.idle();
    expect(endpoints()).toBeUndefined();
  });

  it('removes on start the Endpoints of a Service deleted while the hub was down', async () => {
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Endpoints', metadata: { name: 'orphan', namespace: 'default' }, subsets: [] } as NewObject);
    controller.start();
    await controller.queue.idle();
    expect(endpoints('orphan')).toBeUndefined();
  });
});

describe('flotilla describe service', () => {
  it('shows the selector, the ports and the ready and not-ready endpoints', () => {
    const svc = service({ selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] });
    pod({ name: 'web-a' });
    pod({ name: 'web-b', node: 'edge-2', ready: false });
    controller.reconcile('default/web');
    const text = describeObject(svc as Parameters<typeof describeObject>[0], [], { endpoints: endpoints() as Parameters<typeof describeObject>[0] });
    expect(text).toContain('Selector:         app=web');
    expect(text).toContain('TargetPort:       http/TCP');
    expect(text).toContain('Endpoints:        192.0.2.11:8080');
    expect(text).toContain('NotReady:         192.0.2.12:8080');
  });
});

describe('EndpointSlices', () => {
  const slices = (name = 'web') => hub.store.list('EndpointSlice').items.filter((s) => s.metadata.labels?.['kubernetes.io/service-name'] === name) as (StoredObject & EndpointSliceFields)[];

  it('lists each pod at its own address and container port, with its conditions, node, zone and hostname', () => {
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { 'topology.kubernetes.io/zone': 'north', site: 'ignored' } } }));
    hub.store.mutate('Node', '', 'edge-2', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { site: 'south' } } }));
    service({ selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] });
    pod({ name: 'web-a', node: 'edge-1', podIP: '10.42.1.5' });
    pod({ name: 'web-b', node: 'edge-2', podIP: '10.42.2.5', ready: false });
    hub.store.mutate('Pod', 'default', 'web-a', (cur) => ({ ...cur, spec: { ...(cur.spec as object), hostname: 'alpha', subdomain: 'web' } }));
    controller.reconcile('default/web');
    const [slice, ...more] = slices();
    expect(more).toEqual([]);
    expect(slice!.metadata.name).toMatch(/^web-[a-z0-9]{5}$/);
    expect(slice!.metadata.labels).toMatchObject({ 'kubernetes.io/service-name': 'web', tier: 'front' });
    expect(slice!.addressType).toBe('IPv4');
    expect(slice!.ports).toEqual([{ name: 'http', port: 80, protocol: 'TCP' }]);
    expect(slice!.endpoints).toEqual([
      { addresses: ['10.42.1.5'], conditions: { ready: true, serving: true, terminating: false }, hostname: 'alpha', nodeName: 'edge-1', zone: 'north', targetRef: expect.objectContaining({ kind: 'Pod', name: 'web-a' }) },
      { addresses: ['10.42.2.5'], conditions: { ready: false, serving: false, terminating: false }, nodeName: 'edge-2', zone: 'south', targetRef: expect.objectContaining({ kind: 'Pod', name: 'web-b' }) },
    ]);
  });

  it('counts not-ready pods as ready with publishNotReadyAddresses, and deletes the slices with the Service', async () => {
    service({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 9100 }], publishNotReadyAddresses: true });
    pod({ name: 'web-b', node: 'edge-2', podIP: '10.42.2.5', ready: false });
    controller.start();
    await controller.queue.idle();
    expect(slices()[0]!.endpoints![0]!.conditions).toEqual({ ready: true, serving: false, terminating: false });
    expect(listed('addresses')).toEqual(['web-b@10.42.2.5:9100']);
    // A node's site changing reaches the slice.
    hub.store.mutate('Node', '', 'edge-2', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { site: 'east' } } }));
    await controller.queue.idle();
    expect(slices()[0]!.endpoints![0]!.zone).toBe('east');
    hub.store.delete('Service', 'default', 'web');
    await controller.queue.idle();
    expect(slices()).toEqual([]);
  });
});
