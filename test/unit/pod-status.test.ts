import { describe, expect, it } from 'vitest';
import { podStatusReportSchema } from '../../shared/protocol/messages.js';
import { podStatuses, type Waiting } from '../../agent/reconcile/status.js';
import { backoffKey } from '../../agent/reconcile/plan.js';
import { container, desiredPod, infraContainer, runtimeContainer } from './builders.js';

const STARTED = '2025-01-01T11:00:00.000000000Z';
const FINISHED = '2025-01-01T11:05:00.000000000Z';
const noWaiting: ReadonlyMap<string, Waiting> = new Map();

const web = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' }), container({ name: 'sidecar', image: 'side:1' })] });

function statusOf(...args: Parameters<typeof podStatuses>) {
  const reports = podStatuses(...args);
  // What the agent reports must pass the hub's check of the status message.
  for (const r of reports) expect(podStatusReportSchema.safeParse(r).success).toBe(true);
  return reports;
}

describe('podStatuses: phase and container states', () => {
  it('reports Pending with ContainerCreating before anything runs', () => {
    const [status] = statusOf([web], [], noWaiting);
    expect(status).toEqual({
      uid: web.uid,
      name: 'web',
      namespace: 'default',
      phase: 'Pending',
      containerStatuses: [
        { name: 'app', image: 'img:1', restartCount: 0, ready: false, state: { waiting: { reason: 'ContainerCreating' } } },
        { name: 'sidecar', image: 'side:1', restartCount: 0, ready: false, state: { waiting: { reason: 'ContainerCreating' } } },
      ],
    });
  });

  it('stays Pending while only the infra container runs', () => {
    const [status] = statusOf([web], [infraContainer({ pod: web, startedAt: STARTED })], noWaiting);
    expect(status!.phase).toBe('Pending');
    expect(status!.startTime).toBe(STARTED);
    expect(status!.containerStatuses.map((c) => c.state)).toEqual([{ waiting: { reason: 'ContainerCreating' } }, { waiting: { reason: 'ContainerCreating' } }]);
  });

  it('reports Running with ready containers and their start times when all run', () => {
    const app = runtimeContainer({ pod: web, container: 'app', startedAt: STARTED });
    const sidecar = runtimeContainer({ pod: web, container: 'sidecar', startedAt: STARTED });
    const [status] = statusOf([web], [infraContainer({ pod: web, startedAt: STARTED }), app, sidecar], noWaiting);
    expect(status!.phase).toBe('Running');
    expect(status!.containerStatuses[0]).toEqual({
      name: 'app',
      image: 'img:1',
      restartCount: 0,
      containerID: `docker://${app.id}`,
      ready: true,
      state: { running: { startedAt: STARTED } },
    });
    expect(status!.containerStatuses.every((c) => c.ready)).toBe(true);
  });

  it('ignores containers of other pods', () => {
    const other = desiredPod({ name: 'other', containers: [container({ name: 'app', image: 'img:1' })] });
    const [status] = statusOf([web], [infraContainer({ pod: other }), runtimeContainer({ pod: other, container: 'app' })], noWaiting);
    expect(status!.phase).toBe('Pending');
  });

  it.each([
    { exitCode: 0, oomKilled: false, reason: 'Completed' },
    { exitCode: 1, oomKilled: false, reason: 'Error' },
    { exitCode: 137, oomKilled: true, reason: 'OOMKilled' },
  ])('names a container that exited with $exitCode (oomKilled $oomKilled) $reason', ({ exitCode, oomKilled, reason }) => {
    const pod = desiredPod({ name: 'one', containers: [container({ name: 'app', image: 'img:1' })] });
    const exited = runtimeContainer({ pod, container: 'app', state: 'exited', exitCode, oomKilled, startedAt: STARTED, finishedAt: FINISHED });
    const [status] = statusOf([pod], [infraContainer({ pod }), exited], noWaiting);
    expect(status!.containerStatuses[0]!.ready).toBe(false);
    expect(status!.containerStatuses[0]!.state).toEqual({ terminated: { exitCode, reason, startedAt: STARTED, finishedAt: FINISHED } });
  });

  it('keeps a pod with restartPolicy Always Running when its containers exited, since they will restart', () => {
    const pod = desiredPod({ name: 'svc', containers: [container({ name: 'app', image: 'img:1' })] });
    const [status] = statusOf([pod], [infraContainer({ pod }), runtimeContainer({ pod, container: 'app', state: 'exited', exitCode: 0 })], noWaiting);
    expect(status!.phase).toBe('Running');
  });
});

