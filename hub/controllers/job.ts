import { randomUUID } from 'node:crypto';
import { selectorFromMap } from '../../shared/labels/selector.js';
import type { JobSpec, JobStatus } from '../../shared/resources/job.js';
import type { PodStatus } from '../../shared/resources/pod.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { Controller, ownerKey, type ControllerContext } from './controller.js';
import {
  backoffDelay,
  CONTROLLER_UID_LABEL,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_LIMIT,
  DEFAULT_BACKOFF_MAX_MS,
  deletionOrder,
  finishedAt,
  finishedCondition,
  isActive,
  isComplete,
  JOB_NAME_LABEL,
  podPhase,
  restartsOf,
  wantedActive,
  withCondition,
} from './job-pods.js';
import { ControllerExpectations, EXPECTATIONS_TIMEOUT_MS } from './expectations.js';
import { KeyTimers } from './job-timers.js';
import { stableSuffix } from './names.js';
import { objectKey, splitKey } from './queue.js';

/** The most pods one pass creates, as Kubernetes' Job controller (MaxPodCreateDeletePerSync). */
export const MAX_PODS_PER_PASS = 500;

export interface JobControllerOptions {
  /** The controller's clock (ms since the epoch); tests pass their own. */
  now?: () => number;
  /** The delay before the pod after a first failure, doubled for each further one (Kubernetes: 10 s). */
  backoffBaseMs?: number;
  /** The longest such delay (6 min). */
  backoffMaxMs?: number;
}

/**
 * Runs pods to completion, as Kubernetes' Job controller does for non-indexed Jobs: at most
 * `parallelism` pods at once, until `completions` of them have succeeded (Complete), or until
 * more than `backoffLimit` have failed (Failed, BackoffLimitExceeded) or the Job has been active
 * longer than `activeDeadlineSeconds` (Failed, DeadlineExceeded). A pod after a failure waits
 * 10 s, doubling per failure in a row, up to 6 min.
 *
 * Decisions worth knowing:
 * - Failures are counted from the Job's pods: a pod in phase Failed is one failure. With
 *   restartPolicy OnFailure a pod does not fail, its containers restart on the device; as in
 *   Kubernetes, the restarts of the pods still running count against the backoffLimit too
 *   (the Job fails once they reach it; with a limit of 0, at the first restart).
 * - Finished pods are kept until the Job is deleted, so their logs stay readable; they are the
 *   record the counts come from, and deleting one by hand takes it out of the counts. A running
 *   pod deleted by hand is replaced and not counted as a failure.
 * - Pods are created without a node; the scheduler binds them.
 * - ttlSecondsAfterFinished deletes the Job and its pods that long after it finished (Kubernetes'
 *   TTL-after-finished controller, here in the same loop).
 * - Controller expectations, as Kubernetes' Job controller: the pods a pass created or deleted
 *   must be seen back through the pod watch before the next pass creates or deletes more.
 */
export class JobController extends Controller {
  private readonly now: () => number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly timers: KeyTimers;
  /** When this hub first saw each failed pod: a bound on the device's clock for the back-off. */
  private readonly failureSeen = new Map<string, number>();
  /** The back-off end last recorded in an event, per Job uid: one event per wait. */
  private readonly announcedBackoff = new Map<string, number>();
  private readonly expectations: ControllerExpectations;
  /** The pods this pass of a key created and deleted, for its expectations. */
  private made = 0;
  private removed = 0;

  constructor(ctx: ControllerContext, opts: JobControllerOptions = {}) {
    super('job', ctx);
    this.now = opts.now ?? Date.now;
    this.backoffBaseMs = opts.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS;
    this.backoffMaxMs = opts.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    this.timers = new KeyTimers((key) => this.queue.add(key), this.now);
    this.expectations = new ControllerExpectations(this.now);
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => string | undefined][] {
    return [
      [{ kind: 'Job' }, (e) => objectKey(e.object.metadata.namespace, e.object.metadata.name)],
      [{ kind: 'Pod' }, (e) => ownerKey(e.object, 'Job')],
    ];
  }

