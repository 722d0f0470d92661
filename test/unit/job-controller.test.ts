import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backoffDelay, CONTROLLER_UID_LABEL, JOB_NAME_LABEL } from '../../hub/controllers/job-pods.js';
import { JobController } from '../../hub/controllers/job.js';
import type { ObjectStore } from '../../hub/store/objects.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { JobSpec, JobStatus } from '../../shared/resources/job.js';
import type { PodPhase, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { eventsAbout, podObject, testHub, type TestHub } from './builders.js';

const IMAGE = 'flotilla-test/busybox:1';
const START = Date.parse('2025-01-01T12:00:00Z');

let hub: TestHub;
let controller: JobController;
let clock: number;

beforeEach(() => {
  hub = testHub();
  clock = START;
  controller = new JobController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
});
afterEach(() => {
  controller.stop();
  hub.db.close();
});

function spec(o: Partial<Omit<JobSpec, 'template'>> & { restartPolicy?: 'Never' | 'OnFailure' } = {}): JobSpec {
  const { restartPolicy, ...rest } = o;
  return {
    template: { metadata: { labels: { app: 'batch' } }, spec: { restartPolicy: restartPolicy ?? 'Never', containers: [{ name: 'main', image: IMAGE, command: ['sh', '-c', 'true'] }] } },
    ...rest,
  };
}

function createJob(name: string, jobSpec: JobSpec = spec()): StoredObject {
  const job: NewObject = { apiVersion: 'flotilla/v1', kind: 'Job', metadata: { name, namespace: 'default' }, spec: jobSpec };
  return hub.store.create(job);
}

function sync(name = 'batch'): void {
  controller.reconcile(`default/${name}`);
}

function podsOf(store: ObjectStore, job: string): StoredObject[] {
  return store.list('Pod', { namespace: 'default' }).items.filter((p) => p.metadata.labels?.[JOB_NAME_LABEL] === job);
}

function phaseOf(p: StoredObject): PodPhase {
  return (p.status as PodStatus).phase;
}

function activePods(job = 'batch'): StoredObject[] {
  return podsOf(hub.store, job).filter((p) => phaseOf(p) !== 'Succeeded' && phaseOf(p) !== 'Failed');
}

function status(job = 'batch'): JobStatus {
  return (hub.store.get('Job', 'default', job)?.status as JobStatus | undefined) ?? {};
}

function condition(type: string, job = 'batch') {
  return status(job).conditions?.find((c) => c.type === type);
}

/** Writes a pod's status as the agent reports it: one container, in the state its phase implies. */
function report(pod: StoredObject, phase: PodPhase, o: { finishedAt?: string; restartCount?: number } = {}): void {
  const state =
    phase === 'Succeeded' || phase === 'Failed'
      ? { terminated: { exitCode: phase === 'Failed' ? 1 : 0, reason: phase === 'Failed' ? 'Error' : 'Completed', finishedAt: o.finishedAt ?? new Date(clock).toISOString() } }
      : phase === 'Running'
        ? { running: {} }
        : { waiting: { reason: 'ContainerCreating' } };
  const podStatus: PodStatus = { phase, containerStatuses: [{ name: 'main', image: IMAGE, ready: phase === 'Running', restartCount: o.restartCount ?? 0, state }] };
  hub.store.updateStatus('Pod', 'default', pod.metadata.name, podStatus);
}

/** Every active pod of the Job finishes with `phase`, then the controller looks again. */
function finishAll(phase: 'Succeeded' | 'Failed', job = 'batch'): void {
  for (const p of activePods(job)) report(p, phase);
  sync(job);
}

describe('a Job runs its pods to completion', () => {
  it('creates one unbound pod, owned and labelled as Kubernetes labels it', () => {
    const job = createJob('batch');
    sync();
    const [pod, ...others] = podsOf(hub.store, 'batch');
    expect(others).toEqual([]);
    expect(pod!.metadata.name).toMatch(/^batch-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    expect(pod!.metadata.labels).toEqual({ app: 'batch', [JOB_NAME_LABEL]: 'batch', [CONTROLLER_UID_LABEL]: job.metadata.uid });
    expect(pod!.metadata.ownerReferences).toEqual([{ apiVersion: 'flotilla/v1', kind: 'Job', name: 'batch', uid: job.metadata.uid, controller: true }]);
    expect((pod!.spec as PodSpec).nodeName).toBeUndefined();
    expect(pod!.spec).toEqual(spec().template.spec);
    expect(status()).toMatchObject({ active: 1, succeeded: 0, failed: 0, startTime: new Date(START).toISOString() });
    expect(eventsAbout(hub.store, 'Job', 'batch')).toEqual([`Normal SuccessfulCreate: Created pod: ${pod!.metadata.name}`]);
    // Looking again changes nothing.
    sync();
    expect(podsOf(hub.store, 'batch')).toHaveLength(1);
  });

  it('completes when its pod succeeds, and keeps the finished pod', () => {
    createJob('batch');
    sync();
    clock += 5_000;
    finishAll('Succeeded');
    expect(condition('Complete')).toMatchObject({ status: 'True' });
    expect(status()).toMatchObject({ active: 0, succeeded: 1, failed: 0, completionTime: new Date(clock).toISOString() });
    expect(podsOf(hub.store, 'batch').map(phaseOf)).toEqual(['Succeeded']);
    expect(eventsAbout(hub.store, 'Job', 'batch')).toContain('Normal Completed: Job completed');
  });

  it('runs at most parallelism pods, and no more than the completions still needed', () => {
    createJob('batch', spec({ parallelism: 2, completions: 5 }));
    const activeCounts: number[] = [];
    for (let round = 0; round < 10; round++) {
      sync();
      if (condition('Complete')) break;
      activeCounts.push(activePods().length);
      // One pod finishes per round.
      report(activePods()[0]!, 'Succeeded');
    }
    expect(activeCounts).toEqual([2, 2, 2, 2, 1]);
    expect(condition('Complete')?.status).toBe('True');
    expect(status()).toMatchObject({ succeeded: 5, active: 0 });
    expect(podsOf(hub.store, 'batch')).toHaveLength(5);
  });

  it('as a work queue (parallelism without completions) starts no pod after the first success and completes when all have finished', () => {
    createJob('batch', spec({ parallelism: 3 }));
    sync();
    expect(activePods()).toHaveLength(3);
    const [first, second, third] = activePods();
    report(first!, 'Succeeded');
    sync();
    expect(activePods()).toHaveLength(2);
    expect(condition('Complete')).toBeUndefined();
    report(second!, 'Succeeded');
    report(third!, 'Succeeded');
    sync();
    expect(condition('Complete')?.status).toBe('True');
    expect(podsOf(hub.store, 'batch')).toHaveLength(3);
  });

  it('deletes its pods, finished ones too, when it is deleted', () => {
    createJob('batch', spec({ parallelism: 2, completions: 3 }));
    sync();
    report(activePods()[0]!, 'Succeeded');
    sync();
    expect(podsOf(hub.store, 'batch')).toHaveLength(3);
    hub.store.delete('Job', 'default', 'batch');
    sync();
    expect(podsOf(hub.store, 'batch')).toEqual([]);
  });

  it('counts only pods it controls: not a look-alike pod, not the pods of an earlier Job of the same name', () => {
    hub.store.create(podObject({ name: 'look-alike', labels: { app: 'batch', [JOB_NAME_LABEL]: 'batch' } }));
    const first = createJob('batch');
    sync();
    hub.store.delete('Job', 'default', 'batch');
    const second = createJob('batch');
    sync();
    const pods = podsOf(hub.store, 'batch');
    expect(pods.filter((p) => p.metadata.name !== 'look-alike').map((p) => p.metadata.labels?.[CONTROLLER_UID_LABEL])).toEqual([second.metadata.uid]);
    expect(first.metadata.uid).not.toBe(second.metadata.uid);
    expect(hub.store.get('Pod', 'default', 'look-alike')).toBeDefined();
    expect(status().active).toBe(1);
  });
});

describe('a Job that fails', () => {
  it('retries after a back-off of 10 s, doubling, and fails with BackoffLimitExceeded once failures pass backoffLimit', () => {
    createJob('batch', spec({ backoffLimit: 2 }));
    sync();
    finishAll('Failed');
    // The first retry waits 10 s after the failure.
    expect(activePods()).toEqual([]);
    expect(controller.dueAt('default/batch')).toBe(clock + 10_000);
    clock += 9_000;
    sync();
    expect(activePods()).toEqual([]);
    clock += 1_000;
    sync();
    expect(activePods()).toHaveLength(1);
    finishAll('Failed');
    // Two failures in a row: 20 s.
    expect(controller.dueAt('default/batch')).toBe(clock + 20_000);
    clock += 20_000;
    sync();
    finishAll('Failed');
    expect(condition('Failed')).toMatchObject({ status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' });
    expect(status()).toMatchObject({ failed: 3, succeeded: 0, active: 0 });
    const events = eventsAbout(hub.store, 'Job', 'batch');
    expect(events).toContain('Warning BackoffLimitExceeded: Job has reached the specified backoff limit');
    // One event per wait, however often the Job was looked at during it.
    expect(events.filter((e) => e.startsWith('Normal BackOff')).sort()).toEqual(['Normal BackOff: Waiting 10s before the next pod (1 failed in a row)', 'Normal BackOff: Waiting 20s before the next pod (2 failed in a row)']);
    expect(hub.store.list('Event').items.filter((e) => e.reason === 'BackOff').map((e) => e.count)).toEqual([1, 1]);
    // Nothing more starts, and the failed pods stay for their logs.
    clock += 600_000;
    sync();
    expect(podsOf(hub.store, 'batch').map(phaseOf)).toEqual(['Failed', 'Failed', 'Failed']);
  });

  it('stops its running pods when it fails', () => {
    createJob('batch', spec({ parallelism: 3, completions: 3, backoffLimit: 0 }));
    sync();
    const [failing, ...running] = activePods();
    for (const p of running) report(p, 'Running');
    report(failing!, 'Failed');
    sync();
    expect(condition('Failed')?.reason).toBe('BackoffLimitExceeded');
    expect(podsOf(hub.store, 'batch').map((p) => p.metadata.name)).toEqual([failing!.metadata.name]);
  });

  it('with restartPolicy OnFailure counts container restarts against the backoffLimit', () => {
    createJob('batch', spec({ restartPolicy: 'OnFailure', backoffLimit: 3 }));
    sync();
    const [pod] = activePods();
    report(pod!, 'Running', { restartCount: 2 });
    sync();
    expect(condition('Failed')).toBeUndefined();
    report(pod!, 'Running', { restartCount: 3 });
    sync();
    expect(condition('Failed')).toMatchObject({ status: 'True', reason: 'BackoffLimitExceeded' });
    expect(podsOf(hub.store, 'batch')).toEqual([]);
  });

  it('waits no longer than its cap: 6 minutes by default', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 40].map((n) => backoffDelay(n, 10_000, 360_000))).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 360_000, 360_000]);
  });

  it('measures the back-off from when the hub saw the failure when the device clock runs ahead', () => {
    createJob('batch');
    sync();
    report(activePods()[0]!, 'Failed', { finishedAt: '2031-06-01T00:00:00Z' });
    sync();
    expect(controller.dueAt('default/batch')).toBe(clock + 10_000);
    clock += 10_000;
    sync();
    expect(activePods()).toHaveLength(1);
  });

  it('fails with DeadlineExceeded after activeDeadlineSeconds and stops its pods', () => {
    createJob('batch', spec({ activeDeadlineSeconds: 30 }));
    sync();
    report(activePods()[0]!, 'Running');
    sync();
    expect(controller.dueAt('default/batch')).toBe(START + 30_000);
    clock = START + 29_999;
    sync();
    expect(condition('Failed')).toBeUndefined();
    clock = START + 30_000;
    sync();
    expect(condition('Failed')).toMatchObject({ status: 'True', reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' });
    expect(podsOf(hub.store, 'batch')).toEqual([]);
    expect(eventsAbout(hub.store, 'Job', 'batch')).toContain('Warning DeadlineExceeded: Job was active longer than specified deadline');
  });
});

describe('a Job after it finishes, and a suspended Job', () => {
  it('is deleted with its pods ttlSecondsAfterFinished after it finished', () => {
    createJob('batch', spec({ ttlSecondsAfterFinished: 60 }));
    sync();
    clock += 1_000;
    finishAll('Succeeded');
    const finishedAt = clock;
    expect(controller.dueAt('default/batch')).toBe(finishedAt + 60_000);
    clock = finishedAt + 59_000;
    sync();
    expect(hub.store.get('Job', 'default', 'batch')).toBeDefined();
    clock = finishedAt + 60_000;
    sync();
    expect(hub.store.get('Job', 'default', 'batch')).toBeUndefined();
    expect(podsOf(hub.store, 'batch')).toEqual([]);
    expect(controller.dueAt('default/batch')).toBeUndefined();
    expect(eventsAbout(hub.store, 'Job', 'batch')).toContain('Normal Deleted: Deleted job default/batch and its pods 60s after it finished (ttlSecondsAfterFinished)');
  });

  it('starts no pod while suspended, and starts them on resume with a fresh deadline', () => {
    createJob('batch', spec({ suspend: true, activeDeadlineSeconds: 30 }));
    sync();
    expect(podsOf(hub.store, 'batch')).toEqual([]);
    expect(condition('Suspended')).toMatchObject({ status: 'True', reason: 'JobSuspended' });
    expect(controller.dueAt('default/batch')).toBeUndefined();
    clock += 120_000;
    hub.store.mutate('Job', 'default', 'batch', (j) => ({ ...j, spec: { ...(j.spec as JobSpec), suspend: false } }));
    sync();
    expect(activePods()).toHaveLength(1);
    expect(condition('Suspended')).toMatchObject({ status: 'False', reason: 'JobResumed' });
    expect(status().startTime).toBe(new Date(clock).toISOString());
    expect(controller.dueAt('default/batch')).toBe(clock + 30_000);
    expect(eventsAbout(hub.store, 'Job', 'batch')).toEqual(expect.arrayContaining(['Normal Suspended: Job suspended', 'Normal Resumed: Job resumed']));
  });

  it('deletes its running pods when suspended, and keeps the finished ones', () => {
    createJob('batch', spec({ parallelism: 2, completions: 4 }));
    sync();
    const [done, running] = activePods();
    report(done!, 'Succeeded');
    report(running!, 'Running');
    sync();
    hub.store.mutate('Job', 'default', 'batch', (j) => ({ ...j, spec: { ...(j.spec as JobSpec), suspend: true } }));
    sync();
    expect(podsOf(hub.store, 'batch').map((p) => p.metadata.name)).toEqual([done!.metadata.name]);
    expect(status()).toMatchObject({ active: 0, succeeded: 1 });
    expect(condition('Suspended')?.status).toBe('True');
  });

  it('forgets its timers when deleted and when stopped', () => {
    createJob('batch', spec({ activeDeadlineSeconds: 30 }));
    sync();
    expect(controller.dueAt('default/batch')).toBe(START + 30_000);
    hub.store.delete('Job', 'default', 'batch');
    sync();
    expect(controller.dueAt('default/batch')).toBeUndefined();
    createJob('other', spec({ activeDeadlineSeconds: 30 }));
    sync('other');
    controller.stop();
    expect(controller.dueAt('default/other')).toBeUndefined();
  });
});

describe('the Job controller on its own', () => {
  it('works Jobs as their pods change, through its watches', async () => {
    controller.start();
    createJob('batch');
    await controller.queue.idle();
    const [pod] = podsOf(hub.store, 'batch');
    report(pod!, 'Succeeded');
    await controller.queue.idle();
    expect(condition('Complete')?.status).toBe('True');
  });
});
