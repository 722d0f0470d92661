/**
 * Cron expressions in the standard form Kubernetes' CronJob takes (robfig/cron's ParseStandard):
 * five fields `minute hour day-of-month month day-of-week`, or six with seconds first (node-cron's
 * form), lists, ranges, steps, month and weekday names, `?` for "any" in the day fields, and the
 * descriptors @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly.
 */

export interface CronFields {
  /** Allowed values, indexed by value: seconds 0-59, minutes 0-59, hours 0-23, days 1-31, months 1-12, weekdays 0-6 (Sunday 0). */
  second: boolean[];
  minute: boolean[];
  hour: boolean[];
  dayOfMonth: boolean[];
  month: boolean[];
  dayOfWeek: boolean[];
  /**
   * Whether the day fields were `*` or `?`. As in Vixie cron and robfig/cron, a day matches both
   * day fields when either is unrestricted, and either of them when both are restricted
   * ("0 0 1 * MON" fires on the 1st and on every Monday).
   */
  dayOfMonthAny: boolean;
  dayOfWeekAny: boolean;
  /** Six fields were given: the schedule is to the second. */
  hasSeconds: boolean;
}

export type CronParse = { ok: true; fields: CronFields } | { ok: false; error: string };

interface FieldRule {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
  /** The first name's value (months count from 1). */
  namesFrom?: number;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] as const;
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

const SECOND: FieldRule = { name: 'second', min: 0, max: 59 };
const MINUTE: FieldRule = { name: 'minute', min: 0, max: 59 };
const HOUR: FieldRule = { name: 'hour', min: 0, max: 23 };
const DAY_OF_MONTH: FieldRule = { name: 'day-of-month', min: 1, max: 31 };
const MONTH: FieldRule = { name: 'month', min: 1, max: 12, names: MONTHS, namesFrom: 1 };
// 7 is accepted for Sunday, as Vixie cron and node-cron accept it.
const DAY_OF_WEEK: FieldRule = { name: 'day-of-week', min: 0, max: 7, names: WEEKDAYS, namesFrom: 0 };

const DESCRIPTORS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

/** The longest each month can be (February in a leap year). */
const MAX_DAYS_IN_MONTH = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

export function parseCronExpression(expression: string): CronParse {
  const text = expression.trim();
  if (/^(CRON_)?TZ=/.test(text)) return fail('cannot use TZ or CRON_TZ in schedule, use the timeZone field instead');
  let source = text;
  if (text.startsWith('@')) {
    const expanded = DESCRIPTORS[text.toLowerCase()];
    if (!expanded) return fail(`unknown descriptor '${text}' (known: ${Object.keys(DESCRIPTORS).join(', ')})`);
    source = expanded;
  }
  const parts = source.split(/\s+/).filter((p) => p !== '');
  if (parts.length !== 5 && parts.length !== 6) {
    return fail(`expected 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, got ${parts.length}`);
  }
  const hasSeconds = parts.length === 6;
  const [second, minute, hour, dayOfMonth, month, dayOfWeek] = hasSeconds ? parts : ['0', ...parts];
  try {
    const weekdays = parseField(dayOfWeek!, DAY_OF_WEEK, true);
    if (weekdays[7]) weekdays[0] = true;
    const fields: CronFields = {
      second: parseField(second!, SECOND, false),
      minute: parseField(minute!, MINUTE, false),
      hour: parseField(hour!, HOUR, false),
      dayOfMonth: parseField(dayOfMonth!, DAY_OF_MONTH, true),
      month: parseField(month!, MONTH, false),
      dayOfWeek: weekdays.slice(0, 7),
      dayOfMonthAny: isAny(dayOfMonth!),
      dayOfWeekAny: isAny(dayOfWeek!),
      hasSeconds,
    };
    const never = neverFires(fields);
    return never ? fail(never) : { ok: true, fields };
  } catch (err) {
    return fail((err as Error).message);
  }
}

function fail(error: string): CronParse {
  return { ok: false, error };
}

function isAny(field: string): boolean {
  return field === '*' || field === '?' || field === '*/1';
}

function parseField(field: string, rule: FieldRule, questionMark: boolean): boolean[] {
  const allowed: boolean[] = new Array<boolean>(rule.max + 1).fill(false);
  for (const term of field.split(',')) {
    if (term === '') throw new Error(`${rule.name} field '${field}': empty list item`);
    const [range, stepText, extra] = term.split('/');
    if (extra !== undefined) throw new Error(`${rule.name} field '${field}': '${term}' has more than one step`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1) throw new Error(`${rule.name} field '${field}': step '${stepText}' must be a positive integer`);
      step = Number(stepText);
    }
    let low: number;
    let high: number;
    if (range === '*' || (questionMark && range === '?')) {
      low = rule.min;
      high = rule.name === 'day-of-week' ? 6 : rule.max;
    } else {
      const bounds = range!.split('-');
      if (bounds.length > 2) throw new Error(`${rule.name} field '${field}': '${range}' is not a value or a range`);
      low = value(bounds[0]!, rule, field);
      // "N/step" means N through the end of the field, as in robfig/cron.
      high = bounds.length === 2 ? value(bounds[1]!, rule, field) : stepText !== undefined ? rule.max : low;
      if (low > high) throw new Error(`${rule.name} field '${field}': range start ${low} is after its end ${high}`);
    }
    for (let v = low; v <= high; v += step) allowed[v] = true;
  }
  return allowed;
}

function value(text: string, rule: FieldRule, field: string): number {
  const named = rule.names?.indexOf(text.toLowerCase() as never) ?? -1;
  const n = named >= 0 ? named + (rule.namesFrom ?? 0) : /^\d+$/.test(text) ? Number(text) : NaN;
  if (Number.isNaN(n)) {
    const hint = rule.names ? ` (a number or a name such as ${rule.names[0]})` : '';
    throw new Error(`${rule.name} field '${field}': '${text}' is not a valid value${hint}`);
  }
  if (n < rule.min || n > rule.max) throw new Error(`${rule.name} field '${field}': ${n} is out of range ${rule.min}-${rule.max}`);
  return n;
}

/** A schedule that no date can satisfy ("0 0 30 2 *"), caught at apply time rather than never firing. */
function neverFires(f: CronFields): string | undefined {
  // With a restricted day-of-week alone, or both restricted (either matches), some day always fits.
  if (!f.dayOfWeekAny) return undefined;
  for (let m = 1; m <= 12; m++) {
    if (!f.month[m]) continue;
    for (let d = 1; d <= MAX_DAYS_IN_MONTH[m]!; d++) if (f.dayOfMonth[d]) return undefined;
  }
  return 'never fires: no month given has the day-of-month given';
}
