import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply } from '../harness/fleet.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The scheduler on a real hub, with three real agents under different node names sharing one
// test dockerd: anti-affinity spreads replicas over the devices, binpack fills one device first,
// and a pod that fits nowhere stays Pending with the reasons counted as Kubernetes counts them.

interface PodJson {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { nodeName?: string };
  status?: { phase?: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}
interface NodeJson {
  metadata: { name: string; labels?: Record<string, string> };
  status?: { conditions?: { type: string; status: string }[]; capacity?: Record<string, string> };
}

const DEVICES = ['alpha', 'beta', 'gamma'];
let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('sched');

function pods(): PodJson[] {
  return getJson<{ items: PodJson[] }>(hub, ['pods']).items;
}

function pod(name: string): PodJson | undefined {
  return pods().find((p) => p.metadata.name === name);
}

function nodeReady(name: string): boolean {
  return getJson<NodeJson>(hub, ['node', name]).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** A bare Pod (JSON is YAML) with one container that sleeps, and the given spec fields. */
function podManifest(name: string, spec: Record<string, unknown> = {}, labels?: Record<string, string>, requests?: Record<string, string>): string {
  const container = { name: 'main', image: TEST_IMAGE, command: ['sleep', '3600'], ...(requests ? { resources: { requests } } : {}) };
  return JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, ...(labels ? { labels } : {}) }, spec: { terminationGracePeriodSeconds: 1, containers: [container], ...spec } });
}

/** The nodes of the named pods, once every one has a node. */
async function boundNodes(names: string[]): Promise<string[]> {
  return waitFor(`${names.join(', ')} bound`, () => {
    const all = pods();
    const nodes = names.map((n) => all.find((p) => p.metadata.name === n)?.spec.nodeName);
    return nodes.every((n) => n !== undefined) ? (nodes as string[]) : undefined;
  }, 30_000);
}

async function deletePods(names: string[]): Promise<void> {
  const r = cli(hub, ['delete', 'pod', ...names]);
  expect(r.code, r.stderr).toBe(0);
  await waitFor('the pods gone', () => !pods().some((p) => names.includes(p.metadata.name)), 30_000);
}

/** The PodScheduled=False message of a pod, once the scheduler has given one. */
async function unschedulableMessage(name: string): Promise<string> {
  return waitFor(`${name} marked Unschedulable`, () => {
    const c = pod(name)?.status?.conditions?.find((x) => x.type === 'PodScheduled');
    return c?.status === 'False' && c.reason === 'Unschedulable' ? c.message : undefined;
  }, 30_000);
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'sched' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  for (const name of DEVICES) startAgent({ hub, name, stateDir: join(dirs.path, `state-${name}`), dockerHost: dockerd.dockerHost, labels: { fleet: 'sched-test' } });
  await waitFor('three nodes Ready', () => DEVICES.every((n) => nodeReady(n)), 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the scheduler on three real devices', () => {
  it('gives every joined node its name as the kubernetes.io/hostname label', () => {
    for (const name of DEVICES) {
      expect(getJson<NodeJson>(hub, ['node', name]).metadata.labels).toMatchObject({ fleet: 'sched-test', 'kubernetes.io/hostname': name });
    }
  });

  it('spreads replicas with required anti-affinity on kubernetes.io/hostname one per device, and keeps a fourth Pending', async () => {
    const antiAffinity = { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'web' } }, topologyKey: 'kubernetes.io/hostname' }] } };
    const names = ['web-1', 'web-2', 'web-3'];
    apply(hub, names.map((n) => podManifest(n, { affinity: antiAffinity }, { app: 'web' })).join('\n---\n'));
    expect((await boundNodes(names)).sort()).toEqual(DEVICES);
    await waitFor('the three replicas Running', () => names.every((n) => pod(n)?.status?.phase === 'Running'), 60_000);

    apply(hub, podManifest('web-4', { affinity: antiAffinity }, { app: 'web' }));
    expect(await unschedulableMessage('web-4')).toBe("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");
    expect(pod('web-4')?.spec.nodeName).toBeUndefined();
    await deletePods([...names, 'web-4']);
  });

  it('binpacks small pods onto one device while they fit there, then uses another', async () => {
    const names = ['pack-1', 'pack-2', 'pack-3'];
    apply(hub, names.map((n) => podManifest(n, { schedulingStrategy: 'binpack' }, { app: 'pack' }, { cpu: '100m' })).join('\n---\n'));
    const nodes = await boundNodes(names);
    expect(new Set(nodes).size).toBe(1);
    const packed = nodes[0]!;
    // Fill that device to within 100m of its cpu: the next pod of 200m must go elsewhere.
    const cpuMilli = Number(getJson<NodeJson>(hub, ['node', packed]).status?.capacity?.cpu) * 1000;
    apply(hub, podManifest('pack-big', { schedulingStrategy: 'binpack' }, { app: 'pack' }, { cpu: `${cpuMilli - 400}m` }));
    expect(await boundNodes(['pack-big'])).toEqual([packed]);
    apply(hub, podManifest('pack-more', { schedulingStrategy: 'binpack' }, { app: 'pack' }, { cpu: '200m' }));
    const [elsewhere] = await boundNodes(['pack-more']);
    expect(elsewhere).not.toBe(packed);
    const describe = cli(hub, ['describe', 'pod', 'pack-1']);
    expect(describe.stdout).toContain(`Successfully assigned default/pack-1 to ${packed}`);
    await deletePods([...names, 'pack-big', 'pack-more']);
  });

  it('leaves a pod that fits nowhere Pending, and `flotilla describe pod` shows the reasons counted', async () => {
    apply(hub, podManifest('huge', {}, undefined, { memory: '100Ti' }));
    const message = '0/3 nodes are available: 3 Insufficient memory.';
    expect(await unschedulableMessage('huge')).toBe(message);
    const described = cli(hub, ['describe', 'pod', 'huge']);
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/^Node:\s+<none>$/m);
    expect(described.stdout).toMatch(new RegExp(`Warning\\s+FailedScheduling\\s+.*${message.replace(/[.()/]/g, '\\$&')}`));
    expect(pod('huge')?.status?.phase).toBe('Pending');
    await deletePods(['huge']);
  });

  it('binds a waiting pod when a node gets the label its nodeSelector asks for', async () => {
    apply(hub, podManifest('picky', { nodeSelector: { disk: 'ssd' } }));
    expect(await unschedulableMessage('picky')).toBe("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");
    expect(cli(hub, ['label', 'node', 'gamma', 'disk=ssd']).code).toBe(0);
    expect(await boundNodes(['picky'])).toEqual(['gamma']);
    await waitFor('picky Running on gamma', () => pod('picky')?.status?.phase === 'Running', 60_000);
    const described = cli(hub, ['describe', 'pod', 'picky']).stdout;
    expect(described).toContain('Successfully assigned default/picky to gamma');
    expect(described).toContain("didn't match Pod's node affinity/selector");
    await deletePods(['picky']);
  });
});
