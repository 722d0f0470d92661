import { describe, expect, it } from 'vitest';
import { MAX_MISSED_START_TIMES, mostRecentUnmet } from '../../hub/controllers/cron-missed.js';
import { parseCronExpression } from '../../shared/cron/parse.js';
import { CronSchedule, timeZoneProblem } from '../../shared/cron/schedule.js';
import { validateManifest } from '../../shared/resources/validate.js';

function schedule(expression: string, timeZone = 'UTC'): CronSchedule {
  const parsed = CronSchedule.parse(expression, timeZone);
  if (!parsed.schedule) throw new Error(parsed.error);
  return parsed.schedule;
}

/** The next `n` fire times after `from`, as ISO strings. */
function nextTimes(expression: string, from: string, n: number, timeZone = 'UTC'): string[] {
  const s = schedule(expression, timeZone);
  const out: string[] = [];
  let t = Date.parse(from);
  for (let i = 0; i < n; i++) {
    t = s.next(t)!;
    out.push(new Date(t).toISOString());
  }
  return out;
}

function parseError(expression: string): string {
  const parsed = parseCronExpression(expression);
  if (parsed.ok) throw new Error(`'${expression}' parsed`);
  return parsed.error;
}

describe('cron expressions', () => {
  it('takes five fields to the minute and six with seconds first', () => {
    expect(nextTimes('*/15 * * * *', '2025-01-01T12:07:30Z', 3)).toEqual(['2025-01-01T12:15:00.000Z', '2025-01-01T12:30:00.000Z', '2025-01-01T12:45:00.000Z']);
    expect(nextTimes('*/5 * * * * *', '2025-01-01T12:00:01.500Z', 3)).toEqual(['2025-01-01T12:00:05.000Z', '2025-01-01T12:00:10.000Z', '2025-01-01T12:00:15.000Z']);
    expect(schedule('*/5 * * * * *').hasSeconds).toBe(true);
    expect(schedule('*/5 * * * *').hasSeconds).toBe(false);
  });

  it('is strictly after the given time, even when that time is itself a fire time', () => {
    expect(nextTimes('0 * * * *', '2025-01-01T12:00:00Z', 1)).toEqual(['2025-01-01T13:00:00.000Z']);
  });

  it('reads lists, ranges, steps, N/step and names of months and weekdays', () => {
    expect(nextTimes('0 9 * JAN,feb MON-FRI', '2025-01-03T10:00:00Z', 2)).toEqual(['2025-01-06T09:00:00.000Z', '2025-01-07T09:00:00.000Z']);
    expect(nextTimes('10-20/5 3 * * *', '2025-01-01T00:00:00Z', 4)).toEqual(['2025-01-01T03:10:00.000Z', '2025-01-01T03:15:00.000Z', '2025-01-01T03:20:00.000Z', '2025-01-02T03:10:00.000Z']);
    expect(nextTimes('50/5 0 * * *', '2025-01-01T00:00:00Z', 3)).toEqual(['2025-01-01T00:50:00.000Z', '2025-01-01T00:55:00.000Z', '2025-01-02T00:50:00.000Z']);
    // 7 is Sunday as well as 0; 2025-01-05 is a Sunday.
    expect(nextTimes('0 0 * * 7', '2025-01-01T00:00:00Z', 1)).toEqual(['2025-01-05T00:00:00.000Z']);
  });

  it('fires on either day field when both are restricted, as Vixie cron and Kubernetes do', () => {
    // The 1st of the month and every Monday (2025-01-06, 13, ...).
    expect(nextTimes('0 0 1 * MON', '2024-12-30T12:00:00Z', 3)).toEqual(['2025-01-01T00:00:00.000Z', '2025-01-06T00:00:00.000Z', '2025-01-13T00:00:00.000Z']);
    // With one of them '*' or '?', only the other restricts.
    expect(nextTimes('0 0 ? * MON', '2024-12-30T12:00:00Z', 1)).toEqual(['2025-01-06T00:00:00.000Z']);
  });

  it('knows the descriptors and a leap day years away', () => {
    expect(nextTimes('@hourly', '2025-01-01T12:30:00Z', 1)).toEqual(['2025-01-01T13:00:00.000Z']);
    expect(nextTimes('@weekly', '2025-01-01T00:00:00Z', 1)).toEqual(['2025-01-05T00:00:00.000Z']);
    expect(nextTimes('@yearly', '2025-06-01T00:00:00Z', 1)).toEqual(['2026-01-01T00:00:00.000Z']);
    expect(nextTimes('0 0 29 2 *', '2025-01-01T00:00:00Z', 1)).toEqual(['2028-02-29T00:00:00.000Z']);
  });

  it('refuses what it cannot read, naming the field', () => {
    expect(parseError('61 * * * *')).toBe("minute field '61': 61 is out of range 0-59");
    expect(parseError('* * * *')).toMatch(/expected 5 fields .* got 4/);
    expect(parseError('0 0 30 2 *')).toMatch(/never fires/);
    expect(parseError('CRON_TZ=UTC 0 * * * *')).toMatch(/use the timeZone field/);
    expect(parseError('@every 5m')).toMatch(/unknown descriptor '@every 5m'/);
    expect(parseError('5-1 * * * *')).toBe("minute field '5-1': range start 5 is after its end 1");
    expect(parseError('*/0 * * * *')).toMatch(/step '0' must be a positive integer/);
    expect(parseError('0 0 * * funday')).toMatch(/day-of-week field 'funday': 'funday' is not a valid value/);
    expect(parseError('0 0 ? * * *')).toMatch(/hour field/);
  });
});

