/** How long an expectation holds before it is taken as met anyway (Kubernetes' ExpectationsTimeout). */
export const EXPECTATIONS_TIMEOUT_MS = 5 * 60_000;

interface Expectation {
  adds: number;
  deletes: number;
  /** When it was set (ms since the epoch). */
  at: number;
}

/**
 * Kubernetes' ControllerExpectations (controller_utils.go): per controller key, the creations
 * and deletions a pass has made that the controller's watch has not reported back yet. Until
 * they are observed, the controller makes no further creations or deletions for that key: a
 * pass that runs before its own writes are seen (a cache behind the store, writes inside an
 * outer transaction whose events come at its commit) must not make the same pods again. An
 * expectation older than the timeout counts as met, so a lost event delays work, never stops it.
 */
export class ControllerExpectations {
  private readonly records = new Map<string, Expectation>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly timeoutMs = EXPECTATIONS_TIMEOUT_MS,
  ) {}

  /** Whether the key's pass may create or delete: nothing is awaited, or the wait timed out. */
  satisfied(key: string): boolean {
    const e = this.records.get(key);
    if (!e) return true;
    if ((e.adds <= 0 && e.deletes <= 0) || this.now() - e.at > this.timeoutMs) {
      this.records.delete(key);
      return true;
    }
    return false;
  }

  /** Records what a pass is about to write (SetExpectations); nothing to await clears the key. */
  expect(key: string, adds: number, deletes: number): void {
    if (adds <= 0 && deletes <= 0) this.records.delete(key);
    else this.records.set(key, { adds, deletes, at: this.now() });
  }

  creationObserved(key: string): void {
    const e = this.records.get(key);
    if (e) e.adds--;
  }

  deletionObserved(key: string): void {
    const e = this.records.get(key);
    if (e) e.deletes--;
  }

  /** Forgets the key: its object is gone. */
  forget(key: string): void {
    this.records.delete(key);
  }

  /**
   * Forgets every key: a store transaction rolled back, and writes expected from it will never
   * be seen. Cheap to get wrong in this direction: a pass that is let through reads the store.
   */
  forgetAll(): void {
    this.records.clear();
  }

  /** What the key still awaits, for tests and logs. */
  pending(key: string): { adds: number; deletes: number } | undefined {
    const e = this.records.get(key);
    return e ? { adds: e.adds, deletes: e.deletes } : undefined;
  }
}
