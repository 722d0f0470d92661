import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, getPod, logCount, podManifest, podRunning, readyCondition, waitForLog, type EngineContainer } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// Edge autonomy (docs/ARCHITECTURE.md, 'Rules of the house'): with the hub gone, the device keeps running its last
// desired set, restarts what fails by policy, and survives its own restart; when the hub is back
// it resyncs, with nothing made twice.

const NODE = 'edge';
let dockerd: TestDockerd;
let hub: RunningHub;
let agent: ManagedProcess;
const dirs = tempDir('offline');
const stateDir = join(dirs.path, 'state');

function runAgent(): ManagedProcess {
  return startAgent({ hub, name: NODE, stateDir, dockerHost: dockerd.dockerHost });
}

/** The node's containers as the engine has them, by name: id and state. */
async function snapshot(): Promise<Record<string, Pick<EngineContainer, 'id' | 'state'>>> {
  const list = await engineContainers(dockerd.docker, { 'flotilla.node': NODE });
  return Object.fromEntries(list.map((c) => [c.name, { id: c.id, state: c.state }]));
}

async function restartHub(): Promise<void> {
  hub = await startHub({ dataDir: hub.dataDir, apiPort: hub.apiPort, mqttPort: hub.mqttPort });
  await waitFor('the node Ready again', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'offline' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agent = runAgent();
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
  apply(hub, podManifest({ name: 'steady', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
  await waitFor('steady running', () => podRunning(hub, 'steady'), 30_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('with the hub stopped', () => {
  it('restarts a killed container by the pod\'s restartPolicy, and reports it when the hub is back', async () => {
    const [app] = await engineContainers(dockerd.docker, { 'flotilla.pod': 'steady', 'flotilla.container': 'app' });
    await hub.process.stop();
    await dockerd.docker.getContainer(app!.id).kill();
    const restarted = await waitFor('a new attempt of the app container running', async () => {
      const apps = await engineContainers(dockerd.docker, { 'flotilla.pod': 'steady', 'flotilla.container': 'app' });
      return apps.find((c) => c.labels['flotilla.restart-count'] === '1' && c.state === 'running');
    }, 15_000);
    // The killed one is kept as the previous attempt: it is what lastState reports.
    expect((await dockerd.docker.getContainer(app!.id).inspect()).State).toMatchObject({ Running: false, ExitCode: 137 });

    await restartHub();
    const pod = await waitFor('the restart reported', () => {
      const p = podRunning(hub, 'steady');
      return p?.status?.containerStatuses?.[0]?.restartCount === 1 ? p : undefined;
    }, 30_000);
    const status = pod.status!.containerStatuses![0]!;
    expect(status.containerID).toBe(`docker://${restarted.id}`);
    expect(status.lastState?.terminated).toMatchObject({ exitCode: 137, reason: 'Error' });
  });

  it('keeps the pods through an agent restart, makes nothing twice, and resyncs when the hub is back', async () => {
    const before = await snapshot();
    await hub.process.stop();
    await agent.kill();
    agent = runAgent();
    await waitFor('a first reconcile of the set restored from disk', () => logCount(agent, 'restored the last desired set from disk') === 1 && logCount(agent, 'reconciled') >= 1, 30_000);
    expect(await snapshot()).toEqual(before);

    await restartHub();
    await waitFor('steady reported Running by the new agent', () => {
      const node = readyCondition(hub, NODE);
      return node?.status === 'True' && podRunning(hub, 'steady');
    }, 30_000);
    await waitForLog(agent, 'reconciled', 1, 15_000);
    expect(await snapshot()).toEqual(before);
    expect(getPod(hub, 'steady')?.status?.containerStatuses?.[0]?.restartCount).toBe(1);
  });
});
