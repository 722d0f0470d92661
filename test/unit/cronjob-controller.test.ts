import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CronJobController, jobNameFor, SCHEDULED_TIME_ANNOTATION } from '../../hub/controllers/cronjob.js';
import type { StoredObject } from '../../hub/store/types.js';
import type { CronJobSpec, CronJobStatus, JobSpec, JobStatus } from '../../shared/resources/job.js';
import { eventsAbout, testHub, type TestHub } from './builders.js';

const KEY = 'default/tick';
const MINUTE = 60_000;

let hub: TestHub;
let controller: CronJobController;
let clock: number;

beforeEach(() => {
  hub = testHub();
  controller = new CronJobController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
});
afterEach(() => {
  controller.stop();
  hub.db.close();
});

const jobTemplate: { metadata: { labels: Record<string, string> }; spec: JobSpec } = {
  metadata: { labels: { app: 'tick' } },
  spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'flotilla-test/busybox:1', command: ['true'] }] } } },
};

/** Creates CronJob `tick` and sets the clock to its creation time; returns that time. */
function createCronJob(spec: Partial<CronJobSpec> & { schedule: string }, name = 'tick'): number {
  const cj = hub.store.create({ apiVersion: 'flotilla/v1', kind: 'CronJob', metadata: { name, namespace: 'default' }, spec: { jobTemplate, ...spec } });
  clock = Date.parse(cj.metadata.creationTimestamp);
  return clock;
}

function sync(name = 'tick'): void {
  controller.reconcile(`default/${name}`);
}

function jobs(): StoredObject[] {
  return hub.store.list('Job', { namespace: 'default' }).items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name, undefined, { numeric: true }));
}

function jobNames(): string[] {
  return jobs().map((j) => j.metadata.name);
}

function cronStatus(): CronJobStatus {
  return (hub.store.get('CronJob', 'default', 'tick')?.status as CronJobStatus | undefined) ?? {};
}

function setSpec(patch: Partial<CronJobSpec>): void {
  hub.store.mutate('CronJob', 'default', 'tick', (cj) => ({ ...cj, spec: { ...(cj.spec as CronJobSpec), ...patch } }));
}

/** Marks a Job finished as the Job controller would. */
function finish(name: string, type: 'Complete' | 'Failed'): void {
  const at = new Date(clock).toISOString();
  const status: JobStatus = { active: 0, conditions: [{ type, status: 'True', lastTransitionTime: at }], ...(type === 'Complete' ? { succeeded: 1, completionTime: at } : { failed: 1 }) };
  hub.store.updateStatus('Job', 'default', name, status);
}

function nextMinute(t: number): number {
  return Math.floor(t / MINUTE) * MINUTE + MINUTE;
}

/** Moves the clock to the next fire time the controller is waiting for, and lets it act. */
function fire(): number {
  const due = controller.dueAt(KEY);
  expect(due, 'the CronJob waits for its next run').toBeDefined();
  clock = due!;
  sync();
  return clock;
}

