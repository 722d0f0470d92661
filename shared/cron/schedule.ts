import { parseCronExpression, type CronFields } from './parse.js';

/** A time of day on a calendar date, as a clock on the wall of some time zone shows it. */
export interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** 0 is Sunday. */
  weekday: number;
}

// A schedule that can fire fires within this many iterations of next(): each skipped day costs
// about five, so this covers the eight years between two 29ths of February across 2100.
const MAX_STEPS = 9 * 366 * 8;
const SECOND_MS = 1000;

/**
 * A parsed cron schedule in a time zone (the hub's own when none is given, as Kubernetes uses
 * the controller manager's). Fire times are found the way robfig/cron (Kubernetes' cron library)
 * finds them, by walking real time and reading the wall clock: a time that a clock change skips
 * does not fire, and a time that a clock change repeats fires at both of its instants.
 */
export class CronSchedule {
  private constructor(
    readonly expression: string,
    readonly fields: CronFields,
    readonly timeZone: string | undefined,
  ) {}

  /** Parses `expression` for `timeZone` (an IANA name), or says what is wrong with either. */
  static parse(expression: string, timeZone?: string): { schedule: CronSchedule; error?: undefined } | { schedule?: undefined; error: string } {
    const parsed = parseCronExpression(expression);
    if (!parsed.ok) return { error: parsed.error };
    if (timeZone !== undefined) {
      const problem = timeZoneProblem(timeZone);
      if (problem) return { error: problem };
    }
    return { schedule: new CronSchedule(expression, parsed.fields, timeZone) };
  }

  /** Six fields: the schedule names seconds, and fire times fall on any second. */
  get hasSeconds(): boolean {
    return this.fields.hasSeconds;
  }

  /** The first fire time strictly after `afterMs` (ms since the epoch, on a whole second), or undefined if none is found. */
  next(afterMs: number): number | undefined {
    const f = this.fields;
    let t = Math.floor(afterMs / SECOND_MS) * SECOND_MS + SECOND_MS;
    for (let i = 0; i < MAX_STEPS; i++) {
      const w = wallClock(t, this.timeZone);
      const intoHour = w.minute * 60 + w.second;
      if (!f.month[w.month] || !this.dayMatches(w)) {
        // Most of the way to midnight in one stride, the rest by hours: clock changes happen on
        // the hour and shift by less than three hours, so no stride jumps over a wall-clock midnight.
        const toMidnight = (23 - w.hour) * 3600 + 3600 - intoHour;
        t += (toMidnight > 3 * 3600 ? toMidnight - 3 * 3600 : 3600 - intoHour) * SECOND_MS;
        continue;
      }
      if (!f.hour[w.hour]) {
        t += (3600 - intoHour) * SECOND_MS;
        continue;
      }
      if (!f.minute[w.minute]) {
        const m = nextAllowed(f.minute, w.minute, 59);
        t += ((m ?? 60) - w.minute) * 60 * SECOND_MS - w.second * SECOND_MS;
        continue;
      }
      if (!f.second[w.second]) {
        const s = nextAllowed(f.second, w.second, 59);
        t += ((s ?? 60) - w.second) * SECOND_MS;
        continue;
      }
      return t;
    }
    return undefined;
  }

  private dayMatches(w: WallClock): boolean {
    const f = this.fields;
    const dom = f.dayOfMonth[w.day] === true;
    const dow = f.dayOfWeek[w.weekday] === true;
    return f.dayOfMonthAny || f.dayOfWeekAny ? dom && dow : dom || dow;
  }
}

function nextAllowed(allowed: boolean[], after: number, max: number): number | undefined {
  for (let v = after + 1; v <= max; v++) if (allowed[v]) return v;
  return undefined;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The wall clock of `timeZone` (the process's own when undefined) at `ms`. */
export function wallClock(ms: number, timeZone?: string): WallClock {
  const d = new Date(ms);
  if (timeZone === undefined) {
    return { year: d.getFullYear(), month: d.getMonth() + 1, day: d.getDate(), hour: d.getHours(), minute: d.getMinutes(), second: d.getSeconds(), weekday: d.getDay() };
  }
  const p: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(d)) if (part.type !== 'literal') p[part.type] = Number(part.value);
  const year = p.year!;
  const month = p.month!;
  const day = p.day!;
  return { year, month, day, hour: p.hour!, minute: p.minute!, second: p.second!, weekday: new Date(Date.UTC(year, month - 1, day)).getUTCDay() };
}

/** Why `name` is not a time zone this hub knows (an IANA name such as Europe/Berlin), or undefined when it is. */
export function timeZoneProblem(name: string): string | undefined {
  if (name.trim() === '') return 'must be an IANA time zone name such as Europe/Berlin';
  // Offsets ("+02:00") are not zones: they do not follow a place's daylight-saving rules.
  if (/^[+-]\d/.test(name)) return `'${name}' is an offset, not a time zone; use an IANA name such as Europe/Berlin`;
  try {
    formatterFor(name);
  } catch {
    return `unknown time zone '${name}' (use an IANA name such as Europe/Berlin)`;
  }
  return undefined;
}
