/**
 * Crash-loop back-off per container, as Kubernetes' kubelet: the first restart is at once, then
 * 10 s, doubling to 5 min; a container that has run for 10 min is forgiven.
 */
export const INITIAL_BACKOFF_MS = 10_000;
export const MAX_BACKOFF_MS = 300_000;
export const BACKOFF_RESET_MS = 600_000;

interface Entry {
  delayMs: number;
  until: number;
}

export class RestartBackoff {
  private readonly entries = new Map<string, Entry>();

  /** The view planSteps reads: no restart before `until`. */
  get view(): ReadonlyMap<string, { until: number }> {
    return this.entries;
  }

  /** Called when a container is restarted: the next restart waits longer. */
  restarted(key: string, now: number): void {
    const entry = this.entries.get(key);
    if (!entry) {
      this.entries.set(key, { delayMs: INITIAL_BACKOFF_MS, until: now + INITIAL_BACKOFF_MS });
      return;
    }
    entry.delayMs = Math.min(entry.delayMs * 2, MAX_BACKOFF_MS);
    entry.until = now + entry.delayMs;
  }

  /** Called for a container seen running since `startedAt`: long enough, and its record is dropped. */
  running(key: string, startedAt: number, now: number): void {
    if (now - startedAt >= BACKOFF_RESET_MS) this.entries.delete(key);
  }

  /** The length of the current back-off period: what Kubernetes' message says ("back-off 20s"), steady for the whole period. */
  periodMs(key: string): number {
    return this.entries.get(key)?.delayMs ?? 0;
  }

  waitingMs(key: string, now: number): number {
    return Math.max(0, (this.entries.get(key)?.until ?? 0) - now);
  }

  forget(keep: (key: string) => boolean): void {
    for (const key of this.entries.keys()) if (!keep(key)) this.entries.delete(key);
  }
}