describe('a CronJob on its schedule', () => {
  it('creates a Job per fire time, named for the minute, owned and annotated, and waits for the next', () => {
    const created = createCronJob({ schedule: '* * * * *' });
    sync();
    expect(jobs()).toEqual([]);
    expect(controller.dueAt(KEY)).toBe(nextMinute(created));
    const at = fire();
    const cj = hub.store.get('CronJob', 'default', 'tick')!;
    const [job] = jobs();
    expect(job!.metadata.name).toBe(`tick-${at / MINUTE}`);
    expect(job!.metadata.labels).toEqual({ app: 'tick' });
    expect(job!.metadata.annotations).toEqual({ [SCHEDULED_TIME_ANNOTATION]: new Date(at).toISOString() });
    expect(job!.metadata.ownerReferences).toEqual([{ apiVersion: 'flotilla/v1', kind: 'CronJob', name: 'tick', uid: cj.metadata.uid, controller: true }]);
    expect(job!.spec).toEqual(jobTemplate.spec);
    expect(cronStatus()).toEqual({ active: [{ kind: 'Job', name: job!.metadata.name, namespace: 'default', uid: job!.metadata.uid }], lastScheduleTime: new Date(at).toISOString() });
    expect(eventsAbout(hub.store, 'CronJob', 'tick')).toEqual([`Normal SuccessfulCreate: Created job ${job!.metadata.name}`]);
    expect(controller.dueAt(KEY)).toBe(at + MINUTE);
  });

  it('names Jobs of a schedule with seconds by the second, in increasing order', () => {
    createCronJob({ schedule: '*/5 * * * * *' });
    sync();
    const times = [fire(), fire(), fire()];
    expect(times[1]! - times[0]!).toBe(5_000);
    expect(jobNames()).toEqual(times.map((t) => `tick-${t / 1000}`));
    expect(jobNameFor('tick', times[0]!, true)).toBe(`tick-${times[0]! / 1000}`);
  });

  it('never makes a second Job for the same time, even when its status was lost', () => {
    createCronJob({ schedule: '* * * * *' });
    sync();
    fire();
    sync();
    hub.store.updateStatus('CronJob', 'default', 'tick', undefined);
    const fresh = new CronJobController({ store: hub.store, events: hub.events, log: hub.log }, { now: () => clock });
    try {
      fresh.reconcile(KEY);
    } finally {
      fresh.stop();
    }
    expect(jobs()).toHaveLength(1);
    expect(cronStatus().lastScheduleTime).toBe(new Date(clock).toISOString());
  });

  it('fires on the wall clock of its timeZone', () => {
    const created = createCronJob({ schedule: '0 9 * * *', timeZone: 'Asia/Kolkata' });
    sync();
    const due = controller.dueAt(KEY)!;
    // 09:00 in Kolkata is 03:30 UTC.
    expect(new Date(due).toISOString()).toMatch(/T03:30:00\.000Z$/);
    expect(due - created).toBeLessThanOrEqual(24 * 60 * MINUTE);
  });
});

describe('concurrencyPolicy', () => {
  it('Allow runs a new Job while the previous one is active', () => {
    createCronJob({ schedule: '* * * * *' });
    sync();
    fire();
    fire();
    expect(jobs()).toHaveLength(2);
    expect(cronStatus().active).toHaveLength(2);
  });

  it('Forbid skips a run while one is active, and starts the skipped one when it finishes', () => {
    createCronJob({ schedule: '* * * * *', concurrencyPolicy: 'Forbid' });
    sync();
    const first = fire();
    const skipped = fire();
    expect(jobNames()).toEqual([`tick-${first / MINUTE}`]);
    expect(eventsAbout(hub.store, 'CronJob', 'tick')).toContain(`Normal JobAlreadyActive: Not starting job for ${new Date(skipped).toISOString()} because prior execution is running and concurrency policy is Forbid`);
    clock += 10_000;
    finish(`tick-${first / MINUTE}`, 'Complete');
    sync();
    expect(jobNames()).toEqual([`tick-${first / MINUTE}`, `tick-${skipped / MINUTE}`]);
    expect(cronStatus().active?.map((a) => a.name)).toEqual([`tick-${skipped / MINUTE}`]);
  });

  it('Replace deletes the active Job and starts the new one', () => {
    createCronJob({ schedule: '* * * * *', concurrencyPolicy: 'Replace' });
    sync();
    const first = fire();
    const second = fire();
    expect(jobNames()).toEqual([`tick-${second / MINUTE}`]);
    expect(eventsAbout(hub.store, 'CronJob', 'tick')).toContain(`Normal SuccessfulDelete: Deleted job tick-${first / MINUTE} (concurrency policy Replace)`);
  });
});

describe('history and status', () => {
  it('keeps the newest successful and failed Jobs within their limits, and notes completions', () => {
    createCronJob({ schedule: '* * * * *', successfulJobsHistoryLimit: 2, failedJobsHistoryLimit: 1 });
    sync();
    const times = [fire(), fire(), fire(), fire(), fire()];
    const names = times.map((t) => `tick-${t / MINUTE}`);
    finish(names[0]!, 'Complete');
    finish(names[1]!, 'Failed');
    finish(names[2]!, 'Complete');
    finish(names[3]!, 'Failed');
    clock += 1_000;
    finish(names[4]!, 'Complete');
    sync();
    expect(jobNames()).toEqual([names[2], names[3], names[4]]);
    expect(cronStatus().active).toBeUndefined();
    expect(cronStatus().lastSuccessfulTime).toBe(new Date(clock).toISOString());
    const events = eventsAbout(hub.store, 'CronJob', 'tick');
    expect(events).toContain(`Normal SuccessfulDelete: Deleted job ${names[0]} (successfulJobsHistoryLimit 2)`);
    expect(events).toContain(`Normal SuccessfulDelete: Deleted job ${names[1]} (failedJobsHistoryLimit 1)`);
    expect(events).toContain(`Normal SawCompletedJob: Saw completed job: ${names[4]}, status: Complete`);
  });

  it('deletes its Jobs and forgets its timer when deleted', () => {
    createCronJob({ schedule: '* * * * *' });
    sync();
    fire();
    hub.store.delete('CronJob', 'default', 'tick');
    sync();
    expect(jobs()).toEqual([]);
    expect(controller.dueAt(KEY)).toBeUndefined();
  });

  it('reports a schedule it cannot read (stored before validation) and waits for nothing', () => {
    createCronJob({ schedule: '* * * * *' });
    hub.store.mutate('CronJob', 'default', 'tick', (cj) => ({ ...cj, spec: { ...(cj.spec as CronJobSpec), schedule: '99 * * * *' } }));
    sync();
    expect(eventsAbout(hub.store, 'CronJob', 'tick')).toEqual(["Warning UnparseableSchedule: unparseable schedule: 99 * * * *: minute field '99': 99 is out of range 0-59"]);
    expect(controller.dueAt(KEY)).toBeUndefined();
  });
});

