import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { StepError, StepExecutor, type PodEvent } from '../../agent/reconcile/execute.js';
import { StepFailures, failureKey } from '../../agent/reconcile/failures.js';
import { planPods, planSteps, UPDATE_ORDER_ANNOTATION } from '../../agent/reconcile/plan.js';
import { podStatuses } from '../../agent/reconcile/status.js';
import type { ContainerRuntime, RuntimeContainer } from '../../agent/runtime/runtime.js';
import {
  NOW,
  PAUSE_IMAGE,
  POD_NETWORK,
  actualState,
  appHashOf,
  container,
  desiredPod,
  expectSteps,
  infraContainer,
  infraHashOf,
  onlyStep,
  planContext,
  runtimeContainer,
} from './builders.js';

// One bad pod must not stop a device: what the planner does for a pod whose spec the engine
// refuses, and what the status says of it.

const BAD_IMAGE = 'Redteam/BusyBox:1';
const START_ERROR = 'failed to create shim task: OCI runtime create failed: exec: "/nope": stat /nope: no such file or directory: unknown';

const healthy = desiredPod({ name: 'healthy', containers: [container({ name: 'app', image: 'img:1' })] });
const badName = desiredPod({ name: 'bad-name', containers: [container({ name: 'app', image: BAD_IMAGE })] });

/** A container the engine made but could not start: it stays created, with its error and exit code 127. */
function startFailed(c: RuntimeContainer): RuntimeContainer {
  return { ...c, state: 'created', exitCode: 127, error: START_ERROR };
}

describe('planPods: an image reference the engine cannot parse', () => {
  it('plans no pull and no create for it, says InvalidImageName, and goes on with the other pods', () => {
    const actual = actualState({ containers: [infraContainer({ pod: healthy }), infraContainer({ pod: badName })], images: [PAUSE_IMAGE, 'img:1'] });
    const plan = planPods(actual, [badName, healthy], planContext());
    expectSteps(plan.steps, ['createContainer']);
    expect(onlyStep(plan.steps, 'createContainer').pod.uid).toBe(healthy.uid);
    expect(plan.waiting.get(`${badName.uid}/app`)).toEqual({
      reason: 'InvalidImageName',
      message: `Failed to apply default image tag "${BAD_IMAGE}": couldn't parse image reference "${BAD_IMAGE}": invalid reference format: repository name must be lowercase`,
    });
    expect(plan.waiting.has(`${healthy.uid}/app`)).toBe(false);
  });

  it('still makes the pod sandbox, as the kubelet does, for the containers that can run', () => {
    const mixed = desiredPod({ name: 'mixed', containers: [container({ name: 'good', image: 'img:1' }), container({ name: 'bad', image: BAD_IMAGE })] });
    const first = planPods(actualState({ images: [PAUSE_IMAGE, 'img:1'] }), [mixed], planContext());
    expectSteps(first.steps, ['createInfra']);
    const second = planPods(actualState({ containers: [infraContainer({ pod: mixed })], images: [PAUSE_IMAGE, 'img:1'] }), [mixed], planContext());
    expectSteps(second.steps, ['createContainer']);
    expect(onlyStep(second.steps, 'createContainer').container.name).toBe('good');
    expect(second.waiting.get(`${mixed.uid}/bad`)?.reason).toBe('InvalidImageName');
  });

  it('leaves the running container of a valid image running when the spec changes to an invalid one, whatever the update order', () => {
    const before = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' })] });
    for (const order of ['download-then-kill', 'kill-then-download']) {
      const after = { ...desiredPod({ name: 'web', containers: [container({ name: 'app', image: BAD_IMAGE })] }), annotations: { [UPDATE_ORDER_ANNOTATION]: order } };
      const running = runtimeContainer({ pod: before, container: 'app', hash: appHashOf(before, 'app') });
      const plan = planPods(actualState({ containers: [infraContainer({ pod: after }), running], images: [PAUSE_IMAGE, 'img:1'] }), [after], planContext());
      expect(plan.steps, order).toEqual([]);
      expect(plan.waiting.get(`${after.uid}/app`)?.reason).toBe('InvalidImageName');
    }
  });
});

describe('planPods: imagePullPolicy Never and an absent image', () => {
  it('plans nothing for the container and says ErrImageNeverPull', () => {
    const never = desiredPod({ name: 'never', containers: [container({ name: 'app', image: 'absent:1', imagePullPolicy: 'Never' })] });
    const plan = planPods(actualState({ containers: [infraContainer({ pod: never })], images: [PAUSE_IMAGE] }), [never], planContext());
    expect(plan.steps).toEqual([]);
    expect(plan.waiting.get(`${never.uid}/app`)).toEqual({ reason: 'ErrImageNeverPull', message: 'Container image "absent:1" is not present with pull policy of Never' });
  });

  it('does not kill the running container under kill-then-download for an image that no pull can bring', () => {
    const before = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' })] });
    const after = { ...desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'absent:1', imagePullPolicy: 'Never' })] }), annotations: { [UPDATE_ORDER_ANNOTATION]: 'kill-then-download' } };
    const running = runtimeContainer({ pod: before, container: 'app', hash: appHashOf(before, 'app') });
    const plan = planPods(actualState({ containers: [infraContainer({ pod: after }), running], images: [PAUSE_IMAGE, 'img:1'] }), [after], planContext());
    expect(plan.steps).toEqual([]);
  });
});

