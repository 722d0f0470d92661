import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { REPO, cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// The walking skeleton end to end: real hub and agent processes, a real dockerd, two agents
// under different node names sharing that one engine.

interface PodJson {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string };
  status?: { phase?: string; containerStatuses?: { ready: boolean }[] };
}
interface NodeJson {
  metadata: { name: string; labels?: Record<string, string> };
  status?: { conditions?: { type: string; status: string }[]; observedRevision?: number; desiredRevision?: number };
}

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('ds');
const agents: Record<string, ManagedProcess> = {};

function pods(): PodJson[] {
  return getJson<{ items: PodJson[] }>(hub, ['pods']).items;
}

function nodeReady(name: string): boolean {
  const node = getJson<NodeJson>(hub, ['node', name]);
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

async function containersOf(node: string): Promise<{ name: string; state: string; labels: Record<string, string> }[]> {
  const list = await dockerd.docker.listContainers({ all: true, filters: { label: [`flotilla.node=${node}`] } });
  return list.map((c) => ({ name: c.Names[0] ?? '', state: c.State, labels: c.Labels }));
}

function runningPodOn(node: string): PodJson | undefined {
  return pods().find((p) => p.spec.nodeName === node && p.status?.phase === 'Running' && p.status.containerStatuses?.every((c) => c.ready));
}

function rssMiB(pid: number | undefined): string {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return (Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024).toFixed(1);
}

function agentFor(name: string, labels?: Record<string, string>): ManagedProcess {
  return startAgent({ hub, name, stateDir: join(dirs.path, `state-${name}`), dockerHost: dockerd.dockerHost, ...(labels ? { labels } : {}) });
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'ds' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agents.alpha = agentFor('alpha', { fleet: 'demo' });
  agents.beta = agentFor('beta');
  await waitFor('both nodes Ready', () => nodeReady('alpha') && nodeReady('beta'), 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a DaemonSet on real agents and a real engine', () => {
  let applyToRunningMs = 0;

  it('lands only on the node whose labels match, and runs there', async () => {
    const started = Date.now();
    // The README's example, with its image swapped for the locally built test image (no registry here).
    const example = readFileSync(join(REPO, 'examples', 'hello-daemonset.yaml'), 'utf8').replace(/image: busybox:[\w.]+/, `image: ${TEST_IMAGE}`);
    const manifest = join(dirs.path, 'hello-daemonset.yaml');
    writeFileSync(manifest, example);
    const applied = cli(hub, ['apply', '-f', manifest]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain('daemonset/hello created');
    const pod = await waitFor('the pod to run on alpha', () => runningPodOn('alpha'), 60_000, 50);
    applyToRunningMs = Date.now() - started;
    expect(pods().filter((p) => p.spec.nodeName === 'beta')).toEqual([]);
    const onAlpha = await containersOf('alpha');
    expect(onAlpha.map((c) => c.labels['flotilla.container']).sort()).toEqual(['POD', 'web']);
    expect(onAlpha.every((c) => c.state === 'running')).toBe(true);
    expect(onAlpha.every((c) => c.labels['flotilla.pod-uid'] === pod.metadata.uid && c.labels['flotilla.spec-hash'])).toBe(true);
    expect(await containersOf('beta')).toEqual([]);
    // The device reports its own pressure conditions beside Ready, and its pod network (here the local bridge: the overlay is off).
    const conditions = getJson<NodeJson>(hub, ['node', 'alpha']).status?.conditions?.map((c) => c.type).sort();
    expect(conditions).toEqual(['DiskPressure', 'MemoryPressure', 'NetworkUnavailable', 'Ready']);
    // Written for the closing note: apply → running on the test dockerd, image present.
    console.log(`apply-to-running: ${applyToRunningMs} ms`);
    const table = cli(hub, ['get', 'pods', '-o', 'wide']);
    expect(table.stdout).toMatch(/hello-\w+\s+1\/1\s+Running\s+0\s+\S+\s+\S+\s+alpha/);
  });

  it('follows a relabelled node: adding the label brings the pod, removing it takes the pod away', async () => {
    expect(cli(hub, ['label', 'node', 'beta', 'fleet=demo']).code).toBe(0);
    await waitFor('the pod to run on beta', () => runningPodOn('beta'), 60_000);
    const relabel = cli(hub, ['label', 'node', 'alpha', 'fleet-']);
    expect(relabel.code, relabel.stderr).toBe(0);
    await waitFor('alpha to have no pod', () => !pods().some((p) => p.spec.nodeName === 'alpha'), 30_000);
    await waitFor('alpha\'s containers to be removed', async () => (await containersOf('alpha')).length === 0, 60_000);
    expect((await containersOf('beta')).filter((c) => c.state === 'running')).toHaveLength(2);
  });

  it('makes no duplicate container when an agent restarts', async () => {
    const before = (await containersOf('beta')).map((c) => c.name).sort();
    await agents.beta!.stop();
    agents.beta = agentFor('beta');
    await waitFor('beta Ready again', () => nodeReady('beta'), 30_000);
    // Let the restarted agent reconcile at least once more, then compare.
    const node = getJson<NodeJson>(hub, ['node', 'beta']);
    await waitFor('beta to report its revision', () => getJson<NodeJson>(hub, ['node', 'beta']).status?.observedRevision === node.status?.desiredRevision, 30_000);
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await containersOf('beta')).map((c) => c.name).sort()).toEqual(before);
    expect(runningPodOn('beta')).toBeDefined();
    // Written for the closing note: resident memory at rest (one pod on the device).
    await new Promise((r) => setTimeout(r, 5_000));
    console.log(`rss at rest: hub ${rssMiB(hub.process.child.pid)} MiB, agent ${rssMiB(agents.beta!.child.pid)} MiB`);
  });

  it('keeps all state across a hub restart, and the agents resync', async () => {
    const before = getJson<{ items: PodJson[] }>(hub, ['pods']).items.map((p) => p.metadata.uid);
    const dsBefore = getJson<{ metadata: { uid: string } }>(hub, ['daemonset', 'hello']);
    await hub.process.stop();
    hub = await startHub({ dataDir: hub.dataDir, apiPort: hub.apiPort, mqttPort: hub.mqttPort });
    expect(getJson<{ metadata: { uid: string } }>(hub, ['daemonset', 'hello']).metadata.uid).toBe(dsBefore.metadata.uid);
    expect(getJson<{ items: PodJson[] }>(hub, ['pods']).items.map((p) => p.metadata.uid)).toEqual(before);
    await waitFor('both agents to reconnect', () => nodeReady('alpha') && nodeReady('beta'), 60_000);
    await waitFor('beta\'s pod reported Running again', () => runningPodOn('beta'), 30_000);
    expect((await containersOf('beta')).filter((c) => c.state === 'running')).toHaveLength(2);
  });

  it('removes the containers when the DaemonSet is deleted', async () => {
    const del = cli(hub, ['delete', 'daemonset', 'hello']);
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout).toContain('daemonset/hello deleted');
    await waitFor('no pods left', () => pods().length === 0, 30_000);
    await waitFor('beta\'s containers removed', async () => (await containersOf('beta')).length === 0, 60_000);
    expect(await containersOf('alpha')).toEqual([]);
  });

  it('binds a bare Pod by nodeSelector or nodeName and runs it there', async () => {
    const manifest = (name: string, placement: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  ${placement}
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: ${TEST_IMAGE}
      command: ["sleep", "3600"]
`;
    expect(cli(hub, ['apply', '-f', '-'], { input: manifest('by-selector', 'nodeSelector: {fleet: demo}') }).code).toBe(0);
    expect(cli(hub, ['apply', '-f', '-'], { input: manifest('by-name', 'nodeName: alpha') }).code).toBe(0);
    await waitFor('by-selector running on beta', () => pods().find((p) => p.metadata.name === 'by-selector' && p.spec.nodeName === 'beta' && p.status?.phase === 'Running'), 60_000);
    await waitFor('by-name running on alpha', () => pods().find((p) => p.metadata.name === 'by-name' && p.spec.nodeName === 'alpha' && p.status?.phase === 'Running'), 60_000);
    expect(cli(hub, ['delete', 'pod', 'by-selector', 'by-name']).code).toBe(0);
    await waitFor('their containers removed', async () => (await containersOf('alpha')).length === 0 && (await containersOf('beta')).length === 0, 60_000);
  });

  it('never touches a container it did not create', async () => {
    const foreign = await dockerd.docker.createContainer({ Image: 'flotilla-test/busybox:1', Cmd: ['sleep', '600'], name: 'not-ours', HostConfig: { NetworkMode: 'none' } });
    await foreign.start();
    const labelledOther = await dockerd.docker.createContainer({ Image: 'flotilla-test/busybox:1', Cmd: ['sleep', '600'], name: 'other-node', Labels: { 'flotilla.node': 'gamma', 'flotilla.pod-uid': 'x' }, HostConfig: { NetworkMode: 'none' } });
    await labelledOther.start();
    // Give both agents several reconcile passes.
    await new Promise((r) => setTimeout(r, 12_000));
    expect((await foreign.inspect()).State.Running).toBe(true);
    expect((await labelledOther.inspect()).State.Running).toBe(true);
    await foreign.remove({ force: true });
    await labelledOther.remove({ force: true });
  });
});
