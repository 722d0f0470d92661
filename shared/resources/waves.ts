import * as z from 'zod';
import { parseSelector } from '../labels/selector.js';
import { intOrPercent, nonNegativeInt, positiveInt } from './workload.js';

/**
 * Flotilla's wave strategy for DaemonSets (docs/ARCHITECTURE.md, 'Waves rollouts'):
 * the targeted devices move from one template revision to the next in waves, each behind a
 * health gate, with pauses, a rate limit, automatic rollback and update locks.
 */
export const WAVES = 'Waves';

/** `90s`, `10m`, `1h30m`, `7d` (kept as written; durationSeconds reads it). */
export const durationSchema = z
  .string({ error: 'must be a duration such as 90s, 10m or 1h' })
  .regex(/^(\d+[dhms])+$/, 'must be a duration such as 90s, 10m or 1h');

export function durationSeconds(text: string): number {
  let total = 0;
  for (const m of text.matchAll(/(\d+)([dhms])/g)) total += Number(m[1]) * { d: 86400, h: 3600, m: 60, s: 1 }[m[2] as 'd' | 'h' | 'm' | 's'];
  return total;
}

const selectorString = z.string().superRefine((text, ctx) => {
  try {
    parseSelector(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/**
 * After a wave has passed its gate: wait this long (`10m`, resumable earlier by `rollout
 * resume`), or until resumed (`{}` or `{duration: …}` left out).
 */
const pauseSchema = z.union([durationSchema, z.object({ duration: durationSchema.optional() })]);

export const waveSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label (lower case letters, digits and -)').max(63).optional(),
    /** The remaining targets whose labels match, e.g. `channel=canary`. */
    selector: selectorString.optional(),
    /** This percentage of the remaining targets (of those the selector matches, when it is set), rounded up. */
    percent: z.number({ error: 'must be a number' }).gt(0, 'must be greater than 0').max(100, 'must be at most 100').optional(),
    /** This many of the remaining targets (of those the selector matches, when it is set). */
    count: positiveInt.optional(),
    /** Successive waves of start, start×factor, start×factor², … devices until none remain (AWS IoT Jobs' exponential rate). */
    exponential: z.object({ start: positiveInt, factor: z.number({ error: 'must be a number' }).gt(1, 'must be greater than 1').max(10, 'must be at most 10') }).optional(),
    pause: pauseSchema.optional(),
  })
  .superRefine((w, ctx) => {
    if (w.exponential && (w.selector !== undefined || w.percent !== undefined || w.count !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['exponential'], message: 'cannot be combined with selector, percent or count' });
    }
    if (w.percent !== undefined && w.count !== undefined) ctx.addIssue({ code: 'custom', path: ['count'], message: 'set percent or count, not both' });
    if (w.selector === undefined && w.percent === undefined && w.count === undefined && !w.exponential) {
      ctx.addIssue({ code: 'custom', message: 'a wave needs one of selector, percent, count or exponential' });
    }
  });

export const healthGateSchema = z.object({
  /** Every updated pod of the wave Ready for this long (default 10). */
  minReadySeconds: nonNegativeInt.optional(),
  /** At most this many failed devices in the rollout so far (default 0). */
  maxFailed: nonNegativeInt.optional(),
  /** At most this percentage of the rollout's devices so far failed (default 0). */
  maxFailedPercent: z.number({ error: 'must be a number' }).min(0, 'must be greater than or equal to 0').max(100, 'must be at most 100').optional(),
  /** A device without a Ready updated pod this long after its update was released has failed, and a wave still open this long fails (default 600). */
  progressDeadlineSeconds: positiveInt.optional(),
});

/** The fields of `spec.updateStrategy` that belong to type Waves (beside `type`). */
export const wavesFieldsShape = {
  waves: z.array(waveSchema).min(1, 'must list at least one wave').optional(),
  /** Devices of a wave updated at once: a count or a percentage of the wave (default 25 %, at least 1). */
  maxUnavailable: intOrPercent.optional(),
  /** stop-first: the old containers stop before the new image is pulled; start-first (default): pulled first, replaced after. */
  order: z.enum(['start-first', 'stop-first']).optional(),
  healthGate: healthGateSchema.optional(),
  /** rollback (default): every updated device goes back to the previous revision; pause: the rollout stops where it is. */
  onFailure: z.enum(['rollback', 'pause']).optional(),
  /** wait (default): a wave waits for its offline devices up to the progress deadline; skip: they converge when they return. */
  offlineNodes: z.enum(['wait', 'skip']).optional(),
  /** Under `wait`, what an offline device counts as once the deadline has passed (default failed). */
  offlineAfterDeadline: z.enum(['failed', 'skipped']).optional(),
  /** Devices whose update is released per minute, at most (AWS IoT Jobs' maximumPerMinute). */
  maxPerMinute: positiveInt.optional(),
  /** An update lock older than this is overridden (default 1h). */
  updateLockMaxAge: durationSchema.optional(),
};

export type Wave = z.infer<typeof waveSchema>;
export type HealthGate = z.infer<typeof healthGateSchema>;

/** A wave strategy with every default filled in: what a rollout record keeps. */
export interface WavesStrategy {
  waves: Wave[];
  maxUnavailable: number | string;
  order: 'start-first' | 'stop-first';
  healthGate: Required<Omit<HealthGate, 'maxFailed'>> & { maxFailed?: number };
  onFailure: 'rollback' | 'pause';
  offlineNodes: 'wait' | 'skip';
  offlineAfterDeadline: 'failed' | 'skipped';
  maxPerMinute?: number;
  updateLockMaxAgeSeconds: number;
}

export const WAVES_DEFAULTS = {
  maxUnavailable: '25%',
  minReadySeconds: 10,
  maxFailedPercent: 0,
  progressDeadlineSeconds: 600,
  updateLockMaxAgeSeconds: 3600,
} as const;

/** The parsed `updateStrategy` of type Waves, with its defaults. */
export function wavesStrategy(s: z.infer<z.ZodObject<typeof wavesFieldsShape>>): WavesStrategy {
  const gate = s.healthGate ?? {};
  return {
    waves: s.waves ?? [],
    maxUnavailable: s.maxUnavailable ?? WAVES_DEFAULTS.maxUnavailable,
    order: s.order ?? 'start-first',
    healthGate: {
      minReadySeconds: gate.minReadySeconds ?? WAVES_DEFAULTS.minReadySeconds,
      maxFailedPercent: gate.maxFailedPercent ?? WAVES_DEFAULTS.maxFailedPercent,
      progressDeadlineSeconds: gate.progressDeadlineSeconds ?? WAVES_DEFAULTS.progressDeadlineSeconds,
      ...(gate.maxFailed !== undefined ? { maxFailed: gate.maxFailed } : {}),
    },
    onFailure: s.onFailure ?? 'rollback',
    offlineNodes: s.offlineNodes ?? 'wait',
    offlineAfterDeadline: s.offlineAfterDeadline ?? 'failed',
    ...(s.maxPerMinute !== undefined ? { maxPerMinute: s.maxPerMinute } : {}),
    updateLockMaxAgeSeconds: s.updateLockMaxAge !== undefined ? durationSeconds(s.updateLockMaxAge) : WAVES_DEFAULTS.updateLockMaxAgeSeconds,
  };
}