describe('missed runs and suspend', () => {
  /** The CronJob as a hub that went down `minutesAgo` after a run would find it on start. */
  function lastRunMinutesAgo(minutes: number): number {
    const lastRun = Math.floor(clock / MINUTE) * MINUTE - minutes * MINUTE;
    hub.store.updateStatus('CronJob', 'default', 'tick', { lastScheduleTime: new Date(lastRun).toISOString() } satisfies CronJobStatus);
    return lastRun;
  }

  it('starts only the most recent missed run', () => {
    createCronJob({ schedule: '* * * * *' });
    lastRunMinutesAgo(10);
    sync();
    const latest = Math.floor(clock / MINUTE) * MINUTE;
    expect(jobNames()).toEqual([`tick-${latest / MINUTE}`]);
    expect(eventsAbout(hub.store, 'CronJob', 'tick')).toEqual([`Normal SuccessfulCreate: Created job tick-${latest / MINUTE} (the most recent of 10 missed start times)`]);
  });

  it('warns when more than 100 were missed and still starts only the latest', () => {
    createCronJob({ schedule: '* * * * *' });
    lastRunMinutesAgo(3 * 60);
    sync();
    expect(jobs()).toHaveLength(1);
    expect(eventsAbout(hub.store, 'CronJob', 'tick')).toContain('Warning TooManyMissedTimes: too many missed start times (more than 100); only the latest is considered. Set or decrease .spec.startingDeadlineSeconds or check clock skew');
  });

  it('starts no missed run older than startingDeadlineSeconds', () => {
    createCronJob({ schedule: '*/10 * * * *', startingDeadlineSeconds: 30 });
    // The last fire time is at least 30 s ago unless the clock sits just past a ten-minute mark.
    clock = Math.floor(clock / (10 * MINUTE)) * 10 * MINUTE + 5 * MINUTE;
    const lastRun = lastRunMinutesAgo(15);
    sync();
    expect(jobs()).toEqual([]);
    expect(eventsAbout(hub.store, 'CronJob', 'tick')).toEqual([`Warning MissSchedule: Missed scheduled time to start a job: ${new Date(lastRun + 10 * MINUTE).toISOString()} (startingDeadlineSeconds 30)`]);
    // Within the deadline it starts.
    clock = lastRun + 20 * MINUTE + 20_000;
    sync();
    expect(jobNames()).toEqual([`tick-${(lastRun + 20 * MINUTE) / MINUTE}`]);
  });

  it('creates nothing while suspended, and on resume catches up with one run', () => {
    createCronJob({ schedule: '* * * * *', suspend: true });
    sync();
    expect(controller.dueAt(KEY)).toBeUndefined();
    clock += 5 * MINUTE;
    sync();
    expect(jobs()).toEqual([]);
    setSpec({ suspend: false });
    sync();
    expect(jobs()).toHaveLength(1);
    expect(controller.dueAt(KEY)).toBe(nextMinute(clock));
  });

  it('clears every timer on stop', () => {
    createCronJob({ schedule: '* * * * *' });
    createCronJob({ schedule: '*/5 * * * * *' }, 'fast');
    sync();
    sync('fast');
    expect(controller.dueAt(KEY)).toBeDefined();
    controller.stop();
    expect(controller.dueAt(KEY)).toBeUndefined();
    expect(controller.dueAt('default/fast')).toBeUndefined();
  });
});
