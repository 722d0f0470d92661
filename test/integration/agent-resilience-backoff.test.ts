import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, engineContainers, getPod, podManifest, podRunning, readyCondition, type PodJson } from '../harness/fleet.js';
import { BROKEN_IMAGE, TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { cli, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';
import { watchObjects, type ObjectWatch } from '../harness/watch.js';

// Back-off against a real engine, as Kubernetes does it: a container that keeps failing is
// restarted at once, then after 10 s, 20 s…; an image that cannot be pulled is retried with
// back-off while the container it would replace keeps running.

const NODE = 'edge';
let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('backoff');

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'backoff' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
  startAgent({ hub, name: NODE, stateDir: join(dirs.path, 'state'), dockerHost: dockerd.dockerHost });
  await waitFor('the node Ready', () => readyCondition(hub, NODE)?.status === 'True', 60_000);
});

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

async function deletePod(name: string): Promise<void> {
  expect(cli(hub, ['delete', 'pod', name]).code).toBe(0);
  await waitFor(`${name}'s containers removed`, async () => (await engineContainers(dockerd.docker, { 'flotilla.pod': name })).length === 0, 30_000);
}

/** Every status of `name`'s container `app` that the hub stored, in order. */
function appStatuses(watch: ObjectWatch<PodJson>, name: string) {
  return watch.events.filter((e) => e.object.metadata.name === name).flatMap((e) => e.object.status?.containerStatuses?.filter((c) => c.name === 'app') ?? []);
}

interface Attempt {
  startedAt: number;
  finishedAt?: number;
}

describe('crash-loop back-off', () => {
  it('restarts a failing container at once, then after 10 s, then 20 s, and says why it waits', async () => {
    const watch = await watchObjects<PodJson>(hub, '/api/v1/namespaces/default/pods');
    try {
      apply(hub, podManifest({ name: 'crashy', node: NODE, image: BROKEN_IMAGE }));
      // The engine's own start and finish times of each attempt: the agent keeps the previous
      // attempt's container until the next restart, so polling sees every one of them.
      const attempts = new Map<number, Attempt>();
      let mostContainers = 0;
      await waitFor('the third restart to have run', async () => {
        const apps = await engineContainers(dockerd.docker, { 'flotilla.pod': 'crashy', 'flotilla.container': 'app' });
        mostContainers = Math.max(mostContainers, apps.length);
        for (const c of apps) {
          const state = (await dockerd.docker.getContainer(c.id).inspect()).State;
          if (state.StartedAt.startsWith('0001-')) continue;
          const finished = state.Running || state.FinishedAt.startsWith('0001-') ? undefined : Date.parse(state.FinishedAt);
          attempts.set(Number(c.labels['flotilla.restart-count']), { startedAt: Date.parse(state.StartedAt), ...(finished ? { finishedAt: finished } : {}) });
        }
        return attempts.get(3) !== undefined;
      }, 60_000, 200);
      const delays = [1, 2, 3].map((n) => (attempts.get(n)!.startedAt - attempts.get(n - 1)!.finishedAt!) / 1000);
      // Written for the closing note: how long the agent waited before each restart.
      console.log(`crash-loop restart delays: ${delays.map((d) => `${d.toFixed(1)} s`).join(', ')}`);
      expect(delays[0]).toBeLessThan(3);
      expect(delays[1]).toBeGreaterThan(8.5);
      expect(delays[1]).toBeLessThan(13);
      expect(delays[2]).toBeGreaterThan(18.5);
      expect(delays[2]).toBeLessThan(24);
      // The current attempt and the one before it; older ones are gone.
      expect(mostContainers).toBeLessThanOrEqual(2);

      await waitFor('CrashLoopBackOff after the third restart at the hub', () => appStatuses(watch, 'crashy').some((s) => s.restartCount === 3 && s.state.waiting?.reason === 'CrashLoopBackOff'), 15_000);
      const statuses = appStatuses(watch, 'crashy');
      const restartCounts = statuses.map((s) => s.restartCount);
      expect(restartCounts).toEqual([...restartCounts].sort((a, b) => a - b));
      const backingOff = statuses.filter((s) => s.state.waiting?.reason === 'CrashLoopBackOff');
      expect(new Set(backingOff.map((s) => s.restartCount))).toEqual(new Set([1, 2, 3]));
      for (const s of backingOff) {
        expect(s.ready).toBe(false);
        expect(s.state.waiting?.message).toMatch(/^back-off \d+s restarting failed container=app pod=crashy$/);
        expect(s.lastState?.terminated).toMatchObject({ exitCode: 1, reason: 'Error' });
        expect(Date.parse(s.lastState!.terminated!.finishedAt!)).toBeGreaterThan(0);
      }
      expect(getPod(hub, 'crashy')?.status?.message).toMatch(/^app: CrashLoopBackOff: back-off \d+s/);
    } finally {
      await watch.stop();
    }
    await deletePod('crashy');
  });
});

