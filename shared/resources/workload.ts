import * as z from 'zod';

/** An integer, or a percentage of a total such as '25%' (Kubernetes' IntOrString). */
export const intOrPercent = z.union([
  z.number().int('must be an integer').min(0, 'must be greater than or equal to 0'),
  z.string().regex(/^\d+%$/, "must be an integer or a percentage such as '10%'"),
]);

export type IntOrPercent = z.infer<typeof intOrPercent>;

export const nonNegativeInt = z.number({ error: 'must be a number' }).int('must be an integer').min(0, 'must be greater than or equal to 0');
export const positiveInt = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be greater than or equal to 1');

/**
 * The absolute value of an IntOrPercent against a total, as Kubernetes'
 * GetScaledValueFromIntOrPercent: percentages round up (maxSurge) or down (maxUnavailable).
 */
export function scaledValue(value: IntOrPercent | undefined, total: number, roundUp: boolean, fallback: IntOrPercent): number {
  const v = value ?? fallback;
  if (typeof v === 'number') return v;
  const pct = Number(v.slice(0, -1));
  const raw = (pct * total) / 100;
  return roundUp ? Math.ceil(raw) : Math.floor(raw);
}
