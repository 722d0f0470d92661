import { describe, expect, it } from 'vitest';
import { Backoff } from '../../agent/link/backoff.js';
import { BACKOFF_RESET_MS, INITIAL_BACKOFF_MS, MAX_BACKOFF_MS, RestartBackoff } from '../../agent/reconcile/backoff.js';

const KEY = 'uid-web/app';
const T0 = 1_000_000;

describe('RestartBackoff (crash-loop back-off)', () => {
  it('uses Kubernetes’ numbers: 10 s doubling to 5 min, forgiven after 10 min of running', () => {
    expect(INITIAL_BACKOFF_MS).toBe(10_000);
    expect(MAX_BACKOFF_MS).toBe(300_000);
    expect(BACKOFF_RESET_MS).toBe(600_000);
  });

  it('does not hold back a container it has never restarted', () => {
    const backoff = new RestartBackoff();
    expect(backoff.waitingMs(KEY, T0)).toBe(0);
    expect(backoff.view.get(KEY)).toBeUndefined();
  });

  it('waits 10 s after the first restart, then doubles up to 5 min and stays there', () => {
    const backoff = new RestartBackoff();
    const delays: number[] = [];
    let now = T0;
    for (let i = 0; i < 9; i++) {
      backoff.restarted(KEY, now);
      delays.push(backoff.waitingMs(KEY, now));
      now = backoff.view.get(KEY)!.until; // the next crash comes as soon as the back-off allows
    }
    expect(delays).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000, 300_000]);
  });

  it('exposes `until` for the planner and counts the wait down', () => {
    const backoff = new RestartBackoff();
    backoff.restarted(KEY, T0);
    expect(backoff.view.get(KEY)?.until).toBe(T0 + 10_000);
    expect(backoff.waitingMs(KEY, T0 + 4_000)).toBe(6_000);
    expect(backoff.waitingMs(KEY, T0 + 10_000)).toBe(0);
    expect(backoff.waitingMs(KEY, T0 + 60_000)).toBe(0);
  });

  it('keeps each container’s back-off separate', () => {
    const backoff = new RestartBackoff();
    backoff.restarted(KEY, T0);
    backoff.restarted(KEY, T0);
    backoff.restarted('uid-web/sidecar', T0);
    expect(backoff.waitingMs(KEY, T0)).toBe(20_000);
    expect(backoff.waitingMs('uid-web/sidecar', T0)).toBe(10_000);
  });

  it('keeps the back-off for a container that ran less than 10 min', () => {
    const backoff = new RestartBackoff();
    backoff.restarted(KEY, T0);
    backoff.restarted(KEY, T0);
    backoff.running(KEY, T0, T0 + BACKOFF_RESET_MS - 1);
    backoff.restarted(KEY, T0 + BACKOFF_RESET_MS);
    expect(backoff.waitingMs(KEY, T0 + BACKOFF_RESET_MS)).toBe(40_000);
  });

  it('forgets a container that has run for 10 min: its next crash starts at 10 s again', () => {
    const backoff = new RestartBackoff();
    for (let i = 0; i < 6; i++) backoff.restarted(KEY, T0);
    expect(backoff.waitingMs(KEY, T0)).toBe(300_000);
    backoff.running(KEY, T0, T0 + BACKOFF_RESET_MS);
    expect(backoff.view.has(KEY)).toBe(false);
    backoff.restarted(KEY, T0 + BACKOFF_RESET_MS + 1);
    expect(backoff.waitingMs(KEY, T0 + BACKOFF_RESET_MS + 1)).toBe(10_000);
  });

  it('drops the records that `forget` is told not to keep (pods no longer desired)', () => {
    const backoff = new RestartBackoff();
    backoff.restarted('uid-a/app', T0);
    backoff.restarted('uid-b/app', T0);
    backoff.forget((key) => key.startsWith('uid-a/'));
    expect([...backoff.view.keys()]).toEqual(['uid-a/app']);
  });
});

describe('Backoff (reconnect delays with equal jitter)', () => {
  /** A Backoff whose random draws come from `draws`, in turn. */
  const withDraws = (draws: number[], baseMs = 1_000, maxMs = 60_000) => {
    let i = 0;
    return new Backoff(baseMs, maxMs, () => draws[i++ % draws.length]!);
  };

  it('stays between half the ceiling and the ceiling, the ceiling doubling from the base', () => {
    const low = withDraws([0]);
    const high = withDraws([1]);
    const lows = Array.from({ length: 6 }, () => low.next());
    const highs = Array.from({ length: 6 }, () => high.next());
    expect(lows).toEqual([500, 1_000, 2_000, 4_000, 8_000, 16_000]);
    expect(highs).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 32_000]);
  });

  it('spreads the random half across the range', () => {
    const backoff = withDraws([0.5]);
    expect(backoff.next()).toBe(750);
    expect(backoff.next()).toBe(1_500);
  });

  it('never exceeds the maximum however many attempts fail', () => {
    const backoff = withDraws([1, 0]);
    const delays = Array.from({ length: 100 }, () => backoff.next());
    expect(Math.max(...delays)).toBe(60_000);
    for (const d of delays.slice(10)) expect([30_000, 60_000]).toContain(d);
  });

  it('honours a lower cap for one call', () => {
    const backoff = withDraws([1]);
    for (let i = 0; i < 10; i++) backoff.next();
    expect(backoff.next(5_000)).toBe(5_000);
    expect(backoff.next()).toBe(60_000);
  });

  it('starts over from the base after reset', () => {
    const backoff = withDraws([1]);
    for (let i = 0; i < 8; i++) backoff.next();
    backoff.reset();
    expect(backoff.next()).toBe(1_000);
    expect(backoff.next()).toBe(2_000);
  });

  it('uses 1 s to 60 s with Math.random by default', () => {
    const backoff = new Backoff();
    const first = backoff.next();
    expect(first).toBeGreaterThanOrEqual(500);
    expect(first).toBeLessThanOrEqual(1_000);
    for (let i = 0; i < 40; i++) {
      const d = backoff.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(60_000);
    }
    expect(backoff.next()).toBeGreaterThanOrEqual(30_000);
  });
});
