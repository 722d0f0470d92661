import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// Moving work off a failed device, end to end: a real hub with a short grace period and
// eviction timeout, two real agents sharing one test dockerd, a Deployment behind a Service
// and a DaemonSet. The agent that is killed is the one whose containers are checked.

const GRACE_S = 5;
const EVICTION_S = 10;
/** Agents ping every 2 s when idle, inside the hub's grace period (the broker drops a link silent for 3 s). */
const HEARTBEAT_S = 2;

interface PodJson {
  metadata: { name: string; uid: string; labels?: Record<string, string>; ownerReferences?: { kind: string }[] };
  spec: { nodeName?: string };
  status?: { phase?: string; conditions?: { type: string; status: string; reason?: string }[] };
}
interface NodeJson {
  spec?: { unschedulable?: boolean; taints?: { key: string; effect: string }[] };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}
interface EndpointsJson {
  subsets?: { addresses?: { targetRef?: { name: string } }[]; notReadyAddresses?: { targetRef?: { name: string } }[] }[];
}

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('failover');
const agents: Record<string, ManagedProcess> = {};

function agentFor(name: string): ManagedProcess {
  return startAgent({ hub, name, stateDir: join(dirs.path, `state-${name}`), dockerHost: dockerd.dockerHost, extraArgs: ['--heartbeat', String(HEARTBEAT_S)] });
}