describe('time zones', () => {
  it('fires on the wall clock of the zone given', () => {
    // Berlin is UTC+1 in winter, UTC+2 in summer.
    expect(nextTimes('0 9 * * *', '2025-01-01T00:00:00Z', 1, 'Europe/Berlin')).toEqual(['2025-01-01T08:00:00.000Z']);
    expect(nextTimes('0 9 * * *', '2025-07-01T00:00:00Z', 1, 'Europe/Berlin')).toEqual(['2025-07-01T07:00:00.000Z']);
    // Half-hour zones too: 09:00 in Kolkata (UTC+5:30).
    expect(nextTimes('0 9 * * *', '2025-01-01T00:00:00Z', 1, 'Asia/Kolkata')).toEqual(['2025-01-01T03:30:00.000Z']);
  });

  it('skips a time the clocks jump over and fires twice at a time they repeat, as Kubernetes does', () => {
    // 2025-03-30 02:00 -> 03:00 in Berlin: there is no 02:30 that day.
    expect(nextTimes('30 2 * * *', '2025-03-29T12:00:00Z', 1, 'Europe/Berlin')).toEqual(['2025-03-31T00:30:00.000Z']);
    // 2025-10-26 03:00 -> 02:00: 02:30 happens at 00:30Z and again at 01:30Z.
    expect(nextTimes('30 2 * * *', '2025-10-25T12:00:00Z', 3, 'Europe/Berlin')).toEqual(['2025-10-26T00:30:00.000Z', '2025-10-26T01:30:00.000Z', '2025-10-27T01:30:00.000Z']);
    // An hourly schedule keeps its pace across the jump.
    expect(nextTimes('0 * * * *', '2025-03-30T00:30:00Z', 2, 'Europe/Berlin')).toEqual(['2025-03-30T01:00:00.000Z', '2025-03-30T02:00:00.000Z']);
  });

  it('accepts IANA names and refuses others', () => {
    expect(timeZoneProblem('Europe/Berlin')).toBeUndefined();
    expect(timeZoneProblem('UTC')).toBeUndefined();
    expect(timeZoneProblem('Mars/Olympus_Mons')).toBe("unknown time zone 'Mars/Olympus_Mons' (use an IANA name such as Europe/Berlin)");
    expect(timeZoneProblem('+02:00')).toMatch(/is an offset, not a time zone/);
    expect(CronSchedule.parse('0 * * * *', 'Nowhere/City').error).toMatch(/unknown time zone/);
  });
});

