import { pullBackoffKey } from './plan.js';

const PULL_BACKOFF_INITIAL_MS = 10_000;
const PULL_BACKOFF_MAX_MS = 300_000;

export interface PullFailure {
  podUid: string;
  image: string;
  /** No new attempt before this time (ImagePullBackOff). */
  until: number;
  delayMs: number;
  message: string;
  failedAt: number;
}

/**
 * Failed pulls and their back-off (10 s doubling to 5 min, as the kubelet's), per pod and
 * image as the kubelet keys them: a pod without the credentials a registry wants does not hold
 * back another pod's pull of the same image. The pause image's are one for every pod.
 */
export class PullBackoff {
  private readonly failures = new Map<string, PullFailure>();

  constructor(private readonly pauseImage: string) {}

  /** The planner's view, by pullBackoffKey. */
  get view(): ReadonlyMap<string, PullFailure> {
    return this.failures;
  }

  get(podUid: string, image: string): PullFailure | undefined {
    return this.failures.get(pullBackoffKey(podUid, image, this.pauseImage));
  }

  failed(podUid: string, image: string, message: string, now: number): void {
    const key = pullBackoffKey(podUid, image, this.pauseImage);
    const prev = this.failures.get(key);
    const delayMs = prev ? Math.min(prev.delayMs * 2, PULL_BACKOFF_MAX_MS) : PULL_BACKOFF_INITIAL_MS;
    this.failures.set(key, { podUid, image, until: now + delayMs, delayMs, message, failedAt: now });
  }

  /** The image is here now: no pod waits for it any more. */
  pulled(image: string): void {
    for (const [key, f] of this.failures) if (f.image === image) this.failures.delete(key);
  }

  /** Forgets the failures that no desired pod waits for (the pod went, or wants another image now). */
  keepOnly(pods: readonly { uid: string; spec: { containers: readonly { image: string }[] } }[]): void {
    const wanted = new Set([this.pauseImage, ...pods.flatMap((p) => p.spec.containers.map((c) => pullBackoffKey(p.uid, c.image, this.pauseImage)))]);
    for (const key of this.failures.keys()) if (!wanted.has(key)) this.failures.delete(key);
  }

  values(): IterableIterator<PullFailure> {
    return this.failures.values();
  }
}