  protected initialKeys(): Iterable<string> {
    return this.keysOfKind('Job');
  }

  override stop(): void {
    super.stop();
    this.timers.clearAll();
  }

  /** When the Job of `key` is next due to be looked at (deadline, back-off, TTL), if it is. */
  dueAt(key: string): number | undefined {
    return this.timers.dueAt(key);
  }

  reconcile(key: string): void {
    this.observePods('Job', this.expectations);
    const { namespace, name } = splitKey(key);
    const job = this.store.get('Job', namespace, name);
    // Pods of this name's Jobs, the current one's or an earlier one's of the same name.
    const named = this.store.list('Pod', {
      namespace,
      selector: selectorFromMap({ [JOB_NAME_LABEL]: name }),
      filter: (p) => p.metadata.ownerReferences?.some((o) => o.controller && o.kind === 'Job' && o.name === name) ?? false,
    }).items;
    if (!job) {
      // A deleted Job takes its pods with it (Kubernetes' garbage collector).
      this.timers.clear(key);
      this.expectations.forget(key);
      for (const p of named) for (const o of p.metadata.ownerReferences ?? []) this.announcedBackoff.delete(o.uid);
      this.store.transaction(() => named.forEach((p) => this.deletePod(p)));
      return;
    }
    // The Job's selector defaults to its controller-uid, which every pod it makes carries; a
    // selector given in the manifest must select the template's labels (checked at apply), so
    // it picks the same pods, and only pods this Job controls are ever counted.
    const mine = this.store.list('Pod', { namespace, selector: selectorFromMap({ [CONTROLLER_UID_LABEL]: job.metadata.uid }), filter: (p) => isControlledBy(p, job) }).items;
    this.made = 0;
    this.removed = 0;
    // While the last pass's pods are not seen back, this pass starts and stops no pods.
    const manage = this.expectations.satisfied(key);
    const wakeAt = this.store.transaction(() => {
      for (const p of named) if (!isControlledBy(p, job)) this.deletePod(p);
      const at = this.sync(job, mine, manage);
      if (manage) this.expectations.expect(key, this.made, this.removed);
      return at;
    });
    if (wakeAt === undefined) this.timers.clear(key);
    else this.timers.set(key, wakeAt);
  }