describe('CronJob manifests', () => {
  const cronJob = (spec: Record<string, unknown>) => ({
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name: 'backup' },
    spec: { jobTemplate: { spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox' }] } } } }, ...spec },
  });

  it('refuses a bad schedule or time zone at apply time, naming the field', () => {
    expect(validateManifest(cronJob({ schedule: '0 25 * * *' })).errors).toEqual([{ path: 'spec.schedule', message: "invalid schedule '0 25 * * *': hour field '25': 25 is out of range 0-23" }]);
    expect(validateManifest(cronJob({ schedule: '0 * * * *', timeZone: 'Europe/Atlantis' })).errors).toEqual([{ path: 'spec.timeZone', message: "unknown time zone 'Europe/Atlantis' (use an IANA name such as Europe/Berlin)" }]);
    expect(validateManifest(cronJob({ schedule: '*/5 * * * * *', timeZone: 'Europe/Berlin' })).errors).toEqual([]);
  });

  it('refuses a Job whose selector does not select its template', () => {
    const job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'once' },
      spec: { selector: { matchLabels: { app: 'other' } }, template: { metadata: { labels: { app: 'once' } }, spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox' }] } } },
    };
    expect(validateManifest(job).errors).toEqual([{ path: 'spec.template.metadata.labels', message: 'selector does not match template labels (app=other is missing)' }]);
    const { selector: _selector, ...withoutSelector } = job.spec;
    expect(validateManifest({ ...job, spec: withoutSelector }).errors).toEqual([]);
  });
});

describe('the most recent unmet schedule time', () => {
  const everyMinute = schedule('* * * * *');
  const at = (iso: string) => Date.parse(iso);

  it('is nothing before the first fire time, and the only one when one has passed', () => {
    expect(mostRecentUnmet(everyMinute, at('2025-01-01T12:00:00Z'), at('2025-01-01T12:00:59Z'))).toEqual({ missed: 0 });
    expect(mostRecentUnmet(everyMinute, at('2025-01-01T12:00:00Z'), at('2025-01-01T12:01:10Z'))).toEqual({ scheduledAt: at('2025-01-01T12:01:00Z'), missed: 1 });
  });

  it('is the latest of several missed, with their count', () => {
    expect(mostRecentUnmet(everyMinute, at('2025-01-01T12:00:00Z'), at('2025-01-01T12:05:30Z'))).toEqual({ scheduledAt: at('2025-01-01T12:05:00Z'), missed: 5 });
  });

  it('finds the latest when more than 100 were missed, and says so', () => {
    const r = mostRecentUnmet(everyMinute, at('2025-01-01T00:00:00Z'), at('2025-01-03T07:42:10Z'));
    expect(r.scheduledAt).toBe(at('2025-01-03T07:42:00Z'));
    expect(r.missed).toBe(MAX_MISSED_START_TIMES + 1);
    // Irregular gaps too: weekdays at 09:00, from Friday to the next Wednesday morning, months later.
    const weekdays = schedule('0 9 * * MON-FRI');
    expect(mostRecentUnmet(weekdays, at('2024-01-05T10:00:00Z'), at('2025-01-08T08:00:00Z')).scheduledAt).toBe(at('2025-01-07T09:00:00Z'));
  });

  it('looks no further back than startingDeadlineSeconds', () => {
    expect(mostRecentUnmet(everyMinute, at('2025-01-01T12:00:00Z'), at('2025-01-01T12:05:30Z'), 20)).toEqual({ missed: 0 });
    expect(mostRecentUnmet(everyMinute, at('2025-01-01T12:00:00Z'), at('2025-01-01T12:05:30Z'), 45)).toEqual({ scheduledAt: at('2025-01-01T12:05:00Z'), missed: 1 });
  });
});