describe('podStatuses: pods that run to completion', () => {
  const job = (restartPolicy: 'Never' | 'OnFailure') =>
    desiredPod({ name: 'job', restartPolicy, containers: [container({ name: 'a', image: 'img:1' }), container({ name: 'b', image: 'img:1' })] });
  const exitedWith = (pod: ReturnType<typeof job>, a: number, b: number) => [
    infraContainer({ pod }),
    runtimeContainer({ pod, container: 'a', state: 'exited', exitCode: a }),
    runtimeContainer({ pod, container: 'b', state: 'exited', exitCode: b }),
  ];

  it('is Succeeded under Never when every container exited 0', () => {
    const pod = job('Never');
    expect(statusOf([pod], exitedWith(pod, 0, 0), noWaiting)[0]!.phase).toBe('Succeeded');
  });

  it('is Failed under Never when one container failed', () => {
    const pod = job('Never');
    expect(statusOf([pod], exitedWith(pod, 0, 2), noWaiting)[0]!.phase).toBe('Failed');
  });

  it('is Succeeded under OnFailure when every container exited 0', () => {
    const pod = job('OnFailure');
    expect(statusOf([pod], exitedWith(pod, 0, 0), noWaiting)[0]!.phase).toBe('Succeeded');
  });

  it('is still Running under OnFailure when a container failed, since it will be restarted', () => {
    const pod = job('OnFailure');
    expect(statusOf([pod], exitedWith(pod, 0, 1), noWaiting)[0]!.phase).toBe('Running');
  });

  it('is Running under Never while one container still runs', () => {
    const pod = job('Never');
    const containers = [infraContainer({ pod }), runtimeContainer({ pod, container: 'a', state: 'exited', exitCode: 0 }), runtimeContainer({ pod, container: 'b' })];
    expect(statusOf([pod], containers, noWaiting)[0]!.phase).toBe('Running');
  });
});

describe('podStatuses: what the agent knows and the engine does not', () => {
  const one = desiredPod({ name: 'one', containers: [container({ name: 'app', image: 'img:2' })] });

  it('shows an image pull in back-off as waiting ImagePullBackOff, with its message', () => {
    const waiting = new Map([[backoffKey(one.uid, 'app'), { reason: 'ImagePullBackOff', message: 'manifest unknown' }]]);
    const [status] = statusOf([one], [infraContainer({ pod: one })], waiting);
    expect(status!.phase).toBe('Pending');
    expect(status!.containerStatuses[0]).toEqual({
      name: 'app',
      image: 'img:2',
      restartCount: 0,
      ready: false,
      state: { waiting: { reason: 'ImagePullBackOff', message: 'manifest unknown' } },
    });
  });

  it('shows a crash-looping container as waiting CrashLoopBackOff with its last termination and restart count', () => {
    const crashed = runtimeContainer({ pod: one, container: 'app', state: 'exited', exitCode: 1, restartCount: 4, startedAt: STARTED, finishedAt: FINISHED });
    const message = 'back-off 40s restarting failed container=app pod=one';
    const waiting = new Map([[backoffKey(one.uid, 'app'), { reason: 'CrashLoopBackOff', message }]]);
    const [status] = statusOf([one], [infraContainer({ pod: one }), crashed], waiting);
    expect(status!.phase).toBe('Running');
    expect(status!.containerStatuses[0]).toEqual({
      name: 'app',
      image: 'img:2',
      restartCount: 4,
      containerID: `docker://${crashed.id}`,
      ready: false,
      state: { waiting: { reason: 'CrashLoopBackOff', message } },
      lastState: { terminated: { exitCode: 1, reason: 'Error', startedAt: STARTED, finishedAt: FINISHED } },
    });
  });

  it('applies a pod-wide waiting reason (the pause image) to every container', () => {
    const waiting = new Map([[`${web.uid}/`, { reason: 'ErrImagePull', message: 'pause image: no space left on device' }]]);
    const [status] = statusOf([web], [], waiting);
    expect(status!.containerStatuses.map((c) => c.state.waiting?.reason)).toEqual(['ErrImagePull', 'ErrImagePull']);
  });

  it('shows a running container as running even if a waiting reason is still recorded for it', () => {
    const waiting = new Map([[backoffKey(one.uid, 'app'), { reason: 'CrashLoopBackOff', message: 'back-off' }]]);
    const [status] = statusOf([one], [infraContainer({ pod: one }), runtimeContainer({ pod: one, container: 'app', restartCount: 1 })], waiting);
    expect(status!.containerStatuses[0]!.state.running).toBeDefined();
    expect(status!.containerStatuses[0]!.ready).toBe(true);
  });
});

