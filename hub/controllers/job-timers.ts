/** setTimeout's longest delay is about 24.8 days; longer waits are taken as several shorter ones. */
const MAX_DELAY_MS = 60 * 60 * 1000;
/** Timers may fire a millisecond before the clock reads their time; wake just after it instead. */
const LATE_MARGIN_MS = 5;

/**
 * One pending wake-up per key, for controllers whose work is due at a time (a Job's deadline or
 * back-off, a CronJob's next run): setting a key's time replaces its earlier one, and clear()
 * forgets it when the object is gone. A wake-up only marks the key dirty; the reconcile decides.
 */
export class KeyTimers {
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();

  constructor(
    private readonly wake: (key: string) => void,
    private readonly now: () => number,
  ) {}

  /** Wakes `key` at `atMs` (a time on the controller's clock), replacing any earlier wake-up of it. */
  set(key: string, atMs: number): void {
    const existing = this.timers.get(key);
    if (existing?.at === atMs) return;
    if (existing) clearTimeout(existing.timer);
    const delay = Math.min(Math.max(0, atMs - this.now()) + LATE_MARGIN_MS, MAX_DELAY_MS);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.wake(key);
    }, delay);
    timer.unref();
    this.timers.set(key, { at: atMs, timer });
  }

  clear(key: string): void {
    const existing = this.timers.get(key);
    if (!existing) return;
    clearTimeout(existing.timer);
    this.timers.delete(key);
  }

  clearAll(): void {
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  /** When `key` is due to wake, if it is. */
  dueAt(key: string): number | undefined {
    return this.timers.get(key)?.at;
  }

  get size(): number {
    return this.timers.size;
  }
}
