import { CronSchedule, timeZoneProblem } from '../../shared/cron/schedule.js';
import type { CronJobSpec, CronJobStatus, JobStatus } from '../../shared/resources/job.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { Controller, ownerKey, type ControllerContext } from './controller.js';
import { MAX_MISSED_START_TIMES, mostRecentUnmet } from './cron-missed.js';
import { finishedCondition } from './job-pods.js';
import { KeyTimers } from './job-timers.js';
import { objectKey, splitKey } from './queue.js';

/** Kubernetes' annotation for the time a CronJob's Job was scheduled for. */
export const SCHEDULED_TIME_ANNOTATION = 'batch.kubernetes.io/cronjob-scheduled-timestamp';

export interface CronJobControllerOptions {
  /** The controller's clock (ms since the epoch); tests pass their own. */
  now?: () => number;
}

/**
 * The name of the Job for a scheduled time: minutes since the epoch, as Kubernetes names them,
 * or seconds for a schedule to the second. The name is the guard against running a time twice:
 * whatever happens to the hub in between, a second create for the same time finds the first.
 */
export function jobNameFor(cronJobName: string, scheduledMs: number, seconds: boolean): string {
  return `${cronJobName}-${Math.floor(scheduledMs / (seconds ? 1000 : 60_000))}`;
}

/**
 * Creates Jobs on a cron schedule, as Kubernetes' CronJob controller (v2) does: each reconcile
 * finds the most recent schedule time not yet acted on, starts a Job for it as the
 * concurrencyPolicy allows, keeps the history limits, and sleeps until the next schedule time.
 * After the hub was down, at most one missed run is started (the latest, and only if within
 * startingDeadlineSeconds). A run that Forbid held back starts when the running Job finishes,
 * if it is still within startingDeadlineSeconds, as in Kubernetes.
 */
export class CronJobController extends Controller {
  private readonly now: () => number;
  private readonly timers: KeyTimers;
  /** The last message of each reason noted per CronJob, so that a repeated look at the same state records it once. */
  private readonly noted = new Map<string, Map<string, string>>();

  constructor(ctx: ControllerContext, opts: CronJobControllerOptions = {}) {
    super('cronjob', ctx);
    this.now = opts.now ?? Date.now;
    this.timers = new KeyTimers((key) => this.queue.add(key), this.now);
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => string | undefined][] {
    return [
      [{ kind: 'CronJob' }, (e) => objectKey(e.object.metadata.namespace, e.object.metadata.name)],
      [{ kind: 'Job' }, (e) => ownerKey(e.object, 'CronJob')],
    ];
  }

  protected initialKeys(): Iterable<string> {
    return this.keysOfKind('CronJob');
  }

  override stop(): void {
    super.stop();
    this.timers.clearAll();
  }

  /** When the CronJob of `key` is next due to run, if it is. */
  dueAt(key: string): number | undefined {
    return this.timers.dueAt(key);
  }

  reconcile(key: string): void {
    const { namespace, name } = splitKey(key);
    const cronJob = this.store.get('CronJob', namespace, name);
    if (!cronJob) {
      this.timers.clear(key);
      this.noted.delete(key);
      // A deleted CronJob takes its Jobs with it; the Job controller then removes their pods.
      const owned = this.store.list('Job', { namespace, filter: (j) => j.metadata.ownerReferences?.some((o) => o.controller && o.kind === 'CronJob' && o.name === name) ?? false });
      this.store.transaction(() => owned.items.forEach((j) => this.deleteJob(j)));
      return;
    }
    const wakeAt = this.store.transaction(() => this.sync(key, cronJob));
    if (wakeAt === undefined) this.timers.clear(key);
    else this.timers.set(key, wakeAt);
  }

