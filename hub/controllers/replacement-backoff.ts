/** The first wait between replacements of pods that keep finishing, doubled per failure in a row (as CrashLoopBackOff's 10 s). */
export const DEFAULT_REPLACEMENT_BACKOFF_MS = 10_000;
/** The longest such wait (CrashLoopBackOff's 5 min). */
export const MAX_REPLACEMENT_BACKOFF_MS = 300_000;

interface Record {
  /** Passes in a row that found finished pods. */
  failures: number;
  /** When the last of them was (ms since the epoch). */
  lastAt: number;
  /** The end of the wait last announced in an event. */
  announcedUntil?: number;
}

/**
 * How long a controller waits before it replaces pods that finished (Failed, or Succeeded under
 * a controller that wants them running), per controller key: the first replacement is made at
 * once, the next after 10 s, doubling per failure in a row up to 5 min, as Kubernetes' DaemonSet
 * controller backs off failed pods (failedPodsBackoff) and the kubelet a crash-looping container.
 * A quiet spell of twice the longest wait starts the count again (flowcontrol.Backoff's rule).
 * Without it, a template whose pods exit at once would be replaced as fast as devices report.
 */
export class ReplacementBackoff {
  private readonly records = new Map<string, Record>();

  constructor(
    private readonly baseMs = DEFAULT_REPLACEMENT_BACKOFF_MS,
    private readonly maxMs = MAX_REPLACEMENT_BACKOFF_MS,
  ) {}

  /** A pass found finished pods of the key. */
  failed(key: string, now: number): void {
    const rec = this.records.get(key);
    if (!rec || now - rec.lastAt > 2 * this.maxMs) this.records.set(key, { failures: 1, lastAt: now });
    else {
      rec.failures++;
      rec.lastAt = now;
    }
  }

  /** How long replacements of the key must still wait (0: now). */
  waitMs(key: string, now: number): number {
    const rec = this.records.get(key);
    if (!rec || rec.failures <= 1) return 0;
    const delay = Math.min(this.baseMs * 2 ** Math.min(rec.failures - 2, 30), this.maxMs);
    return Math.max(0, rec.lastAt + delay - now);
  }

  failures(key: string): number {
    return this.records.get(key)?.failures ?? 0;
  }

  /** True the first time a wait until `until` is asked about: one event per wait. */
  announce(key: string, until: number): boolean {
    const rec = this.records.get(key);
    if (!rec || rec.announcedUntil === until) return false;
    rec.announcedUntil = until;
    return true;
  }

  delete(key: string): void {
    this.records.delete(key);
  }
}
