import { describe, expect, it } from 'vitest';
import { backoffKey, planSteps, pullBackoffKey, pullPolicy } from '../../agent/reconcile/plan.js';
import { LABEL_NODE } from '../../agent/runtime/runtime.js';
import {
  NOW,
  PAUSE_IMAGE,
  actualState,
  appHashOf,
  container,
  desiredPod,
  expectSteps,
  infraContainer,
  infraHashOf,
  onlyStep,
  planContext,
  removedIds,
  runtimeContainer,
} from './builders.js';

const web = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' })] });

describe('planSteps: a new pod', () => {
  it('plans nothing when nothing is desired and nothing runs', () => {
    expect(planSteps(actualState(), [], planContext())).toEqual([]);
  });

  it('creates only the infra container first: app containers wait until it runs', () => {
    const steps = planSteps(actualState({ images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext());
    expectSteps(steps, ['createInfra']);
    const create = onlyStep(steps, 'createInfra');
    expect(create.pod.uid).toBe(web.uid);
    expect(create.hash).toBe(infraHashOf(web));
  });

  it('pulls the pause image first when it is absent, and creates nothing yet', () => {
    const steps = planSteps(actualState({ images: ['img:1'] }), [web], planContext());
    expectSteps(steps, ['pull']);
    expect(onlyStep(steps, 'pull').image).toBe(PAUSE_IMAGE);
  });

  it('creates every app container, joined to the running infra container', () => {
    const pod = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' }), container({ name: 'sidecar', image: 'side:2' })] });
    const infra = infraContainer({ pod });
    const steps = planSteps(actualState({ containers: [infra], images: [PAUSE_IMAGE, 'img:1', 'side:2'] }), [pod], planContext());
    expectSteps(steps, ['createContainer', 'createContainer']);
    expect(steps).toEqual([
      { action: 'createContainer', pod, container: pod.spec.containers[0], infraId: infra.id, hash: appHashOf(pod, 'app'), restartCount: 0 },
      { action: 'createContainer', pod, container: pod.spec.containers[1], infraId: infra.id, hash: appHashOf(pod, 'sidecar'), restartCount: 0 },
    ]);
  });

  it('pulls an absent app image, then creates the container on the next plan', () => {
    const infra = infraContainer({ pod: web });
    const first = planSteps(actualState({ containers: [infra], images: [PAUSE_IMAGE] }), [web], planContext());
    expectSteps(first, ['pull']);
    expect(onlyStep(first, 'pull')).toMatchObject({ image: 'img:1', pod: { uid: web.uid } });

    const second = planSteps(actualState({ containers: [infra], images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext());
    expectSteps(second, ['createContainer']);
  });

  it('pulls an image shared by several pods once', () => {
    const a = desiredPod({ name: 'a', containers: [container({ name: 'app', image: 'shared:1' })] });
    const b = desiredPod({ name: 'b', containers: [container({ name: 'app', image: 'shared:1' })] });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod: a }), infraContainer({ pod: b })], images: [PAUSE_IMAGE] }), [a, b], planContext());
    expectSteps(steps, ['pull']);
  });

  it('starts a container the engine created but never started', () => {
    const infra = infraContainer({ pod: web });
    const app = runtimeContainer({ pod: web, container: 'app', state: 'created' });
    const steps = planSteps(actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext());
    expectSteps(steps, ['start']);
    expect(onlyStep(steps, 'start').container.id).toBe(app.id);
  });

  it('starts an infra container left in the created state rather than replacing it', () => {
    const infra = infraContainer({ pod: web, state: 'created' });
    const steps = planSteps(actualState({ containers: [infra], images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext());
    expectSteps(steps, ['start']);
    expect(onlyStep(steps, 'start').container.id).toBe(infra.id);
  });

  it('plans nothing for a pod whose containers all run with the current spec', () => {
    const containers = [infraContainer({ pod: web }), runtimeContainer({ pod: web, container: 'app' })];
    expect(planSteps(actualState({ containers, images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext())).toEqual([]);
  });
});

describe('planSteps: image pull policy', () => {
  const podWith = (image: string, imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never') =>
    desiredPod({ name: 'web', containers: [container({ name: 'app', image, ...(imagePullPolicy ? { imagePullPolicy } : {}) })] });
  const planFor = (pod: ReturnType<typeof podWith>, images: string[], ctx = planContext()) =>
    planSteps(actualState({ containers: [infraContainer({ pod })], images: [PAUSE_IMAGE, ...images] }), [pod], ctx);

  it('pulls a present `:latest` image again before creating (Always)', () => {
    const pod = podWith('img:latest');
    const steps = planFor(pod, ['img:latest']);
    expectSteps(steps, ['pull']);
    expect(onlyStep(steps, 'pull').image).toBe('img:latest');
  });

  it('pulls a present untagged image again before creating (Always)', () => {
    expectSteps(planFor(podWith('registry.example:5000/team/img'), ['registry.example:5000/team/img']), ['pull']);
  });

  it('creates from a present tagged image without pulling (IfNotPresent)', () => {
    expectSteps(planFor(podWith('registry.example:5000/team/img:1.2'), ['registry.example:5000/team/img:1.2']), ['createContainer']);
  });

  it('is satisfied for Always by a pull made earlier in the same reconcile pass', () => {
    const pod = podWith('img:latest');
    expectSteps(planFor(pod, ['img:latest'], planContext({ pulledThisPass: new Set(['img:latest']) })), ['createContainer']);
  });

  it('neither pulls nor creates with Never when the image is absent', () => {
    expect(planFor(podWith('img:1', 'Never'), [])).toEqual([]);
  });

  it('creates with Never when the image is present, without pulling it', () => {
    expectSteps(planFor(podWith('img:latest', 'Never'), ['img:latest']), ['createContainer']);
  });

  it('does not retry a failed pull during its back-off (ImagePullBackOff), and does after it', () => {
    const pod = podWith('img:2');
    const failing = planContext({ pullBackoff: new Map([[pullBackoffKey(pod.uid, 'img:2', PAUSE_IMAGE), { until: NOW + 5_000, message: 'manifest unknown' }]]) });
    expect(planFor(pod, [], failing)).toEqual([]);

    const over = planContext({ pullBackoff: new Map([[pullBackoffKey(pod.uid, 'img:2', PAUSE_IMAGE), { until: NOW - 1, message: 'manifest unknown' }]]) });
    expectSteps(planFor(pod, [], over), ['pull']);
  });

  it('keys the back-off by pod: another pod pulls the image that one pod failed to pull (its credentials may differ)', () => {
    const failed = podWith('img:2');
    const other = desiredPod({ name: 'other', containers: [container({ name: 'app', image: 'img:2' })] });
    const ctx = planContext({ pullBackoff: new Map([[pullBackoffKey(failed.uid, 'img:2', PAUSE_IMAGE), { until: NOW + 5_000, message: 'unauthorized' }]]) });
    const infras = [infraContainer({ pod: failed }), infraContainer({ pod: other })];
    const steps = planSteps(actualState({ containers: infras, images: [PAUSE_IMAGE] }), [failed, other], ctx);
    expectSteps(steps, ['pull']);
    expect(onlyStep(steps, 'pull').pod.uid).toBe(other.uid);
  });

  it('does not pull the pause image during its back-off either', () => {
    const ctx = planContext({ pullBackoff: new Map([[PAUSE_IMAGE, { until: NOW + 5_000, message: 'no space left on device' }]]) });
    expect(planSteps(actualState({ images: ['img:1'] }), [web], ctx)).toEqual([]);
  });
});

describe('pullPolicy', () => {
  it.each([
    ['img', 'Always'],
    ['img:latest', 'Always'],
    ['registry.example/team/img:latest', 'Always'],
    ['registry.example:5000/team/img', 'Always'],
    ['img:1', 'IfNotPresent'],
    ['registry.example:5000/team/img:2.1', 'IfNotPresent'],
    ['img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'IfNotPresent'],
  ] as const)('defaults %s to %s', (image, expected) => {
    expect(pullPolicy(container({ name: 'app', image }))).toBe(expected);
  });

  it('keeps an explicit policy whatever the tag', () => {
    expect(pullPolicy(container({ name: 'app', image: 'img:latest', imagePullPolicy: 'IfNotPresent' }))).toBe('IfNotPresent');
    expect(pullPolicy(container({ name: 'app', image: 'img:1', imagePullPolicy: 'Always' }))).toBe('Always');
    expect(pullPolicy(container({ name: 'app', image: 'img', imagePullPolicy: 'Never' }))).toBe('Never');
  });
});

describe('planSteps: removal', () => {
  it('removes the containers of a pod that is no longer desired', () => {
    const gone = desiredPod({ name: 'gone', containers: [container({ name: 'app', image: 'img:1' })] });
    const infra = infraContainer({ pod: gone });
    const app = runtimeContainer({ pod: gone, container: 'app' });
    const steps = planSteps(actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'img:1'] }), [], planContext());
    expectSteps(steps, ['remove', 'remove']);
    expect(removedIds(steps)).toEqual([infra.id, app.id]);
  });

  it('leaves the containers of a pod it could not read (refusedPods) exactly as they are', () => {
    const unreadable = desiredPod({ name: 'unreadable', containers: [container({ name: 'app', image: 'img:1' })] });
    const infra = infraContainer({ pod: unreadable });
    const app = runtimeContainer({ pod: unreadable, container: 'app' });
    const actual = actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'img:1'] });
    expect(planSteps(actual, [], planContext({ leaveAlone: new Set([unreadable.uid]) }))).toEqual([]);
    expect(removedIds(planSteps(actual, [], planContext({ leaveAlone: new Set(['another-uid']) })))).toEqual([infra.id, app.id]);
  });

  it('removes whatever undesired container it is given, whichever node it is labelled for: the caller lists only its own node', () => {
    // The planner does not read LABEL_NODE. The agent must pass only the containers it lists
    // with its own node label (docs/ARCHITECTURE.md, 'The agent and the container engine': several agents may share one engine), or it
    // would remove its neighbours' pods.
    const neighbours = desiredPod({ name: 'theirs', containers: [container({ name: 'app', image: 'img:1' })] });
    const foreign = runtimeContainer({ pod: neighbours, container: 'app', node: 'edge-2' });
    expect(foreign.labels[LABEL_NODE]).toBe('edge-2');
    const steps = planSteps(actualState({ containers: [foreign], images: [PAUSE_IMAGE, 'img:1'] }), [], planContext());
    expect(removedIds(steps)).toEqual([foreign.id]);
  });

  it('removes an app container dropped from the pod spec', () => {
    const before = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' }), container({ name: 'sidecar', image: 'side:1' })] });
    const after = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' })] });
    const sidecar = runtimeContainer({ pod: before, container: 'sidecar' });
    const containers = [infraContainer({ pod: after }), runtimeContainer({ pod: after, container: 'app' }), sidecar];
    const steps = planSteps(actualState({ containers, images: [PAUSE_IMAGE, 'img:1', 'side:1'] }), [after], planContext());
    expectSteps(steps, ['remove']);
    expect(removedIds(steps)).toEqual([sidecar.id]);
  });

  it('removes the older of duplicate app containers and keeps the newest', () => {
    const infra = infraContainer({ pod: web });
    const older = runtimeContainer({ pod: web, container: 'app', createdAt: '2025-01-01T10:00:00.000000000Z' });
    const newer = runtimeContainer({ pod: web, container: 'app', createdAt: '2025-01-01T11:00:00.000000000Z' });
    const steps = planSteps(actualState({ containers: [infra, newer, older], images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext());
    expectSteps(steps, ['remove']);
    expect(removedIds(steps)).toEqual([older.id]);
  });

  it('removes the older of duplicate infra containers', () => {
    const older = infraContainer({ pod: web, createdAt: '2025-01-01T10:00:00.000000000Z' });
    const newer = infraContainer({ pod: web, createdAt: '2025-01-01T11:00:00.000000000Z' });
    const app = runtimeContainer({ pod: web, container: 'app' });
    const steps = planSteps(actualState({ containers: [older, newer, app], images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext());
    expectSteps(steps, ['remove']);
    expect(removedIds(steps)).toEqual([older.id]);
  });
});

describe('planSteps: replacement on a spec change', () => {
  const v1 = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' })] });
  const v2 = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:2' })] });

  it('replaces a container whose spec hash changed once the new image is present', () => {
    const infra = infraContainer({ pod: v2 });
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const steps = planSteps(actualState({ containers: [infra, old], images: [PAUSE_IMAGE, 'img:1', 'img:2'] }), [v2], planContext());
    expectSteps(steps, ['remove', 'createContainer']);
    expect(removedIds(steps)).toEqual([old.id]);
    expect(onlyStep(steps, 'createContainer')).toMatchObject({ container: { image: 'img:2' }, infraId: infra.id, hash: appHashOf(v2, 'app'), restartCount: 0 });
  });

  it('downloads then kills: with the new image absent, only pulls and leaves the old container running', () => {
    const infra = infraContainer({ pod: v2 });
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const steps = planSteps(actualState({ containers: [infra, old], images: [PAUSE_IMAGE, 'img:1'] }), [v2], planContext());
    expectSteps(steps, ['pull']);
    expect(onlyStep(steps, 'pull').image).toBe('img:2');
    expect(removedIds(steps)).toEqual([]);
  });

  it('keeps the old container while the new image is in pull back-off', () => {
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const ctx = planContext({ pullBackoff: new Map([[pullBackoffKey(v2.uid, 'img:2', PAUSE_IMAGE), { until: NOW + 10_000, message: 'unauthorized' }]]) });
    expect(planSteps(actualState({ containers: [infraContainer({ pod: v2 }), old], images: [PAUSE_IMAGE, 'img:1'] }), [v2], ctx)).toEqual([]);
  });

  it('recreates the infra and every app container when the sandbox spec changes (hostNetwork toggled)', () => {
    const bridged = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' }), container({ name: 'sidecar', image: 'side:1' })] });
    const onHost = desiredPod({ ...bridged, hostNetwork: true, containers: bridged.spec.containers });
    expect(infraHashOf(onHost)).not.toBe(infraHashOf(bridged));
    const infra = infraContainer({ pod: bridged });
    const app = runtimeContainer({ pod: bridged, container: 'app' });
    const sidecar = runtimeContainer({ pod: bridged, container: 'sidecar' });
    const steps = planSteps(actualState({ containers: [infra, app, sidecar], images: [PAUSE_IMAGE, 'img:1', 'side:1'] }), [onHost], planContext());
    expectSteps(steps, ['remove', 'remove', 'remove', 'createInfra']);
    expect(removedIds(steps)).toEqual([infra.id, app.id, sidecar.id]);
    expect(onlyStep(steps, 'createInfra').hash).toBe(infraHashOf(onHost));
    expect(steps[0]).toMatchObject({ action: 'remove', reason: 'pod sandbox changed' });
  });

  it('recreates the whole pod when its infra container has exited', () => {
    const infra = infraContainer({ pod: web, state: 'exited', exitCode: 137 });
    const app = runtimeContainer({ pod: web, container: 'app' });
    const steps = planSteps(actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'img:1'] }), [web], planContext());
    expectSteps(steps, ['remove', 'remove', 'createInfra']);
    expect(removedIds(steps)).toEqual([infra.id, app.id]);
    const [removeInfra] = steps;
    expect(removeInfra).toMatchObject({ action: 'remove', reason: 'pod sandbox is not running' });
  });

  it('gives each app container a hash that changes with the infra hash, so a new sandbox means new containers', () => {
    const onHost = desiredPod({ name: 'web', hostNetwork: true, containers: web.spec.containers });
    expect(appHashOf(onHost, 'app')).not.toBe(appHashOf(web, 'app'));
  });
});

