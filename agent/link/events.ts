import type { Logger } from 'pino';
import {
  MAX_EVENTS_PER_BATCH,
  MAX_EVENT_MESSAGE_LENGTH,
  MAX_EVENT_REASON_LENGTH,
  PROTOCOL_VERSION,
  type DeviceEvent,
  type DeviceNodeEvent,
  type DevicePodEvent,
  type EventBatch,
} from '../../shared/protocol/messages.js';
import { truncate } from '../../shared/protocol/bounds.js';
import type { NodeEvent } from '../node/image-gc.js';
import type { PodEvent } from '../reconcile/execute.js';

export interface EventBatchingOptions {
  /** At most one batch per interval: a burst (a pod starting: Pulling, Pulled, Created, Started) is one message. */
  flushIntervalMs: number;
  maxBatch: number;
  /** Events kept while the hub is away; past this the oldest go, counted. */
  maxBuffered: number;
}

/** One batch a second; 1,000 events (some 300 KB) wait for the hub, then the oldest are dropped. */
export const EVENT_BATCHING: EventBatchingOptions = { flushIntervalMs: 1_000, maxBatch: MAX_EVENTS_PER_BATCH, maxBuffered: 1_000 };

/**
 * Sends pod and node events to the hub in batches. Events are best-effort, as in Kubernetes: while the
 * hub is away they wait in a bounded buffer, and when that is full the oldest are dropped and
 * counted (the count goes to the hub with the next batch), so a device that is offline for days
 * does not grow without bound.
 */
export class EventBatcher {
  private buffer: DeviceEvent[] = [];
  private dropped = 0;
  private timer?: NodeJS.Timeout;
  private lastSentAt = -Infinity;

  constructor(
    private readonly publish: (batch: EventBatch) => boolean,
    private readonly opts: EventBatchingOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get buffered(): number {
    return this.buffer.length;
  }

  add(event: DeviceEvent): void {
    this.buffer.push(event);
    if (this.buffer.length > this.opts.maxBuffered) {
      this.buffer.shift();
      if (this.dropped === 0) this.log.warn({ maxBuffered: this.opts.maxBuffered }, 'event buffer full (hub away?); dropping the oldest events');
      this.dropped++;
    }
    this.schedule();
  }

  /** The link is up again: send what waited. */
  kick(): void {
    this.schedule();
  }

  /** Sends one batch now if the link takes it; the rest follow one interval apart. */
  flush(): void {
    if (this.buffer.length === 0) return;
    const events = this.buffer.slice(0, this.opts.maxBatch);
    if (!this.publish({ v: PROTOCOL_VERSION, events, ...(this.dropped ? { dropped: this.dropped } : {}) })) return;
    if (this.dropped) this.log.warn({ dropped: this.dropped }, 'events were dropped while the hub was away');
    this.buffer.splice(0, events.length);
    this.dropped = 0;
    this.lastSentAt = this.now();
    this.schedule();
  }

  /** Last chance to send what is buffered (a clean stop); nothing is kept after. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.buffer.length === 0) return;
    const waitMs = Math.max(0, this.lastSentAt + this.opts.flushIntervalMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, waitMs);
    this.timer.unref();
  }
}

interface PodRef {
  name: string;
  namespace: string;
}

/** How long the name of a pod that left the desired set is kept: its containers are still being stopped. */
const FORGET_AFTER_MS = 10 * 60_000;

/**
 * The names of the pods the agent was told to run, by uid, so that an event about a pod can
 * name it, even a Killing event about a pod that has just left the desired set.
 */
export class PodDirectory {
  private readonly pods = new Map<string, PodRef & { goneSince?: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  remember(desired: readonly { uid: string; name: string; namespace: string }[]): void {
    const now = this.now();
    const live = new Set(desired.map((p) => p.uid));
    for (const [uid, ref] of this.pods) {
      if (live.has(uid)) continue;
      ref.goneSince ??= now;
      if (now - ref.goneSince > FORGET_AFTER_MS) this.pods.delete(uid);
    }
    for (const p of desired) this.pods.set(p.uid, { name: p.name, namespace: p.namespace });
  }

  lookup(uid: string): PodRef | undefined {
    const ref = this.pods.get(uid);
    return ref && { name: ref.name, namespace: ref.namespace };
  }
}

/** An executor's event in the events channel's shape, cut to its bounds. */
export function devicePodEvent(e: PodEvent, pod: PodRef, at: Date): DevicePodEvent {
  return {
    podUid: e.podUid,
    podName: pod.name,
    namespace: pod.namespace,
    ...(e.container ? { container: e.container } : {}),
    type: e.type,
    reason: truncate(e.reason, MAX_EVENT_REASON_LENGTH),
    message: truncate(e.message, MAX_EVENT_MESSAGE_LENGTH),
    ts: at.toISOString(),
  };
}

/** An event about the device itself, in the events channel's shape: about its Node. */
export function deviceNodeEvent(e: NodeEvent, node: string, at: Date): DeviceNodeEvent {
  return { kind: 'Node', node, type: e.type, reason: truncate(e.reason, MAX_EVENT_REASON_LENGTH), message: truncate(e.message, MAX_EVENT_MESSAGE_LENGTH), ts: at.toISOString() };
}

