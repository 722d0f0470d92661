import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NodeSelectorTerm } from '../../shared/resources/scheduling.js';
import { SchedulerFixture, type PodOptions } from './scheduler-builders.js';

let f: SchedulerFixture;
beforeEach(() => {
  f = new SchedulerFixture();
});
afterEach(() => f.close());

function requiredTerms(...nodeSelectorTerms: NodeSelectorTerm[]): PodOptions['affinity'] {
  return { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms } } };
}

/** Where each pod landed, after scheduling them one per test case. */
async function placements(...pods: PodOptions[]): Promise<Record<string, string | undefined>> {
  await f.schedule(...pods);
  return Object.fromEntries(pods.map((p) => [p.name, f.nodeOf(p.name)]));
}

describe('readiness and cordons', () => {
  it('places nothing on a NotReady or cordoned node', async () => {
    f.nodes({ name: 'down', ready: false }, { name: 'cordoned', unschedulable: true }, { name: 'up' }).start();
    expect(await placements({ name: 'a' }, { name: 'b' }, { name: 'c' })).toEqual({ a: 'up', b: 'up', c: 'up' });
  });

  it('places pods on a node whose pod network is unavailable or off (NetworkUnavailable is not a filter)', async () => {
    const status = (reason: string, on: 'True' | 'False') => ({ conditions: [{ type: 'Ready', status: 'True' }, { type: 'NetworkUnavailable', status: on, reason }], capacity: { cpu: '4', memory: '1Gi', pods: '110' } });
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'no-cidr' }, spec: {}, status: status('CIDRNotAvailable', 'True') });
    f.start();
    expect(await placements({ name: 'a' })).toEqual({ a: 'no-cidr' });
    f.hub.store.mutate('Node', '', 'no-cidr', (cur) => ({ ...cur, status: status('OverlayDisabled', 'False') }));
    expect(await placements({ name: 'b' })).toEqual({ b: 'no-cidr' });
  });

  it('places a pod that tolerates the unschedulable taint on a cordoned node (as DaemonSet pods do)', async () => {
    f.nodes({ name: 'cordoned', unschedulable: true }).start();
    await f.schedule({ name: 'tolerant', tolerations: [{ key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' }] }, { name: 'plain' });
    expect(f.nodeOf('tolerant')).toBe('cordoned');
    expect(f.whyPending('plain')).toBe('0/1 nodes are available: 1 node(s) were unschedulable.');
  });
});

describe('nodeSelector', () => {
  it('needs every pair to match', async () => {
    f.nodes({ name: 'pi-north', labels: { arch: 'arm64', site: 'north' } }, { name: 'pi-south', labels: { arch: 'arm64', site: 'south' } }, { name: 'x86', labels: { site: 'north' } }).start();
    expect(await placements({ name: 'p', nodeSelector: { arch: 'arm64', site: 'north' } })).toEqual({ p: 'pi-north' });
    await f.schedule({ name: 'none', nodeSelector: { arch: 'riscv' } });
    expect(f.whyPending('none')).toBe("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");
  });
});

describe('required node affinity', () => {
  beforeEach(() => {
    f.nodes(
      { name: 'a', labels: { zone: 'z1', ram: '1', gpu: 'yes' } },
      { name: 'b', labels: { zone: 'z2', ram: '4' } },
      { name: 'c', labels: { zone: 'z3', ram: 'lots' } },
    ).start();
  });

  const cases: [string, NodeSelectorTerm[], string[]][] = [
    ['In', [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['z2', 'z3'] }] }], ['b', 'c']],
    ['NotIn (also nodes without the label)', [{ matchExpressions: [{ key: 'gpu', operator: 'NotIn', values: ['yes'] }] }], ['b', 'c']],
    ['Exists', [{ matchExpressions: [{ key: 'gpu', operator: 'Exists' }] }], ['a']],
    ['DoesNotExist', [{ matchExpressions: [{ key: 'gpu', operator: 'DoesNotExist' }] }], ['b', 'c']],
    ['Gt (a label that is no integer never matches)', [{ matchExpressions: [{ key: 'ram', operator: 'Gt', values: ['2'] }] }], ['b']],
    ['Lt', [{ matchExpressions: [{ key: 'ram', operator: 'Lt', values: ['2'] }] }], ['a']],
    ['matchFields metadata.name', [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['c'] }] }], ['c']],
    ['expressions ANDed', [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['z1', 'z2'] }, { key: 'gpu', operator: 'DoesNotExist' }] }], ['b']],
    ['expressions and fields ANDed', [{ matchExpressions: [{ key: 'zone', operator: 'Exists' }], matchFields: [{ key: 'metadata.name', operator: 'NotIn', values: ['a', 'b'] }] }], ['c']],
    ['terms ORed', [{ matchExpressions: [{ key: 'gpu', operator: 'Exists' }] }, { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['c'] }] }], ['a', 'c']],
    ['an empty term matches nothing', [{}], []],
  ];

  it.each(cases)('%s', async (_name, terms, expected) => {
    // A pod per node slot: each node can take one, so the pods show every node that matches.
    for (const n of ['a', 'b', 'c']) f.hub.store.mutate('Node', '', n, (o) => ({ ...o, status: { ...(o.status as object), allocatable: { pods: '1' } } }));
    await f.settle();
    const pods = ['p1', 'p2', 'p3'].map((name) => ({ name, affinity: requiredTerms(...terms) }));
    await f.schedule(...pods);
    expect(pods.map((p) => f.nodeOf(p.name)).filter((n): n is string => n !== undefined).sort()).toEqual(expected);
  });

  it('combines with the nodeSelector (both must hold)', async () => {
    expect(await placements({ name: 'p', nodeSelector: { zone: 'z1' }, affinity: requiredTerms({ matchExpressions: [{ key: 'gpu', operator: 'DoesNotExist' }] }) })).toEqual({ p: undefined });
    expect(f.whyPending('p')).toBe("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");
  });
});