describe('planSteps: an image being pulled in the background', () => {
  const slow = desiredPod({ name: 'slow', containers: [container({ name: 'app', image: 'slow:1' })] });
  const actual = actualState({ containers: [infraContainer({ pod: slow }), infraContainer({ pod: healthy })], images: [PAUSE_IMAGE, 'img:1'] });

  it('is not pulled again, and holds back no pod whose image is here', () => {
    const steps = planSteps(actual, [slow, healthy], planContext({ pulling: new Set(['slow:1']) }));
    expectSteps(steps, ['createContainer']);
    expect(onlyStep(steps, 'createContainer').pod.uid).toBe(healthy.uid);
  });

  it('under pullPolicy Always, is waited for rather than used as it was', () => {
    const always = desiredPod({ name: 'always', containers: [container({ name: 'app', image: 'img:1', imagePullPolicy: 'Always' })] });
    const state = actualState({ containers: [infraContainer({ pod: always })], images: [PAUSE_IMAGE, 'img:1'] });
    expect(planSteps(state, [always], planContext({ pulling: new Set(['img:1']) }))).toEqual([]);
    // Once pulled (just before this reconcile), it is used.
    expectSteps(planSteps(state, [always], planContext({ pulledThisPass: new Set(['img:1']) })), ['createContainer']);
  });
});

describe('planSteps: a container the engine refused to create', () => {
  const infra = infraContainer({ pod: healthy });
  const actual = actualState({ containers: [infra], images: [PAUSE_IMAGE, 'img:1'] });
  const key = failureKey(healthy.uid, 'app');

  it('is not tried again during its back-off', () => {
    const failures = new Map([[key, { until: NOW + 5_000, hash: appHashOf(healthy, 'app') }]]);
    expect(planSteps(actual, [healthy], planContext({ failures }))).toEqual([]);
  });

  it('is tried again once its back-off is over', () => {
    const failures = new Map([[key, { until: NOW - 1, hash: appHashOf(healthy, 'app') }]]);
    expectSteps(planSteps(actual, [healthy], planContext({ failures })), ['createContainer']);
  });

  it('is tried again at once when its spec changed (the back-off is keyed by spec hash, as the kubelet keys it)', () => {
    const failures = new Map([[key, { until: NOW + 5_000, hash: 'the-spec-that-failed' }]]);
    expectSteps(planSteps(actual, [healthy], planContext({ failures })), ['createContainer']);
  });

  it('holds back no other pod', () => {
    const other = desiredPod({ name: 'other', containers: [container({ name: 'app', image: 'img:1' })] });
    const failures = new Map([[key, { until: NOW + 5_000, hash: appHashOf(healthy, 'app') }]]);
    const steps = planSteps(actualState({ containers: [infra, infraContainer({ pod: other })], images: [PAUSE_IMAGE, 'img:1'] }), [healthy, other], planContext({ failures }));
    expectSteps(steps, ['createContainer']);
    expect(onlyStep(steps, 'createContainer').pod.uid).toBe(other.uid);
  });
});

describe('planSteps: a pod sandbox the engine refused', () => {
  const sandboxKey = failureKey(healthy.uid);

  it('makes no sandbox during its back-off, and one after it', () => {
    const failing = new Map([[sandboxKey, { until: NOW + 5_000, hash: infraHashOf(healthy) }]]);
    expect(planSteps(actualState({ images: [PAUSE_IMAGE, 'img:1'] }), [healthy], planContext({ failures: failing }))).toEqual([]);
    const over = new Map([[sandboxKey, { until: NOW - 1, hash: infraHashOf(healthy) }]]);
    expectSteps(planSteps(actualState({ images: [PAUSE_IMAGE, 'img:1'] }), [healthy], planContext({ failures: over })), ['createInfra']);
  });

  it('removes a sandbox that could not start rather than starting it again, and makes a new one after the back-off', () => {
    const dead = startFailed(infraContainer({ pod: healthy }));
    const failing = new Map([[sandboxKey, { until: NOW + 5_000, hash: infraHashOf(healthy) }]]);
    const during = planSteps(actualState({ containers: [dead], images: [PAUSE_IMAGE, 'img:1'] }), [healthy], planContext({ failures: failing }));
    expectSteps(during, ['remove']);
    const after = planSteps(actualState({ containers: [dead], images: [PAUSE_IMAGE, 'img:1'] }), [healthy], planContext());
    expectSteps(after, ['remove', 'createInfra']);
  });

  it('still starts a sandbox that was only created (an agent stopped in between), unless it is in back-off', () => {
    const created = infraContainer({ pod: healthy, state: 'created' });
    expectSteps(planSteps(actualState({ containers: [created], images: [PAUSE_IMAGE] }), [healthy], planContext()), ['start']);
    const failing = new Map([[sandboxKey, { until: NOW + 5_000, hash: infraHashOf(healthy) }]]);
    expect(planSteps(actualState({ containers: [created], images: [PAUSE_IMAGE] }), [healthy], planContext({ failures: failing }))).toEqual([]);
  });
});