describe('an image that cannot be pulled', () => {
  it('reports ErrImagePull then ImagePullBackOff while the old container keeps running', async () => {
    apply(hub, podManifest({ name: 'web', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
    const before = await waitFor('web running', () => podRunning(hub, 'web'), 30_000);
    const oldId = before.status!.containerStatuses![0]!.containerID!.replace('docker://', '');
    const watch = await watchObjects<PodJson>(hub, '/api/v1/namespaces/default/pods');
    try {
      const appliedAt = Date.now();
      apply(hub, podManifest({ name: 'web', node: NODE, image: 'flotilla-test/nope:9', command: ['sleep', '3600'] }));
      const reasonsSeen = () => appStatuses(watch, 'web').flatMap((s) => (s.state.waiting?.reason ? [s.state.waiting.reason] : []));
      await waitFor('ErrImagePull', () => reasonsSeen().includes('ErrImagePull'), 20_000, 50);
      // No registry can be reached from the engine: the pull fails at once, not after a timeout.
      const failedAfterMs = Date.now() - appliedAt;
      console.log(`missing image: ErrImagePull ${failedAfterMs} ms after the apply`);
      expect(failedAfterMs).toBeLessThan(10_000);
      await waitFor('ImagePullBackOff after ErrImagePull', () => reasonsSeen().slice(reasonsSeen().indexOf('ErrImagePull')).includes('ImagePullBackOff'), 10_000, 50);

      const pod = getPod(hub, 'web')!;
      const app = pod.status!.containerStatuses![0]!;
      expect(app.image).toBe('flotilla-test/nope:9');
      expect(app.state.waiting?.message).toContain('flotilla-test/nope:9');
      // Download-then-kill: the old container still runs, and still serves.
      expect(app.containerID).toBe(`docker://${oldId}`);
      expect(app.ready).toBe(true);
      expect(pod.status!.phase).toBe('Running');
      expect(pod.status!.message).toMatch(/^app: (ErrImagePull|ImagePullBackOff): .*flotilla-test\/nope:9/);
      const old = await dockerd.docker.getContainer(oldId).inspect();
      expect(old.State.Running).toBe(true);
      expect(old.Config.Image).toBe(TEST_IMAGE);
      expect(await engineContainers(dockerd.docker, { 'flotilla.pod': 'web', 'flotilla.container': 'app' })).toHaveLength(1);
    } finally {
      await watch.stop();
    }

    // Going back to the image that runs clears the failure without touching the container.
    apply(hub, podManifest({ name: 'web', node: NODE, image: TEST_IMAGE, command: ['sleep', '3600'] }));
    const after = await waitFor('web running its first image again', () => {
      const pod = podRunning(hub, 'web');
      return pod && !pod.status?.message ? pod : undefined;
    }, 30_000);
    expect(after.status!.containerStatuses![0]!.containerID).toBe(`docker://${oldId}`);
    await deletePod('web');
  });
});
