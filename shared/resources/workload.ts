import * as z from 'zod';

/** An integer, or a percentage of a total such as '25%' (Kubernetes' IntOrString). */
export const intOrPercent = z.union([
  z.number().int('must be an integer').min(0, 'must be greater than or equal to 0'),
  z.string().regex(/^\d+%$/, "must be an integer or a percentage such as '10%'"),
]);

export type IntOrPercent = z.infer<typeof intOrPercent>;

/** Kubernetes' int32 fields (replicas, seconds, limits): a larger number is refused, not wrapped. */
export const INT32_MAX = 2147483647;

export const nonNegativeInt = z.number({ error: 'must be a number' }).int('must be an integer').min(0, 'must be greater than or equal to 0').max(INT32_MAX, `must be less than or equal to ${INT32_MAX}`);
export const positiveInt = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be greater than or equal to 1').max(INT32_MAX, `must be less than or equal to ${INT32_MAX}`);

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