describe('planSteps: restart policy', () => {
  const withPolicy = (restartPolicy?: 'Always' | 'OnFailure' | 'Never') =>
    desiredPod({ name: 'job', containers: [container({ name: 'app', image: 'img:1' })], ...(restartPolicy ? { restartPolicy } : {}) });
  const planExited = (pod: ReturnType<typeof withPolicy>, exitCode: number, ctx = planContext(), restartCount = 0) => {
    const exited = runtimeContainer({ pod, container: 'app', state: 'exited', exitCode, restartCount });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod }), exited], images: [PAUSE_IMAGE, 'img:1'] }), [pod], ctx);
    return { steps, exited };
  };

  it('restarts an exited container under Always (the default), counting the restart and keeping the exited one', () => {
    const pod = withPolicy();
    const { steps } = planExited(pod, 0, planContext(), 2);
    expectSteps(steps, ['createContainer']);
    expect(onlyStep(steps, 'createContainer')).toMatchObject({ restartCount: 3, hash: appHashOf(pod, 'app') });
  });

  it('restarts a dead container as it does an exited one', () => {
    const pod = withPolicy('Always');
    const dead = runtimeContainer({ pod, container: 'app', state: 'dead' });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod }), dead], images: [PAUSE_IMAGE, 'img:1'] }), [pod], planContext());
    expectSteps(steps, ['createContainer']);
    expect(onlyStep(steps, 'createContainer').restartCount).toBe(1);
  });

  it('leaves a container that succeeded alone under OnFailure', () => {
    expect(planExited(withPolicy('OnFailure'), 0).steps).toEqual([]);
  });

  it('restarts a container that failed under OnFailure', () => {
    const { steps } = planExited(withPolicy('OnFailure'), 1);
    expectSteps(steps, ['createContainer']);
    expect(onlyStep(steps, 'createContainer').restartCount).toBe(1);
  });

  it('never restarts under Never, whatever the exit code', () => {
    expect(planExited(withPolicy('Never'), 0).steps).toEqual([]);
    expect(planExited(withPolicy('Never'), 1).steps).toEqual([]);
  });

  it('waits out the crash-loop back-off before restarting, then restarts', () => {
    const pod = withPolicy('Always');
    const waiting = planContext({ backoff: new Map([[backoffKey(pod.uid, 'app'), { until: NOW + 10_000 }]]) });
    expect(planExited(pod, 1, waiting).steps).toEqual([]);

    const over = planContext({ backoff: new Map([[backoffKey(pod.uid, 'app'), { until: NOW }]]) });
    expectSteps(planExited(pod, 1, over).steps, ['createContainer']);
  });

  it('applies one container’s back-off to that container only', () => {
    const pod = desiredPod({ name: 'two', containers: [container({ name: 'a', image: 'img:1' }), container({ name: 'b', image: 'img:1' })] });
    const a = runtimeContainer({ pod, container: 'a', state: 'exited', exitCode: 1 });
    const b = runtimeContainer({ pod, container: 'b', state: 'exited', exitCode: 1 });
    const ctx = planContext({ backoff: new Map([[backoffKey(pod.uid, 'a'), { until: NOW + 10_000 }]]) });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod }), a, b], images: [PAUSE_IMAGE, 'img:1'] }), [pod], ctx);
    expectSteps(steps, ['createContainer']);
    expect(onlyStep(steps, 'createContainer').container.name).toBe('b');
  });

  it('does not remove a crashed container to restart it while its image is unusable', () => {
    const pod = desiredPod({ name: 'job', containers: [container({ name: 'app', image: 'img:1', imagePullPolicy: 'Never' })] });
    const exited = runtimeContainer({ pod, container: 'app', state: 'exited', exitCode: 1 });
    expect(planSteps(actualState({ containers: [infraContainer({ pod }), exited], images: [PAUSE_IMAGE] }), [pod], planContext())).toEqual([]);
  });
});