  private sync(key: string, cronJob: StoredObject): number | undefined {
    const spec = cronJob.spec as CronJobSpec;
    const prev = (cronJob.status as CronJobStatus | undefined) ?? {};
    const now = this.now();
    const namespace = cronJob.metadata.namespace ?? 'default';
    const jobs = this.store.list('Job', { namespace, filter: (j) => j.metadata.ownerReferences?.some((o) => o.controller && o.uid === cronJob.metadata.uid) ?? false }).items;

    let active = jobs.filter((j) => !finishedCondition(j.status as JobStatus | undefined));
    let lastSuccessful = prev.lastSuccessfulTime;
    for (const job of jobs) {
      const done = finishedCondition(job.status as JobStatus | undefined);
      if (!done) continue;
      if (prev.active?.some((a) => a.uid === job.metadata.uid)) this.events.normal(cronJob, 'SawCompletedJob', `Saw completed job: ${job.metadata.name}, status: ${done.type}`);
      const completed = (job.status as JobStatus).completionTime;
      if (done.type === 'Complete' && completed && (!lastSuccessful || Date.parse(completed) > Date.parse(lastSuccessful))) lastSuccessful = completed;
    }
    this.trimHistory(cronJob, spec, jobs);
    const status: CronJobStatus = { ...prev };
    if (lastSuccessful) status.lastSuccessfulTime = lastSuccessful;
    const write = () => {
      if (active.length > 0) status.active = active.map((j) => ({ kind: 'Job' as const, name: j.metadata.name, namespace, uid: j.metadata.uid }));
      else delete status.active;
      this.store.updateStatus('CronJob', namespace, cronJob.metadata.name, status);
    };

    const parsed = CronSchedule.parse(spec.schedule, spec.timeZone);
    if (!parsed.schedule) {
      // Refused at apply time; an object stored before that check (or a zone this hub's
      // time-zone data lacks) is reported and left alone.
      const zoneBad = spec.timeZone !== undefined && timeZoneProblem(spec.timeZone) !== undefined;
      this.noteOnce(key, cronJob, 'Warning', zoneBad ? 'UnknownTimeZone' : 'UnparseableSchedule', zoneBad ? `invalid timeZone: ${spec.timeZone}: ${parsed.error}` : `unparseable schedule: ${spec.schedule}: ${parsed.error}`);
      write();
      return undefined;
    }
    const schedule = parsed.schedule;
    if (spec.suspend) {
      write();
      return undefined;
    }

    const lastScheduled = Date.parse(prev.lastScheduleTime ?? cronJob.metadata.creationTimestamp);
    const unmet = mostRecentUnmet(schedule, lastScheduled, now, spec.startingDeadlineSeconds);
    if (unmet.missed > MAX_MISSED_START_TIMES) {
      this.noteOnce(key, cronJob, 'Warning', 'TooManyMissedTimes', `too many missed start times (more than ${MAX_MISSED_START_TIMES}); only the latest is considered. Set or decrease .spec.startingDeadlineSeconds or check clock skew`);
    }
    if (spec.startingDeadlineSeconds !== undefined) {
      // Times that passed before the deadline window are not started (Kubernetes' MissSchedule).
      const late = mostRecentUnmet(schedule, lastScheduled, now - spec.startingDeadlineSeconds * 1000);
      if (late.scheduledAt !== undefined) this.noteOnce(key, cronJob, 'Warning', 'MissSchedule', `Missed scheduled time to start a job: ${iso(late.scheduledAt)} (startingDeadlineSeconds ${spec.startingDeadlineSeconds})`);
    }

    const at = unmet.scheduledAt;
    if (at !== undefined) {
      const jobName = jobNameFor(cronJob.metadata.name, at, schedule.hasSeconds);
      const existing = this.store.get('Job', namespace, jobName);
      const policy = spec.concurrencyPolicy ?? 'Allow';
      if (existing) {
        // Made for this time already (the status write after it was lost, or another hub's).
        if (!existing.metadata.ownerReferences?.some((o) => o.controller && o.uid === cronJob.metadata.uid)) {
          this.noteOnce(key, cronJob, 'Warning', 'FailedCreate', `Error creating job: job ${jobName} already exists and is not controlled by this CronJob`);
        }
        status.lastScheduleTime = iso(at);
      } else if (policy === 'Forbid' && active.length > 0) {
        this.noteOnce(key, cronJob, 'Normal', 'JobAlreadyActive', `Not starting job for ${iso(at)} because prior execution is running and concurrency policy is Forbid`);
      } else {
        if (policy === 'Replace') {
          for (const job of active) {
            this.deleteJob(job);
            this.events.normal(cronJob, 'SuccessfulDelete', `Deleted job ${job.metadata.name} (concurrency policy Replace)`);
          }
          active = [];
        }
        active.push(this.createJob(cronJob, spec, jobName, at));
        const catchUp = unmet.missed > 1 ? ` (the most recent of ${unmet.missed > MAX_MISSED_START_TIMES ? `more than ${MAX_MISSED_START_TIMES}` : unmet.missed} missed start times)` : '';
        this.events.normal(cronJob, 'SuccessfulCreate', `Created job ${jobName}${catchUp}`);
        status.lastScheduleTime = iso(at);
      }
    }
    write();
    return schedule.next(now);
  }

  private createJob(cronJob: StoredObject, spec: CronJobSpec, name: string, scheduledMs: number): StoredObject {
    const template = spec.jobTemplate;
    const labels = template.metadata?.labels;
    return this.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Job',
      metadata: {
        name,
        namespace: cronJob.metadata.namespace ?? 'default',
        ...(labels && Object.keys(labels).length > 0 ? { labels: { ...labels } } : {}),
        annotations: { ...(template.metadata?.annotations ?? {}), [SCHEDULED_TIME_ANNOTATION]: iso(scheduledMs) },
        ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'CronJob', name: cronJob.metadata.name, uid: cronJob.metadata.uid, controller: true }],
      },
      spec: template.spec,
    });
  }

  /** Keeps the newest successfulJobsHistoryLimit (3) Complete and failedJobsHistoryLimit (1) Failed Jobs. */
  private trimHistory(cronJob: StoredObject, spec: CronJobSpec, jobs: StoredObject[]): void {
    const limits = { Complete: spec.successfulJobsHistoryLimit ?? 3, Failed: spec.failedJobsHistoryLimit ?? 1 };
    for (const type of ['Complete', 'Failed'] as const) {
      const finished = jobs.filter((j) => finishedCondition(j.status as JobStatus | undefined)?.type === type).sort((a, b) => scheduledTimeOf(a) - scheduledTimeOf(b));
      for (const job of finished.slice(0, Math.max(0, finished.length - limits[type]))) {
        this.deleteJob(job);
        this.events.normal(cronJob, 'SuccessfulDelete', `Deleted job ${job.metadata.name} (${type === 'Complete' ? 'successfulJobsHistoryLimit' : 'failedJobsHistoryLimit'} ${limits[type]})`);
      }
    }
  }

  private deleteJob(job: StoredObject): void {
    try {
      this.store.delete('Job', job.metadata.namespace ?? 'default', job.metadata.name);
    } catch {
      // already gone
    }
  }

  private noteOnce(key: string, cronJob: StoredObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
    let byReason = this.noted.get(key);
    if (!byReason) this.noted.set(key, (byReason = new Map()));
    if (byReason.get(reason) === message) return;
    byReason.set(reason, message);
    this.events.record(cronJob, type, reason, message);
  }
}

function scheduledTimeOf(job: StoredObject): number {
  const at = Date.parse(job.metadata.annotations?.[SCHEDULED_TIME_ANNOTATION] ?? '');
  return Number.isNaN(at) ? Date.parse(job.metadata.creationTimestamp) : at;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