describe('taints and tolerations', () => {
  beforeEach(() => {
    f.nodes(
      { name: 'gpu', taints: [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }] },
      { name: 'draining', taints: [{ key: 'maintenance', effect: 'NoExecute' }] },
      { name: 'soft', taints: [{ key: 'old-os', effect: 'PreferNoSchedule' }], pods: 1 },
    ).start();
  });

  it('keeps pods that do not tolerate NoSchedule and NoExecute taints off, naming the taint; PreferNoSchedule does not filter', async () => {
    await f.schedule({ name: 'one' }, { name: 'two' });
    expect(f.nodeOf('one')).toBe('soft');
    expect(f.whyPending('two')).toBe('0/3 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {maintenance: }.');
  });

  it('lets a pod on with a toleration: Equal needs the value, Exists any value, an empty key every taint', async () => {
    await f.schedule(
      { name: 'wrong-value', affinity: requiredTerms({ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['gpu'] }] }), tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'cpu', effect: 'NoSchedule' }] },
      { name: 'equal', tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'gpu' }], affinity: requiredTerms({ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['gpu'] }] }) },
      { name: 'exists', tolerations: [{ key: 'maintenance', operator: 'Exists', effect: 'NoExecute' }], affinity: requiredTerms({ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['draining'] }] }) },
      { name: 'everything', tolerations: [{ operator: 'Exists' }], affinity: requiredTerms({ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['gpu'] }] }) },
    );
    expect(f.nodeOf('wrong-value')).toBeUndefined();
    expect(f.nodeOf('equal')).toBe('gpu');
    expect(f.nodeOf('exists')).toBe('draining');
    expect(f.nodeOf('everything')).toBe('gpu');
  });

  it('does not let a toleration for another effect through', async () => {
    await f.schedule({ name: 'p', tolerations: [{ key: 'maintenance', operator: 'Exists', effect: 'NoSchedule' }], affinity: requiredTerms({ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['draining'] }] }) });
    expect(f.whyPending('p')).toBe("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {maintenance: }.");
  });
});