describe('planSteps: the previous attempt of a restarted container', () => {
  const pod = desiredPod({ name: 'loop', containers: [container({ name: 'app', image: 'img:1' })] });
  const attempt = (restartCount: number, state: 'running' | 'exited' = 'exited') => runtimeContainer({ pod, container: 'app', state, restartCount, ...(state === 'exited' ? { exitCode: 1 } : {}) });
  const plan = (...apps: ReturnType<typeof attempt>[]) => planSteps(actualState({ containers: [infraContainer({ pod }), ...apps], images: [PAUSE_IMAGE, 'img:1'] }), [pod], planContext());

  it('keeps the dead instance before the running one, for its lastState', () => {
    expect(plan(attempt(3, 'running'), attempt(2))).toEqual([]);
  });

  it('removes the instances before that one', () => {
    const two = attempt(2);
    const one = attempt(1);
    expect(removedIds(plan(attempt(3, 'running'), two, one))).toEqual([one.id]);
  });

  it('on the next restart removes the old previous attempt and keeps the one that just exited', () => {
    const exited = attempt(3);
    const before = attempt(2);
    const steps = plan(exited, before);
    expectSteps(steps, ['remove', 'createContainer']);
    expect(removedIds(steps)).toEqual([before.id]);
    expect(onlyStep(steps, 'createContainer').restartCount).toBe(4);
  });

  it('removes an older instance that still runs: it is a duplicate, not a previous attempt', () => {
    const stray = attempt(2, 'running');
    expect(removedIds(plan(attempt(3, 'running'), stray))).toEqual([stray.id]);
  });

  it('removes a dead instance of another spec', () => {
    const v0 = desiredPod({ name: 'loop', containers: [container({ name: 'app', image: 'img:0' })] });
    const old = runtimeContainer({ pod: v0, container: 'app', state: 'exited', exitCode: 1, restartCount: 2 });
    expect(removedIds(plan(attempt(3, 'running'), old))).toEqual([old.id]);
  });

  it('removes the previous attempt with the current one when the spec changes, so the new count starts clean', () => {
    const v2 = desiredPod({ name: 'loop', containers: [container({ name: 'app', image: 'img:2' })] });
    const current = attempt(3, 'running');
    const previous = attempt(2);
    const steps = planSteps(actualState({ containers: [infraContainer({ pod: v2 }), current, previous], images: [PAUSE_IMAGE, 'img:1', 'img:2'] }), [v2], planContext());
    expectSteps(steps, ['remove', 'remove', 'createContainer']);
    expect(removedIds(steps)).toEqual([previous.id, current.id]);
    expect(onlyStep(steps, 'createContainer').restartCount).toBe(0);
  });

  it('keeps both while the new spec\'s image cannot be pulled (download-then-kill)', () => {
    const v2 = desiredPod({ name: 'loop', containers: [container({ name: 'app', image: 'img:2' })] });
    const ctx = planContext({ pullBackoff: new Map([[pullBackoffKey(v2.uid, 'img:2', PAUSE_IMAGE), { until: NOW + 10_000, message: 'not found' }]]) });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod: v2 }), attempt(3, 'running'), attempt(2)], images: [PAUSE_IMAGE, 'img:1'] }), [v2], ctx);
    expect(steps).toEqual([]);
  });
});
