import type { Logger } from 'pino';
import { decodePayload, eventBatchSchema, type DeviceEvent } from '../../shared/protocol/messages.js';
import type { Topics } from '../../shared/protocol/topics.js';
import { formatFieldErrors } from '../../shared/resources/validate.js';
import type { MessageBus } from '../broker/bus.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';

/**
 * The most events one node may have recorded per second (twice what a well-behaved agent
 * sends); more are dropped, so a device gone wrong cannot flood the store.
 */
export const MAX_DEVICE_EVENTS_PER_SECOND = 200;
/** A device's clock is trusted within these bounds (a board without a real-time clock may boot in 1970). */
const MAX_CLOCK_AHEAD_MS = 60_000;
const MAX_EVENT_AGE_MS = 24 * 3_600_000;

/**
 * Takes in the events devices publish on `…/nodes/{node}/events` and records them as Events
 * (the recorder given is the agents' one: component flotilla-agent), with the node as their
 * source host, as the kubelet's events. A device may only speak of itself: an event about a pod
 * that is unknown, of another incarnation (uid) or bound elsewhere, or about another node, is
 * refused (ignored and counted).
 */
export class DeviceEventIngest {
  /** Batches refused by their schema (malformed, or a field over its bound). */
  invalid = 0;
  /** Batches refused by their schema, and events over the rate limit. */
  dropped = 0;
  ignored = 0;
  private readonly windows = new Map<string, { start: number; count: number; overflowLogged: boolean }>();

  constructor(
    private readonly store: ObjectStore,
    private readonly bus: MessageBus,
    private readonly topics: Topics,
    private readonly recorder: EventRecorder,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    await this.bus.subscribe(this.topics.allNodes('events'), (topic, payload) => this.onEvents(topic, payload));
  }

  onEvents(topic: string, payload: Buffer): void {
    const parsed = this.topics.parseNodeTopic(topic);
    if (!parsed || parsed.channel !== 'events') return;
    const node = parsed.node;
    const decoded = decodePayload(eventBatchSchema, payload);
    if (!decoded.ok) {
      this.invalid++;
      this.dropped++;
      this.log.warn({ node, channel: 'events', reason: formatFieldErrors(decoded.errors) }, 'malformed payload dropped');
      return;
    }
    const batch = decoded.value;
    if (batch.dropped) this.log.warn({ node, dropped: batch.dropped }, 'the device dropped events while the hub was away');
    if (!this.store.has('Node', '', node)) return;
    // A batch usually speaks of a few pods several times (Killing, Created, Started): each is looked up once.
    const pods = new Map<string, { uid: string; nodeName: string | undefined } | undefined>();
    this.store.transaction(() => {
      for (const event of batch.events) this.record(node, event, pods);
    });
  }

  private record(node: string, event: DeviceEvent, pods: Map<string, { uid: string; nodeName: string | undefined } | undefined>): void {
    if (event.kind === 'Node') {
      // The topic names the sender (the broker's ACL lets a device publish only on its own).
      const self = this.store.get('Node', '', event.node);
      if (event.node !== node || !self) {
        this.ignored++;
        this.log.warn({ node, about: event.node, reason: event.reason }, 'device event about another node ignored');
        return;
      }
      if (!this.admit(node)) return;
      this.recorder.record(self, event.type, event.reason, event.message, node, this.eventTime(event.ts));
      return;
    }
    const key = `${event.namespace}/${event.podName}`;
    if (!pods.has(key)) pods.set(key, this.store.podBinding(event.namespace, event.podName));
    const pod = pods.get(key);
    if (!pod || pod.uid !== event.podUid || pod.nodeName !== node) {
      this.ignored++;
      this.log.warn({ node, pod: `${event.namespace}/${event.podName}`, reason: event.reason }, 'device event about a pod not bound to that node ignored');
      return;
    }
    if (!this.admit(node)) return;
    this.recorder.record({ kind: 'Pod', name: event.podName, namespace: event.namespace, uid: pod.uid }, event.type, event.reason, event.message, node, this.eventTime(event.ts));
  }

  /** A fixed one-second window per node. */
  private admit(node: string): boolean {
    const now = this.now();
    let w = this.windows.get(node);
    if (!w || now - w.start >= 1_000) {
      w = { start: now, count: 0, overflowLogged: false };
      this.windows.set(node, w);
    }
    if (++w.count <= MAX_DEVICE_EVENTS_PER_SECOND) return true;
    this.dropped++;
    if (!w.overflowLogged) this.log.warn({ node, limit: MAX_DEVICE_EVENTS_PER_SECOND }, 'too many events from a device; dropping the rest of this second');
    w.overflowLogged = true;
    return false;
  }

  private eventTime(ts: string): Date {
    const now = this.now();
    const at = Date.parse(ts);
    return Number.isFinite(at) && at <= now + MAX_CLOCK_AHEAD_MS && at >= now - MAX_EVENT_AGE_MS ? new Date(at) : new Date(now);
  }
}
