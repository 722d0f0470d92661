import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, podManifest, podRunning, readyCondition } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { startRegistry, type TestRegistry } from '../harness/registry.js';

// One pod whose image comes from a slow (or hanging) registry must not hold back the other pods
// of its device: pulls run in the background, one at a time as the kubelet's, while every pod
// whose image is here is started as usual.

const NODE = 'edge';
/** 30 kB/s: the 3 MB layer below takes well over a minute to arrive, longer than the test waits. */
const SLOW_BYTES_PER_SECOND = 30_000;
const BIG_LAYER_BYTES = 3_000_000;

let dockerd: TestDockerd;
let hub: RunningHub;
let registry: TestRegistry;
let agent: ManagedProcess;
const dirs = tempDir('slow-pull');

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'slow-pull' });
  await buildTestImages(dockerd.docker);
  registry = await startRegistry({ dockerd, dir: join(dirs.path, 'registry'), slowBytesPerSecond: SLOW_BYTES_PER_SECOND });
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agent = startAgent({ hub, name: NODE, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost });
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
});

afterAll(async () => {
  // The registry runs in the engine's namespace: it goes before the engine does.
  await stopAll();
  await registry?.stop();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

/** An image with a layer of `BIG_LAYER_BYTES` random bytes that the engine does not hold, in the registry only. */
async function bigImageInRegistry(): Promise<string> {
  const c = await dockerd.docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sh', '-c', `head -c ${BIG_LAYER_BYTES} /dev/urandom > /blob`] });
  await c.start();
  await c.wait();
  await c.commit({ repo: 'flotilla-test/big', tag: '1' });
  await c.remove();
  await registry.push(dockerd.docker, 'flotilla-test/big:1', 'flotilla/big:1');
  await dockerd.docker.getImage('flotilla-test/big:1').remove();
  return `${registry.slowHost}/flotilla/big:1`;
}

describe('a pull that takes minutes', () => {
  it('holds back no other pod of the device', async () => {
    const slowImage = await bigImageInRegistry();
    apply(hub, podManifest({ name: 'slow', node: NODE, image: slowImage, command: ['sleep', '3600'] }));
    await waitFor('the slow pull to start', () => agent.log().includes(`Pulling image \\"${slowImage}\\"`), 20_000, 50);

    const appliedAt = Date.now();
    apply(hub, podManifest({ name: 'quick', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
    await waitFor('the quick pod running while the slow pull goes on', () => podRunning(hub, 'quick'), 30_000);
    const runningAfterMs = Date.now() - appliedAt;
    console.log(`slow pull: a pod with its image here ran ${runningAfterMs} ms after its apply, with the slow pull under way`);

    // The slow pull is still under way: its pod has no container yet.
    expect(agent.log()).not.toContain(`Successfully pulled image \\"${slowImage}\\"`);
    expect(await engineContainers(dockerd.docker, { 'flotilla.pod': 'slow', 'flotilla.container': 'app' })).toEqual([]);
  });
});
