import type { Step } from './plan.js';

type PullStep = Extract<Step, { action: 'pull' }>;

export interface PullQueueHandlers {
  /** Pulls the image (the executor's pull step). */
  pull: (step: PullStep) => Promise<void>;
  pulled: (step: PullStep) => void;
  failed: (step: PullStep, message: string) => void;
  /** A pull ended, done or failed: time to reconcile again. */
  ended: () => void;
}

/**
 * Image pulls in the background, one at a time (the kubelet's serialized pulls), so that a slow
 * or silent registry holds back no pod whose image is already on the device: the reconcile
 * queues a pull and goes on; the planner makes nothing of an image being pulled, and the end of
 * each pull leads to a new reconcile.
 */
export class PullQueue {
  private readonly queued = new Set<string>();
  private tail: Promise<void> = Promise.resolve();
  private readonly pulledSince = new Set<string>();
  private stopped = false;

  constructor(private readonly handlers: PullQueueHandlers) {}

  /** The images queued or being pulled: the planner's view. */
  get pulling(): ReadonlySet<string> {
    return this.queued;
  }

  /** Queues a pull of the step's image, unless one is already queued. */
  add(step: PullStep): void {
    if (this.queued.has(step.image)) return;
    this.queued.add(step.image);
    this.tail = this.tail.then(async () => {
      try {
        if (this.stopped) return;
        await this.handlers.pull(step);
        this.pulledSince.add(step.image);
        this.handlers.pulled(step);
      } catch (err) {
        this.handlers.failed(step, err instanceof Error ? err.message : String(err));
      } finally {
        this.queued.delete(step.image);
        if (!this.stopped) this.handlers.ended();
      }
    });
  }

  /** The images pulled since the last call (a reconcile begins): pullPolicy Always is satisfied by them. */
  takePulled(): Set<string> {
    const pulled = new Set(this.pulledSince);
    this.pulledSince.clear();
    return pulled;
  }

  /** No queued pull starts after this; one under way ends by itself. */
  stop(): void {
    this.stopped = true;
  }
}