  /** Works one Job against its pods; returns when it is next due. */
  private sync(job: StoredObject, pods: StoredObject[], manage: boolean): number | undefined {
    const spec = job.spec as JobSpec;
    const prev = (job.status as JobStatus | undefined) ?? {};
    const now = this.now();
    const nowIso = new Date(now).toISOString();
    let active = pods.filter(isActive);
    const succeeded = pods.filter((p) => podPhase(p) === 'Succeeded');
    const failed = pods.filter((p) => podPhase(p) === 'Failed');
    for (const p of failed) if (!this.failureSeen.has(p.metadata.uid)) this.failureSeen.set(p.metadata.uid, now);
    const status: JobStatus = { ...prev, succeeded: succeeded.length, failed: failed.length };
    const write = () => this.store.updateStatus('Job', job.metadata.namespace, job.metadata.name, { ...status, active: active.length });

    const finished = finishedCondition(prev);
    if (finished) {
      this.announcedBackoff.delete(job.metadata.uid);
      // Nothing runs after the end (a pod created in a race, say).
      for (const p of active) this.deletePod(p, job, 'the Job has finished');
      active = [];
      write();
      return this.expireAfterFinish(job, spec, finished.type === 'Complete' ? prev.completionTime : finished.lastTransitionTime, now);
    }

    if (spec.suspend) {
      for (const p of active) this.deletePod(p, job, 'the Job is suspended');
      active = [];
      const suspended = prev.conditions?.some((c) => c.type === 'Suspended' && c.status === 'True');
      status.conditions = withCondition(prev.conditions, { type: 'Suspended', status: 'True', reason: 'JobSuspended', message: 'Job suspended' }, nowIso);
      // The deadline starts again on resume (Kubernetes resets startTime).
      delete status.startTime;
      if (!suspended) this.events.normal(job, 'Suspended', 'Job suspended');
      write();
      return undefined;
    }
    if (prev.conditions?.some((c) => c.type === 'Suspended' && c.status === 'True')) {
      status.conditions = withCondition(prev.conditions, { type: 'Suspended', status: 'False', reason: 'JobResumed', message: 'Job resumed' }, nowIso);
      status.startTime = nowIso;
      this.events.normal(job, 'Resumed', 'Job resumed');
    }
    status.startTime ??= nowIso;

    const backoffLimit = spec.backoffLimit ?? DEFAULT_BACKOFF_LIMIT;
    const restarts = spec.template.spec.restartPolicy === 'OnFailure' ? active.reduce((n, p) => n + restartsOf(p), 0) : 0;
    const tooManyRestarts = backoffLimit === 0 ? restarts > 0 : restarts >= backoffLimit;
    const deadlineAt = spec.activeDeadlineSeconds === undefined ? undefined : Date.parse(status.startTime) + spec.activeDeadlineSeconds * 1000;
    let failure: { reason: string; message: string } | undefined;
    if (failed.length > backoffLimit || tooManyRestarts) failure = { reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' };
    else if (deadlineAt !== undefined && now >= deadlineAt) failure = { reason: 'DeadlineExceeded', message: 'Job was active longer than specified deadline' };
    if (failure) {
      for (const p of active) this.deletePod(p, job, failure.reason);
      active = [];
      status.conditions = withCondition(status.conditions, { type: 'Failed', status: 'True', ...failure }, nowIso);
      this.events.warning(job, failure.reason, failure.message);
      write();
      return this.expireAfterFinish(job, spec, nowIso, now);
    }

    let wakeAt = deadlineAt;
    const want = wantedActive(spec, active.length, succeeded.length);
    if (!manage) {
      // The watch wakes the key when the last pass's pods are seen; this is the backstop.
      wakeAt = Math.min(wakeAt ?? Infinity, now + EXPECTATIONS_TIMEOUT_MS);
    } else if (active.length > want) {
      const extra = deletionOrder(active).slice(0, active.length - want);
      for (const p of extra) this.deletePod(p, job, 'more pods than needed');
      active = active.filter((p) => !extra.includes(p));
    } else if (active.length < want) {
      const backoff = this.backoff(succeeded, failed);
      if (backoff.readyAt > now) {
        wakeAt = Math.min(wakeAt ?? backoff.readyAt, backoff.readyAt);
        if (this.announcedBackoff.get(job.metadata.uid) !== backoff.readyAt) {
          this.announcedBackoff.set(job.metadata.uid, backoff.readyAt);
          this.events.normal(job, 'BackOff', `Waiting ${Math.round(backoff.delayMs / 1000)}s before the next pod (${backoff.failures} failed in a row)`);
        }
      } else {
        this.announcedBackoff.delete(job.metadata.uid);
        const count = Math.min(want - active.length, MAX_PODS_PER_PASS);
        for (let i = 0; i < count; i++) active.push(this.createPod(job, spec));
        // The rest in the next pass, once these are seen: a huge parallelism never holds the hub in one pass.
        if (active.length < want) wakeAt = now;
      }
    }

    if (isComplete(spec, active.length, succeeded.length)) {
      status.conditions = withCondition(status.conditions, { type: 'Complete', status: 'True', reason: 'CompletionsReached', message: 'Reached expected number of succeeded pods' }, nowIso);
      status.completionTime = nowIso;
      this.events.normal(job, 'Completed', 'Job completed');
      write();
      return this.expireAfterFinish(job, spec, nowIso, now);
    }
    write();
    return wakeAt;
  }

  /**
   * When the next pod may start after failures: 10 s after the latest failure, doubling for each
   * failure since the last success (Kubernetes' backoff record). The failure time is the
   * device's, but never later than when this hub first saw it, so a device clock that runs
   * ahead cannot hold the Job back.
   */
  private backoff(succeeded: StoredObject[], failed: StoredObject[]): { readyAt: number; delayMs: number; failures: number } {
    const lastSuccess = Math.max(Number.NEGATIVE_INFINITY, ...succeeded.map(finishedAt));
    const sinceSuccess = failed.filter((p) => finishedAt(p) > lastSuccess);
    if (sinceSuccess.length === 0) return { readyAt: Number.NEGATIVE_INFINITY, delayMs: 0, failures: 0 };
    const lastFailure = Math.max(...sinceSuccess.map((p) => Math.min(finishedAt(p), this.failureSeen.get(p.metadata.uid) ?? Number.POSITIVE_INFINITY)));
    const delayMs = backoffDelay(sinceSuccess.length, this.backoffBaseMs, this.backoffMaxMs);
    return { readyAt: lastFailure + delayMs, delayMs, failures: sinceSuccess.length };
  }

  /** ttlSecondsAfterFinished: deletes the Job and its pods when due, else says when that is. */
  private expireAfterFinish(job: StoredObject, spec: JobSpec, finishedIso: string | undefined, now: number): number | undefined {
    if (spec.ttlSecondsAfterFinished === undefined) return undefined;
    const finished = Date.parse(finishedIso ?? '');
    const expireAt = (Number.isNaN(finished) ? now : finished) + spec.ttlSecondsAfterFinished * 1000;
    if (now < expireAt) return expireAt;
    const ns = job.metadata.namespace ?? 'default';
    for (const p of this.store.list('Pod', { namespace: ns, selector: selectorFromMap({ [CONTROLLER_UID_LABEL]: job.metadata.uid }) }).items) this.deletePod(p);
    this.store.delete('Job', ns, job.metadata.name);
    this.events.normal(job, 'Deleted', `Deleted job ${ns}/${job.metadata.name} and its pods ${spec.ttlSecondsAfterFinished}s after it finished (ttlSecondsAfterFinished)`);
    return undefined;
  }

  private createPod(job: StoredObject, spec: JobSpec): StoredObject {
    const namespace = job.metadata.namespace ?? 'default';
    let name = `${job.metadata.name}-${stableSuffix(randomUUID())}`;
    while (this.store.get('Pod', namespace, name)) name = `${job.metadata.name}-${stableSuffix(randomUUID())}`;
    const template = spec.template;
    const pod = this.store.create({
      apiVersion: 'flotilla/v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace,
        labels: { ...(template.metadata?.labels ?? {}), [JOB_NAME_LABEL]: job.metadata.name, [CONTROLLER_UID_LABEL]: job.metadata.uid },
        ...(template.metadata?.annotations ? { annotations: { ...template.metadata.annotations } } : {}),
        ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid, controller: true }],
      },
      spec: { ...template.spec },
      status: { phase: 'Pending' } satisfies PodStatus,
    });
    this.made++;
    this.events.normal(job, 'SuccessfulCreate', `Created pod: ${name}`);
    return pod;
  }

  private deletePod(pod: StoredObject, job?: StoredObject, why?: string): void {
    this.failureSeen.delete(pod.metadata.uid);
    try {
      this.store.delete('Pod', pod.metadata.namespace ?? 'default', pod.metadata.name);
    } catch {
      return; // already gone
    }
    this.removed++;
    if (job && why) this.events.normal(job, 'SuccessfulDelete', `Deleted pod: ${pod.metadata.name} (${why})`);
  }
}

function isControlledBy(pod: StoredObject, job: StoredObject): boolean {
  return pod.metadata.ownerReferences?.some((o) => o.controller && o.uid === job.metadata.uid) ?? false;
}