describe('podStatuses: restart count', () => {
  it('takes restartCount from the label of the newest instance of the container', () => {
    const pod = desiredPod({ name: 'one', containers: [container({ name: 'app', image: 'img:1' })] });
    const older = runtimeContainer({ pod, container: 'app', state: 'exited', exitCode: 1, restartCount: 2, createdAt: '2025-01-01T10:00:00.000000000Z' });
    const newer = runtimeContainer({ pod, container: 'app', restartCount: 3, createdAt: '2025-01-01T11:00:00.000000000Z' });
    const [status] = statusOf([pod], [infraContainer({ pod }), older, newer], noWaiting);
    expect(status!.containerStatuses[0]).toMatchObject({ restartCount: 3, containerID: `docker://${newer.id}`, ready: true });
  });

  it('reads a missing or garbled label as 0', () => {
    const pod = desiredPod({ name: 'one', containers: [container({ name: 'app', image: 'img:1' })] });
    const app = runtimeContainer({ pod, container: 'app' });
    app.labels['flotilla.restart-count'] = 'many';
    expect(statusOf([pod], [infraContainer({ pod }), app], noWaiting)[0]!.containerStatuses[0]!.restartCount).toBe(0);
  });
});

describe('podStatuses: lastState and the pod message', () => {
  const pod = desiredPod({ name: 'one', containers: [container({ name: 'app', image: 'img:2' })] });

  it('gives a restarted, running container the termination of its previous attempt as lastState', () => {
    const previous = runtimeContainer({ pod, container: 'app', state: 'exited', exitCode: 137, restartCount: 0, startedAt: STARTED, finishedAt: FINISHED });
    const current = runtimeContainer({ pod, container: 'app', restartCount: 1, startedAt: FINISHED });
    const [status] = statusOf([pod], [infraContainer({ pod }), current, previous], noWaiting);
    expect(status!.containerStatuses[0]).toMatchObject({
      restartCount: 1,
      containerID: `docker://${current.id}`,
      state: { running: { startedAt: FINISHED } },
      lastState: { terminated: { exitCode: 137, reason: 'Error', startedAt: STARTED, finishedAt: FINISHED } },
    });
  });

  it('shows a container that keeps running an older image while the new one cannot be pulled as waiting, and still ready', () => {
    const v1 = desiredPod({ ...pod, containers: [container({ name: 'app', image: 'img:1' })] });
    const old = runtimeContainer({ pod: v1, container: 'app', startedAt: STARTED });
    const waiting = new Map([[backoffKey(pod.uid, 'app'), { reason: 'ImagePullBackOff', message: 'Back-off pulling image "img:2": not found' }]]);
    const [status] = statusOf([pod], [infraContainer({ pod }), old], waiting);
    expect(status!.phase).toBe('Running');
    expect(status!.containerStatuses[0]).toMatchObject({ image: 'img:2', containerID: `docker://${old.id}`, ready: true, state: { waiting: { reason: 'ImagePullBackOff' } } });
    expect(status!.message).toBe('app: ImagePullBackOff: Back-off pulling image "img:2": not found');
  });

  it('says nothing in the message when every container is where it should be', () => {
    const [status] = statusOf([pod], [infraContainer({ pod }), runtimeContainer({ pod, container: 'app' })], noWaiting);
    expect(status!.message).toBeUndefined();
  });
});

describe('podStatuses: readiness from probes', () => {
  const readinessProbe = { httpGet: { port: 8080 }, initialDelaySeconds: 0, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 2 };
  const probed = desiredPod({ name: 'probed', containers: [container({ name: 'app', image: 'img:1', readinessProbe }), container({ name: 'plain', image: 'img:1' })] });
  const engine = () => [
    { ...infraContainer({ pod: probed, startedAt: STARTED }), podIP: '10.88.0.7' },
    runtimeContainer({ pod: probed, container: 'app', id: 'app-1', startedAt: STARTED }),
    runtimeContainer({ pod: probed, container: 'plain', id: 'plain-1', startedAt: STARTED }),
  ];
  const readyOf = (probeReady: Parameters<typeof podStatuses>[3]) => statusOf([probed], engine(), noWaiting, probeReady)[0]!.containerStatuses.map((c) => [c.name, c.ready]);

  it('is not ready while the readiness probe has not passed; a container without probes is', () => {
    expect(readyOf(() => undefined)).toEqual([['app', false], ['plain', true]]);
    expect(readyOf((_uid, name, id) => (name === 'app' && id === 'app-1' ? false : undefined))).toEqual([['app', false], ['plain', true]]);
  });

  it('is ready once the probe passed, and keeps running either way', () => {
    const [status] = statusOf([probed], engine(), noWaiting, (_uid, name) => (name === 'app' ? true : undefined));
    expect(status!.containerStatuses.map((c) => c.ready)).toEqual([true, true]);
    expect(status!.phase).toBe('Running');
    expect(status!.podIP).toBe('10.88.0.7');
  });
});