describe('planSteps: a container the engine could not start (StartError)', () => {
  const infra = infraContainer({ pod: healthy });

  it('is a failed attempt: restarted as a new container, its dead instance kept as the previous attempt', () => {
    const failed = startFailed(runtimeContainer({ pod: healthy, container: 'app' }));
    const steps = planSteps(actualState({ containers: [infra, failed], images: [PAUSE_IMAGE, 'img:1'] }), [healthy], planContext());
    expectSteps(steps, ['createContainer']);
    expect(onlyStep(steps, 'createContainer').restartCount).toBe(1);
  });

  it('waits out the crash-loop back-off rather than being started again on every pass', () => {
    const failed = startFailed(runtimeContainer({ pod: healthy, container: 'app', restartCount: 2 }));
    const backoff = new Map([[`${healthy.uid}/app`, { until: NOW + 10_000 }]]);
    expect(planSteps(actualState({ containers: [infra, failed], images: [PAUSE_IMAGE, 'img:1'] }), [healthy], planContext({ backoff }))).toEqual([]);
  });

  it('follows the restart policy: Never leaves it, OnFailure restarts it', () => {
    for (const [restartPolicy, expected] of [['Never', []], ['OnFailure', ['createContainer']]] as const) {
      const pod = desiredPod({ name: 'job', restartPolicy, containers: [container({ name: 'app', image: 'img:1' })] });
      const failed = startFailed(runtimeContainer({ pod, container: 'app' }));
      expectSteps(planSteps(actualState({ containers: [infraContainer({ pod }), failed], images: [PAUSE_IMAGE, 'img:1'] }), [pod], planContext()), expected);
    }
  });

  it('removes the attempt before the failed one, not the failed one, when it restarts', () => {
    const older = startFailed(runtimeContainer({ pod: healthy, container: 'app', restartCount: 1 }));
    const current = startFailed(runtimeContainer({ pod: healthy, container: 'app', restartCount: 2 }));
    const steps = planSteps(actualState({ containers: [infra, older, current], images: [PAUSE_IMAGE, 'img:1'] }), [healthy], planContext());
    expectSteps(steps, ['remove', 'createContainer']);
    expect(onlyStep(steps, 'remove').container.id).toBe(older.id);
    expect(onlyStep(steps, 'createContainer').restartCount).toBe(3);
  });
});

