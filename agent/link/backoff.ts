/**
 * Reconnect delays: exponential with "equal jitter" (half fixed, half random), so that a fleet
 * whose hub comes back does not reconnect in one thundering herd.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs = 1_000,
    private readonly maxMs = 60_000,
    private readonly random: () => number = Math.random,
  ) {}

  next(capMs = this.maxMs): number {
    const ceiling = Math.min(capMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  reset(): void {
    this.attempt = 0;
  }
}
