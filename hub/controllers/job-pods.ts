import type { JobCondition, JobSpec, JobStatus } from '../../shared/resources/job.js';
import type { PodPhase, PodStatus } from '../../shared/resources/pod.js';
import type { StoredObject } from '../store/types.js';

/** Labels every pod of a Job carries, as Kubernetes sets them. */
export const JOB_NAME_LABEL = 'job-name';
export const CONTROLLER_UID_LABEL = 'controller-uid';

export const DEFAULT_BACKOFF_LIMIT = 6;
/** Kubernetes' DefaultJobBackOff and MaxJobBackOff: 10 s doubling per failure, at most 6 min. */
export const DEFAULT_BACKOFF_BASE_MS = 10_000;
export const DEFAULT_BACKOFF_MAX_MS = 360_000;

export function podPhase(pod: StoredObject): PodPhase {
  return (pod.status as PodStatus | undefined)?.phase ?? 'Pending';
}

/** Not finished: Pending, Running or Unknown (a pod on a node that went silent may yet finish). */
export function isActive(pod: StoredObject): boolean {
  const phase = podPhase(pod);
  return phase !== 'Succeeded' && phase !== 'Failed';
}

/** When the pod's last container finished, by the device's clock (its creation when unreported). */
export function finishedAt(pod: StoredObject): number {
  let latest = Number.NEGATIVE_INFINITY;
  for (const c of (pod.status as PodStatus | undefined)?.containerStatuses ?? []) {
    const at = Date.parse(c.state.terminated?.finishedAt ?? '');
    if (!Number.isNaN(at)) latest = Math.max(latest, at);
  }
  return Number.isFinite(latest) ? latest : Date.parse(pod.metadata.creationTimestamp);
}

/** Container restarts of a pod that is still running or pending (Kubernetes counts only those). */
export function restartsOf(pod: StoredObject): number {
  const phase = podPhase(pod);
  if (phase !== 'Running' && phase !== 'Pending') return 0;
  return ((pod.status as PodStatus | undefined)?.containerStatuses ?? []).reduce((sum, c) => sum + (c.restartCount ?? 0), 0);
}

/** The completions a Job needs: unset with parallelism set is a work queue (undefined), else 1 by default (Kubernetes' defaulting). */
export function wantedCompletions(spec: JobSpec): number | undefined {
  if (spec.completions !== undefined) return spec.completions;
  return spec.parallelism === undefined ? 1 : undefined;
}

/** How many pods should run now, as Kubernetes' manageJob computes wantActive. */
export function wantedActive(spec: JobSpec, active: number, succeeded: number): number {
  const parallelism = spec.parallelism ?? 1;
  const completions = wantedCompletions(spec);
  // A work queue: once one pod has succeeded, no more start; those running finish their work.
  if (completions === undefined) return succeeded > 0 ? Math.min(active, parallelism) : parallelism;
  return Math.max(0, Math.min(parallelism, completions - succeeded));
}

export function isComplete(spec: JobSpec, active: number, succeeded: number): boolean {
  const completions = wantedCompletions(spec);
  if (completions === undefined) return succeeded > 0 && active === 0;
  return succeeded >= completions && active === 0;
}

/** The delay before the next pod after `failures` failures in a row: base doubling per failure, capped. */
export function backoffDelay(failures: number, baseMs: number, maxMs: number): number {
  if (failures <= 0) return 0;
  return Math.min(baseMs * 2 ** Math.min(failures - 1, 30), maxMs);
}

/** The Complete or Failed condition that is True, if the Job has finished. */
export function finishedCondition(status: JobStatus | undefined): JobCondition | undefined {
  return status?.conditions?.find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
}

/** `conditions` with `next` set: its transition time is kept when its status did not change. */
export function withCondition(conditions: JobCondition[] | undefined, next: JobCondition, nowIso: string): JobCondition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const prev = i >= 0 ? list[i] : undefined;
  const merged: JobCondition = {
    ...next,
    lastProbeTime: nowIso,
    lastTransitionTime: prev && prev.status === next.status ? (prev.lastTransitionTime ?? nowIso) : nowIso,
  };
  if (prev && prev.status === next.status && prev.reason === next.reason && prev.message === next.message) return list;
  if (i >= 0) list[i] = merged;
  else list.push(merged);
  return list;
}

/** Pods to remove first when there are too many: not yet running before running, newest before oldest (Kubernetes' ActivePods order). */
export function deletionOrder(pods: StoredObject[]): StoredObject[] {
  const rank = (p: StoredObject) => (podPhase(p) === 'Pending' ? 0 : podPhase(p) === 'Unknown' ? 1 : 2);
  return [...pods].sort((a, b) => rank(a) - rank(b) || b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp) || b.metadata.name.localeCompare(a.metadata.name));
}