describe('resources', () => {
  it('fits requests into allocatable: cpu, memory and the pod count, with the pods already bound', async () => {
    f.nodes({ name: 'edge', cpu: '2', memory: '2Gi', pods: 3 }).start();
    await f.schedule({ name: 'a', cpu: '1500m', memory: '1Gi' }, { name: 'b', cpu: '500m', memory: '1Gi' }, { name: 'c', cpu: '1m' }, { name: 'd', memory: '1' });
    expect([f.nodeOf('a'), f.nodeOf('b')]).toEqual(['edge', 'edge']);
    expect(f.whyPending('c')).toBe('0/1 nodes are available: 1 Insufficient cpu.');
    expect(f.whyPending('d')).toBe('0/1 nodes are available: 1 Insufficient memory.');
    await f.schedule({ name: 'e' });
    expect(f.nodeOf('e')).toBe('edge');
    await f.schedule({ name: 'f' });
    expect(f.whyPending('f')).toBe('0/1 nodes are available: 1 Too many pods.');
  });

  it('falls back to capacity when a node reports no allocatable, and takes limits as requests', async () => {
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'pi' }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True' }], capacity: { cpu: '4', memory: '1Gi', pods: '110' } } });
    f.start();
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Pod', metadata: { name: 'limited', namespace: 'default' }, spec: { containers: [{ name: 'a', image: 'x', resources: { limits: { memory: '2Gi' } } }] } });
    await f.settle();
    expect(f.whyPending('limited')).toBe('0/1 nodes are available: 1 Insufficient memory.');
  });

  it('sums the requests of all containers of a pod', async () => {
    f.nodes({ name: 'edge', cpu: '1' }).start();
    f.hub.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Pod',
      metadata: { name: 'two', namespace: 'default' },
      spec: { containers: [{ name: 'a', image: 'x', resources: { requests: { cpu: '600m' } } }, { name: 'b', image: 'x', resources: { requests: { cpu: '0.6' } } }] },
    });
    await f.settle();
    expect(f.whyPending('two')).toBe('0/1 nodes are available: 1 Insufficient cpu.');
  });

  it('names every short resource of a node', async () => {
    f.nodes({ name: 'edge', cpu: '1', memory: '1Gi', pods: 1 }).pods({ name: 'there', nodeName: 'edge' }).start();
    await f.schedule({ name: 'big', cpu: '2', memory: '100Ti' });
    expect(f.whyPending('big')).toBe('0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods.');
  });
});

describe('host ports', () => {
  it('keeps a pod off a node where its host port and protocol are taken', async () => {
    f.nodes({ name: 'a' }, { name: 'b' }).start();
    await f.schedule({ name: 'web-1', hostPorts: ['80'] }, { name: 'web-2', hostPorts: ['80'] }, { name: 'web-3', hostPorts: ['80'] }, { name: 'dns', hostPorts: ['UDP/80'] });
    expect(new Set([f.nodeOf('web-1'), f.nodeOf('web-2')])).toEqual(new Set(['a', 'b']));
    expect(f.whyPending('web-3')).toBe("0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.");
    expect(f.nodeOf('dns')).toBeDefined();
  });

  it('counts the container ports of a hostNetwork pod as host ports', async () => {
    f.nodes({ name: 'a' }).start();
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Pod', metadata: { name: 'host', namespace: 'default' }, spec: { hostNetwork: true, nodeName: 'a', containers: [{ name: 'a', image: 'x', ports: [{ containerPort: 8080 }] }] } });
    await f.schedule({ name: 'web', hostPorts: ['8080'] });
    expect(f.whyPending('web')).toBe("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.");
  });

  it('frees the port when the pod that held it is deleted', async () => {
    f.nodes({ name: 'a' }).start();
    await f.schedule({ name: 'old', hostPorts: ['443'] }, { name: 'new', hostPorts: ['443'] });
    expect(f.nodeOf('new')).toBeUndefined();
    f.hub.store.delete('Pod', 'default', 'old');
    await new Promise((r) => setImmediate(r));
    await f.settle();
    expect(f.nodeOf('new')).toBe('a');
  });
});
