import type { StepFailureReason } from './execute.js';
import type { Waiting } from './status.js';

const FAILURE_BACKOFF_INITIAL_MS = 10_000;
const FAILURE_BACKOFF_MAX_MS = 300_000;

export interface StepFailure {
  reason: StepFailureReason;
  message: string;
  /** The spec hash of the container (or sandbox) that failed: a changed spec is tried again at once. */
  hash: string;
  /** No new attempt before this time. */
  until: number;
  delayMs: number;
}

/**
 * Containers and pod sandboxes that the engine refused to make, by `podUid/container` (or
 * `podUid/` for the sandbox), each with its own back-off (10 s doubling to 5 min): the planner
 * leaves them alone until then, so one pod that the engine refuses neither holds back the others
 * nor makes the agent ask the engine again on every pass. As the kubelet keys its back-off by
 * the container's spec hash, a spec that changes is tried at once.
 */
export class StepFailures {
  private readonly failures = new Map<string, StepFailure>();

  /** The planner's view. */
  get view(): ReadonlyMap<string, StepFailure> {
    return this.failures;
  }

  failed(key: string, hash: string, reason: StepFailureReason, message: string, now: number): void {
    const prev = this.failures.get(key);
    const delayMs = prev && prev.hash === hash ? Math.min(prev.delayMs * 2, FAILURE_BACKOFF_MAX_MS) : FAILURE_BACKOFF_INITIAL_MS;
    this.failures.set(key, { reason, message, hash, until: now + delayMs, delayMs });
  }

  /** The container (or sandbox) was made: its failures are over. */
  succeeded(key: string): void {
    this.failures.delete(key);
  }

  /** Forgets the failures of pods no longer desired, and of containers their spec no longer has. */
  keepOnly(pods: readonly { uid: string; spec: { containers: readonly { name: string }[] } }[]): void {
    const wanted = new Set(pods.flatMap((p) => [`${p.uid}/`, ...p.spec.containers.map((c) => `${p.uid}/${c.name}`)]));
    for (const key of this.failures.keys()) if (!wanted.has(key)) this.failures.delete(key);
  }

  /**
   * What the container waits for, in the kubelet's terms: the reason of its last failure. A pod
   * whose sandbox cannot be made has its containers ContainerCreating, as the kubelet shows them,
   * with the engine's words in the message.
   */
  waiting(key: string): Waiting | undefined {
    const f = this.failures.get(key);
    if (!f) return undefined;
    if (f.reason === 'FailedCreatePodSandBox') return { reason: 'ContainerCreating', message: `Failed to create pod sandbox: ${f.message}` };
    return { reason: f.reason, message: f.message };
  }

  values(): IterableIterator<StepFailure> {
    return this.failures.values();
  }
}

/** The key of a step's failure: its container, or the pod's sandbox. */
export function failureKey(podUid: string, container?: string): string {
  return `${podUid}/${container ?? ''}`;
}
