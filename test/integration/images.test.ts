import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imagesToCollect } from '../../agent/runtime/images.js';
import { DockerRuntime } from '../../agent/runtime/docker.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, getPod, podRunning, readyCondition } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Images on a real engine: the runtime lists and removes them (never one that a container uses,
// whoever made it), and a pod annotated kill-then-download gives up its old container before
// the new image is pulled.

const NODE = 'edge';
let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('images');

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'images' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  startAgent({ hub, name: NODE, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost, extraArgs: ['--pod-pids-limit', '64'] });
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

/** A new image (its own id) made from the test image by committing a container of it. */
async function makeImage(repo: string, tag: string): Promise<string> {
  const c = await dockerd.docker.createContainer({ Image: TEST_IMAGE, Cmd: ['true'] });
  const { Id } = (await c.commit({ repo, tag, changes: [`LABEL made=${repo}`] })) as { Id: string };
  await c.remove();
  return Id;
}

describe('the runtime and images', () => {
  it('lists images, removes an unused one and is refused one a foreign container uses', async () => {
    const runtime = new DockerRuntime(dockerd.dockerHost);
    const unusedId = await makeImage('flotilla-test/unused', '1');
    const foreignId = await makeImage('flotilla-test/foreign', '1');
    // A container the agent did not make, not even running: its image must stay.
    const foreign = await dockerd.docker.createContainer({ Image: 'flotilla-test/foreign:1', Cmd: ['true'], name: 'not-ours' });

    const images = await runtime.listImages();
    expect(images.find((i) => i.id === unusedId)?.tags).toEqual(['flotilla-test/unused:1']);
    expect(images.find((i) => i.id === foreignId)?.tags).toEqual(['flotilla-test/foreign:1']);

    const everyContainer = await runtime.listContainers({});
    expect(everyContainer.some((c) => c.id === foreign.id)).toBe(true);
    const chosen = imagesToCollect(images, everyContainer, new Set([TEST_IMAGE])).map((i) => i.id);
    expect(chosen).toContain(unusedId);
    expect(chosen).not.toContain(foreignId);

    await runtime.removeImage(unusedId);
    expect((await runtime.listImages()).some((i) => i.id === unusedId)).toBe(false);
    // The engine itself refuses to remove an image in use, as a last guard.
    await expect(runtime.removeImage(foreignId)).rejects.toThrow();
    expect((await runtime.listImages()).some((i) => i.id === foreignId)).toBe(true);
    await foreign.remove();
  });
});

describe('update order', () => {
  const daemonSet = (image: string, order: string) => `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: lean}
spec:
  selector: {matchLabels: {app: lean}}
  template:
    metadata:
      labels: {app: lean}
      annotations: {flotilla.io/update-order: ${order}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: ${image}
          command: [sleep, "3600"]
`;

  it('kill-then-download (from the DaemonSet template) removes the old container before pulling the new image', async () => {
    await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
    apply(hub, daemonSet(TEST_IMAGE, 'kill-then-download'));
    const pod = await waitFor('the lean pod running', () => {
      const r = getPods().find((p) => p.metadata.name.startsWith('lean-'));
      return r && podRunning(hub, r.metadata.name) && r;
    }, 60_000);
    expect(pod.metadata.annotations?.['flotilla.io/update-order']).toBe('kill-then-download');
    // The new image can be pulled from nowhere: with kill-then-download the old container goes anyway.
    apply(hub, daemonSet('flotilla-test/nope:9', 'kill-then-download'));
    await waitFor('the old container removed', async () => (await engineContainers(dockerd.docker, { 'flotilla.pod': pod.metadata.name, 'flotilla.container': 'app' })).length === 0, 30_000);
    await waitFor('ErrImagePull or ImagePullBackOff', () => {
      const reason = getPod(hub, pod.metadata.name)?.status?.containerStatuses?.[0]?.state.waiting?.reason;
      return reason === 'ErrImagePull' || reason === 'ImagePullBackOff';
    }, 20_000);
  });
});

describe('container limits', () => {
  const limited = `apiVersion: v1
kind: Pod
metadata: {name: limited}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
  containers:
    - name: capped
      image: ${TEST_IMAGE}
      command: [sleep, "3600"]
      resources: {limits: {memory: 64Mi, cpu: 500m, pids: 16}, requests: {memory: 16Mi, cpu: 100m}}
    - name: requested
      image: ${TEST_IMAGE}
      command: [sleep, "3600"]
      resources: {requests: {memory: 32Mi, cpu: 250m}}
`;

  it('gives the engine the limits (never the requests), and the node\'s pids limit to a container that sets none', async () => {
    await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
    apply(hub, limited);
    await waitFor('limited running', () => podRunning(hub, 'limited'), 60_000);
    const inspect = async (container: string) => {
      const [c] = await engineContainers(dockerd.docker, { 'flotilla.pod': 'limited', 'flotilla.container': container });
      return (await dockerd.docker.getContainer(c!.id).inspect()).HostConfig;
    };
    const capped = await inspect('capped');
    expect(capped).toMatchObject({ Memory: 64 * 1024 * 1024, NanoCpus: 500_000_000, PidsLimit: 16 });
    const requested = await inspect('requested');
    expect(requested.Memory).toBe(0);
    expect(requested.NanoCpus).toBe(0);
    expect(requested.PidsLimit).toBe(64);
    // The engine holds the container to it: past 16 processes, fork fails.
    const [c] = await engineContainers(dockerd.docker, { 'flotilla.pod': 'limited', 'flotilla.container': 'capped' });
    const exec = await dockerd.docker.getContainer(c!.id).exec({ Cmd: ['sh', '-c', 'for i in $(seq 1 30); do sleep 30 & done; wait'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: false });
    let output = '';
    stream.on('data', (d: Buffer) => (output += d.toString('utf8')));
    await new Promise((r) => stream.on('end', r));
    expect(output).toMatch(/can't fork|Resource temporarily unavailable/);
  });

  it('refuses a pids limit that is not a positive integer, naming the field', () => {
    const r = cli(hub, ['apply', '-f', '-'], { input: limited.replace('pids: 16', 'pids: "0.5"').replace('name: limited', 'name: bad-pids') });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('spec.containers[0].resources.limits.pids');
    expect(r.stderr).toContain("must be a positive integer, not '0.5'");
  });
});

function getPods(): { metadata: { name: string; annotations?: Record<string, string> } }[] {
  return getJson<{ items: { metadata: { name: string; annotations?: Record<string, string> } }[] }>(hub, ['pods']).items;
}