describe('podStatuses: a container the engine could not start', () => {
  it('reports it terminated with the kubelet\'s StartError, the engine\'s words and its exit code', () => {
    const failed = startFailed(runtimeContainer({ pod: healthy, container: 'app' }));
    const [status] = podStatuses([healthy], [infraContainer({ pod: healthy }), failed], new Map());
    expect(status!.containerStatuses[0]!.state).toEqual({ terminated: { exitCode: 127, reason: 'StartError', message: START_ERROR } });
  });

  it('keeps it as lastState while the next attempt waits in CrashLoopBackOff', () => {
    const failed = startFailed(runtimeContainer({ pod: healthy, container: 'app', restartCount: 1 }));
    const waiting = new Map([[`${healthy.uid}/app`, { reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container=app pod=healthy' }]]);
    const [status] = podStatuses([healthy], [infraContainer({ pod: healthy }), failed], waiting);
    expect(status!.containerStatuses[0]).toMatchObject({ restartCount: 1, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { reason: 'StartError', exitCode: 127 } } });
  });
});

describe('StepFailures', () => {
  const key = failureKey('uid-1', 'app');

  it('doubles the back-off from 10 s to at most 5 min for the same spec, and starts over for a new one', () => {
    const failures = new StepFailures();
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      failures.failed(key, 'h1', 'CreateContainerError', 'refused', NOW);
      delays.push(failures.view.get(key)!.until - NOW);
    }
    expect(delays).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
    failures.failed(key, 'h2', 'CreateContainerError', 'refused', NOW);
    expect(failures.view.get(key)!.until - NOW).toBe(10_000);
  });

  it('says what the container waits for, in the kubelet\'s terms', () => {
    const failures = new StepFailures();
    failures.failed(key, 'h', 'CreateContainerError', 'Minimum memory limit allowed is 6MB', NOW);
    failures.failed(failureKey('uid-1'), 'h', 'FailedCreatePodSandBox', 'port is already allocated', NOW);
    expect(failures.waiting(key)).toEqual({ reason: 'CreateContainerError', message: 'Minimum memory limit allowed is 6MB' });
    expect(failures.waiting(failureKey('uid-1'))).toEqual({ reason: 'ContainerCreating', message: 'Failed to create pod sandbox: port is already allocated' });
    failures.succeeded(key);
    expect(failures.waiting(key)).toBeUndefined();
  });

  it('forgets the failures of pods and containers no longer desired', () => {
    const failures = new StepFailures();
    failures.failed(failureKey('uid-1', 'app'), 'h', 'CreateContainerError', 'x', NOW);
    failures.failed(failureKey('uid-1', 'gone'), 'h', 'CreateContainerError', 'x', NOW);
    failures.failed(failureKey('uid-1'), 'h', 'FailedCreatePodSandBox', 'x', NOW);
    failures.failed(failureKey('uid-2', 'app'), 'h', 'CreateContainerError', 'x', NOW);
    failures.keepOnly([{ uid: 'uid-1', spec: { containers: [{ name: 'app' }] } }]);
    expect([...failures.view.keys()].sort()).toEqual(['uid-1/', 'uid-1/app']);
  });
});

describe('StepExecutor: what the engine refused, in the kubelet\'s terms', () => {
  /** An executor over an engine that refuses `refuse` with the engine's words. */
  function executorRefusing(refuse: 'create' | 'start') {
    const events: PodEvent[] = [];
    const calls: string[] = [];
    const runtime = {
      createContainer: async () => {
        calls.push('create');
        if (refuse === 'create') throw Object.assign(new Error('Minimum memory limit allowed is 6MB'), { statusCode: 400 });
        return 'id-1';
      },
      startContainer: async () => {
        calls.push('start');
        if (refuse === 'start') throw Object.assign(new Error(START_ERROR), { statusCode: 400 });
      },
    } as Partial<ContainerRuntime> as ContainerRuntime;
    const executor = new StepExecutor(runtime, { node: 'edge', stateDir: '/var/lib/flotilla-agent', pauseImage: PAUSE_IMAGE, podNetwork: POD_NETWORK }, pino({ level: 'silent' }), (e) => events.push(e));
    return { executor, events, calls };
  }

  const create = (pod = healthy) => ({ action: 'createContainer' as const, pod, container: pod.spec.containers[0]!, infraId: 'infra-1', hash: 'h', restartCount: 0 });

  it('a refused create is CreateContainerError, with the engine\'s words, and nothing is started', async () => {
    const { executor, calls } = executorRefusing('create');
    const err = await executor.run(create()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StepError);
    expect(err).toMatchObject({ reason: 'CreateContainerError', message: 'Minimum memory limit allowed is 6MB' });
    expect(calls).toEqual(['create']);
  });

  it('a refused start is RunContainerError, after the Created event', async () => {
    const { executor, events } = executorRefusing('start');
    await expect(executor.run(create())).rejects.toMatchObject({ reason: 'RunContainerError', message: START_ERROR });
    expect(events.map((e) => e.reason)).toEqual(['Created']);
  });

  it('a spec that cannot be put in the engine\'s terms is CreateContainerConfigError, and the engine is not asked', async () => {
    const { executor, calls } = executorRefusing('create');
    const pod = desiredPod({ name: 'bad-limit', containers: [container({ name: 'app', image: 'img:1', resources: { limits: { memory: 'lots' } } })] });
    await expect(executor.run(create(pod))).rejects.toMatchObject({ reason: 'CreateContainerConfigError' });
    expect(calls).toEqual([]);
  });

  it('a sandbox the engine refuses to make or to start is FailedCreatePodSandBox', async () => {
    for (const refuse of ['create', 'start'] as const) {
      const { executor } = executorRefusing(refuse);
      await expect(executor.run({ action: 'createInfra', pod: healthy, hash: 'h' })).rejects.toMatchObject({ reason: 'FailedCreatePodSandBox' });
    }
    const { executor } = executorRefusing('start');
    await expect(executor.run({ action: 'start', pod: healthy, container: { ...infraContainer({ pod: healthy }), state: 'created' } })).rejects.toMatchObject({ reason: 'FailedCreatePodSandBox' });
    await expect(executor.run({ action: 'start', pod: healthy, container: runtimeContainer({ pod: healthy, container: 'app', state: 'created' }) })).rejects.toMatchObject({ reason: 'RunContainerError' });
  });
});