function run(args: string[]): string {
  const r = cli(hub, args);
  expect(r.code, `flotilla ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

function pods(): PodJson[] {
  return getJson<{ items: PodJson[] }>(hub, ['pods']).items;
}

const isReady = (p: PodJson) => p.status?.phase === 'Running' && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
const webPods = () => pods().filter((p) => p.metadata.labels?.app === 'web');
const daemonPodOn = (node: string) => pods().find((p) => p.metadata.labels?.app === 'node-agent' && p.spec.nodeName === node);

function nodeReady(name: string): string | undefined {
  return getJson<NodeJson>(hub, ['node', name]).status?.conditions?.find((c) => c.type === 'Ready')?.status;
}

/** The web pods, when there are exactly `n` and all run Ready on `node`. */
function allWebReadyOn(node: string, n = 2): PodJson[] | undefined {
  const web = webPods();
  return web.length === n && web.every((p) => p.spec.nodeName === node && isReady(p)) ? web : undefined;
}

function endpointNames(): { ready: string[]; notReady: string[] } {
  const ep = getJson<EndpointsJson>(hub, ['endpoints', 'web']);
  const names = (key: 'addresses' | 'notReadyAddresses') => (ep.subsets ?? []).flatMap((s) => (s[key] ?? []).map((a) => a.targetRef?.name ?? '')).sort();
  return { ready: names('addresses'), notReady: names('notReadyAddresses') };
}

/** Names of the pods that have containers on `node`'s behalf in the engine. */
async function podsWithContainers(node: string): Promise<string[]> {
  const list = await dockerd.docker.listContainers({ all: true, filters: { label: [`flotilla.node=${node}`] } });
  return [...new Set(list.map((c) => c.Labels['flotilla.pod'] ?? ''))].sort();
}

const MANIFESTS = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: ${TEST_IMAGE}
        command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: ${TEST_IMAGE}
        command: ["sleep", "3600"]
`;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'failover' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub'), extraArgs: ['--node-grace', `${GRACE_S}s`, '--eviction-timeout', `${EVICTION_S}s`] });
  agents.alpha = agentFor('alpha');
  agents.beta = agentFor('beta');
  await waitFor('both nodes Ready', () => nodeReady('alpha') === 'True' && nodeReady('beta') === 'True', 60_000);
}, 180_000);

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a device that dies', () => {
  it('runs the Deployment on alpha while beta is cordoned, behind a Service whose Endpoints list the ready pods', async () => {
    expect(run(['cordon', 'beta'])).toBe('node/beta cordoned\n');
    const manifest = join(dirs.path, 'web.yaml');
    writeFileSync(manifest, MANIFESTS);
    run(['apply', '-f', manifest]);
    await waitFor('both web pods Ready on alpha', () => allWebReadyOn('alpha'), 90_000);
    expect(run(['uncordon', 'beta'])).toBe('node/beta uncordoned\n');
    await waitFor('a DaemonSet pod on each node', () => daemonPodOn('alpha') && daemonPodOn('beta'), 60_000);
    await waitFor('the Endpoints to list both pods as ready', () => endpointNames().ready.length === 2, 15_000);
    expect(run(['get', 'endpoints', 'web'])).toMatch(/^NAME\s+ENDPOINTS\s+AGE\nweb\s+\S+:8080,\S+:8080\s/);
  });

  let killedAt = 0;
  let webOnAlpha: string[] = [];

  it('goes Unknown and tainted when its agent is killed; its pods turn NotReady and leave the Endpoints\' ready addresses', async () => {
    webOnAlpha = webPods().map((p) => p.metadata.name).sort();
    killedAt = Date.now();
    await agents.alpha!.kill();
    const node = await waitFor('alpha Unknown', () => {
      const n = getJson<NodeJson>(hub, ['node', 'alpha']);
      return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'Unknown' && n.spec?.taints?.length ? n : undefined;
    }, 2 * GRACE_S * 1000);
    console.log(`kill -> alpha Unknown: ${Date.now() - killedAt} ms`);
    expect(node.spec?.taints).toEqual([expect.objectContaining({ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' })]);
    await waitFor('the web pods NotReady, still listed as not ready', () => {
      const ep = endpointNames();
      return ep.ready.length === 0 && ep.notReady.join() === webOnAlpha.join();
    }, EVICTION_S * 1000);
    const marked = webPods().find((p) => p.metadata.name === webOnAlpha[0]);
    expect(marked?.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'NodeNotReady' });
  });

  it('has its pods replaced on beta once the eviction timeout has passed; the DaemonSet pod stays with it', async () => {
    await waitFor('both web pods Ready on beta', () => allWebReadyOn('beta'), (EVICTION_S + 60) * 1000, 200);
    const failoverMs = Date.now() - killedAt;
    console.log(`kill -> 2 replicas Running and Ready on beta: ${failoverMs} ms (grace ${GRACE_S} s, eviction timeout ${EVICTION_S} s)`);
    expect(failoverMs).toBeGreaterThanOrEqual(EVICTION_S * 1000);
    expect(webPods().map((p) => p.metadata.name).filter((n) => webOnAlpha.includes(n))).toEqual([]);
    expect(daemonPodOn('alpha')).toBeDefined();
    const events = getJson<{ items: { reason: string; message: string; involvedObject: { name: string } }[] }>(hub, ['events']).items;
    for (const name of webOnAlpha) expect(events).toContainEqual(expect.objectContaining({ reason: 'TaintManagerEviction', message: `Marking for deletion Pod default/${name}` }));
    await waitFor('the Endpoints to list the new pods as ready', () => endpointNames().ready.length === 2 && endpointNames().notReady.length === 0, 15_000);
  });

  it('removes the evicted pods\' containers from the engine when its agent comes back', async () => {
    expect(await podsWithContainers('alpha')).toEqual(expect.arrayContaining(webOnAlpha));
    agents.alpha = agentFor('alpha');
    await waitFor('alpha Ready again and untainted', () => {
      const n = getJson<NodeJson>(hub, ['node', 'alpha']);
      return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' && !n.spec?.taints?.length;
    }, 60_000);
    const daemonPod = daemonPodOn('alpha')!;
    await waitFor('only the DaemonSet pod\'s containers left for alpha', async () => (await podsWithContainers('alpha')).join() === daemonPod.metadata.name, 60_000);
    await waitFor('the DaemonSet pod Ready again', () => isReady(daemonPodOn('alpha')!), 30_000);
  });
});

describe('flotilla drain', () => {
  it("moves the Deployment's pods off beta one at a time within maxUnavailable, leaves the DaemonSet pod, and leaves beta SchedulingDisabled", async () => {
    const before = webPods().map((p) => p.metadata.name);
    const r = cli(hub, ['drain', 'beta', '--timeout', '3m']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('node/beta cordoned');
    expect(lines.at(-1)).toBe('node/beta drained');
    expect(lines.filter((l) => l.startsWith('evicting pod ')).sort()).toEqual(before.map((n) => `evicting pod default/${n}`).sort());
    expect(lines.filter((l) => l.endsWith(' evicted')).sort()).toEqual(before.map((n) => `pod/${n} evicted`).sort());
    expect(r.stderr).toContain(`Warning: ignoring DaemonSet-managed Pods: default/${daemonPodOn('beta')!.metadata.name}`);
    // Two replicas with a budget of one: the second eviction had to wait for the first replacement.
    expect(r.stderr).toMatch(/error when evicting pods\/"web-[^"]+" -n "default" \(will retry after 2s\): Cannot evict pod as it would violate the disruption budget of Deployment\/web/);

    await waitFor('both web pods Ready on alpha', () => allWebReadyOn('alpha'), 60_000);
    expect(daemonPodOn('beta')).toBeDefined();
    expect(run(['get', 'nodes'])).toMatch(/\nbeta\s+Ready,SchedulingDisabled\s/);
    await waitFor('the Endpoints to list the pods on alpha', () => endpointNames().ready.length === 2, 15_000);
  });
});
