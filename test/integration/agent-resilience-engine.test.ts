import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, logCount, podManifest, podRunning, readyCondition, waitForLog } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// The agent and its engine: an engine that restarts under the agent (and stops every container
// as it goes, having no live-restore) is noticed, reported and recovered from; and the agent
// removes its own leftovers but nothing labelled for another node.

const NODE = 'edge';
let dockerd: TestDockerd;
let hub: RunningHub;
let agent: ManagedProcess;
const dirs = tempDir('engine');

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'engine' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  agent = startAgent({ hub, name: NODE, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost });
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a container engine that restarts', () => {
  it('makes the node NotReady while the engine is down, then runs the pod again on a fresh event stream', async () => {
    apply(hub, podManifest({ name: 'survivor', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
    await waitFor('survivor running', () => podRunning(hub, 'survivor'), 30_000);
    const watchesBefore = logCount(agent, 'watching the engine\'s container events');

    let whileDown: ReturnType<typeof readyCondition>;
    await dockerd.restart({
      whileDown: async () => {
        whileDown = await waitFor('Ready False for the engine', () => {
          const ready = readyCondition(hub, NODE);
          return ready?.status === 'False' ? ready : undefined;
        }, 20_000);
      },
    });
    expect(whileDown).toMatchObject({ status: 'False', reason: 'ContainerRuntimeUnavailable' });
    expect(whileDown!.message).toMatch(/^container engine unavailable: /);

    await waitFor('the node Ready again', () => readyCondition(hub, NODE)?.status === 'True', 30_000);
    await waitFor('survivor running again', () => podRunning(hub, 'survivor'), 30_000);
    const running = await engineContainers(dockerd.docker, { 'flotilla.pod': 'survivor' });
    expect(running.filter((c) => c.state === 'running').map((c) => c.labels['flotilla.container']).sort()).toEqual(['POD', 'app']);
    expect(logCount(agent, 'watching the engine\'s container events')).toBe(watchesBefore + 1);

    // The new stream works: a killed container is back sooner than the 10 s resync would bring it.
    const app = running.find((c) => c.labels['flotilla.container'] === 'app' && c.state === 'running')!;
    const killedAt = Date.now();
    await dockerd.docker.getContainer(app.id).kill();
    await waitFor('the app container restarted', async () => {
      const apps = await engineContainers(dockerd.docker, { 'flotilla.pod': 'survivor', 'flotilla.container': 'app' });
      return apps.some((c) => c.id !== app.id && c.state === 'running');
    }, 15_000, 50);
    const restartMs = Date.now() - killedAt;
    console.log(`engine restarted: app container back ${restartMs} ms after a kill`);
    expect(restartMs).toBeLessThan(5_000);
  });
});

describe('containers the agent did not make for a desired pod', () => {
  it('removes one labelled for its node with an unknown pod uid, and leaves one labelled for another node', async () => {
    const create = (name: string, labels: Record<string, string>) =>
      dockerd.docker.createContainer({ name, Image: TEST_IMAGE, Cmd: ['sleep', '600'], Labels: labels, StopTimeout: 1, HostConfig: { NetworkMode: 'none' } });
    const leftover = await create('leftover', { 'flotilla.node': NODE, 'flotilla.pod-uid': '00000000-dead-4000-8000-000000000000', 'flotilla.container': 'app' });
    const neighbours = await create('neighbours', { 'flotilla.node': 'another-node', 'flotilla.pod-uid': '00000000-beef-4000-8000-000000000000', 'flotilla.container': 'app' });
    try {
      await neighbours.start();
      // The agent may remove the leftover as soon as the engine announces it, before it could start.
      await leftover.start().catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404 && err.statusCode !== 409) throw err;
      });
      await waitFor('the leftover removed', () => leftover.inspect().then(() => false, (err: { statusCode?: number }) => err.statusCode === 404), 20_000);
      // A pass after both exist; the neighbours' container is not even in what this agent lists.
      await waitForLog(agent, 'reconciled', 1, 30_000);
      expect((await neighbours.inspect()).State.Running).toBe(true);
      expect(podRunning(hub, 'survivor')).toBeDefined();
    } finally {
      await leftover.remove({ force: true }).catch(() => undefined);
      await neighbours.remove({ force: true });
    }
  });
});
