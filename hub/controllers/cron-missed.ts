import type { CronSchedule } from '../../shared/cron/schedule.js';

/** Kubernetes' limit: past this many missed start times a CronJob warns and only the latest counts. */
export const MAX_MISSED_START_TIMES = 100;

export interface UnmetSchedule {
  /** The most recent fire time in (earliest, now], if any. */
  scheduledAt?: number;
  /** How many fire times fell in that span, counted up to MAX_MISSED_START_TIMES + 1. */
  missed: number;
}

/**
 * The most recent fire time that has come and has not been acted on, as Kubernetes' CronJob
 * controller computes it (mostRecentScheduleTime): fire times after the last scheduled one (or
 * the CronJob's creation), never earlier than startingDeadlineSeconds before now. Only the most
 * recent is returned: after an outage a CronJob catches up with at most one run.
 */
export function mostRecentUnmet(schedule: CronSchedule, lastScheduledMs: number, nowMs: number, startingDeadlineSeconds?: number): UnmetSchedule {
  let earliest = lastScheduledMs;
  if (startingDeadlineSeconds !== undefined) earliest = Math.max(earliest, nowMs - startingDeadlineSeconds * 1000);
  let t = schedule.next(earliest);
  if (t === undefined || t > nowMs) return { missed: 0 };
  let latest = t;
  let missed = 1;
  while (missed <= MAX_MISSED_START_TIMES) {
    t = schedule.next(latest);
    if (t === undefined || t > nowMs) return { scheduledAt: latest, missed };
    latest = t;
    missed++;
  }
  // Too many to walk one by one: search back from now, doubling the span, for the last one.
  for (let span = Math.max(1000, Math.ceil((latest - earliest) / missed) * 2); ; span *= 2) {
    const from = Math.max(latest, nowMs - span);
    let candidate = schedule.next(from);
    if (candidate !== undefined && candidate <= nowMs) {
      for (let n = schedule.next(candidate); n !== undefined && n <= nowMs; n = schedule.next(n)) candidate = n;
      return { scheduledAt: candidate, missed };
    }
    if (from === latest) return { scheduledAt: latest, missed };
  }
}
