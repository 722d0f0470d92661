import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { DEVICE_PUBLISH_CHANNELS, type Topics } from '../../shared/protocol/topics.js';
import { DEFAULT_MAX_PACKET_BYTES } from '../../shared/protocol/bounds.js';
import type { MessageBus } from './bus.js';
import type { ControlLink } from './dynsec.js';
import { SYS_CLIENTS_CONNECTED } from './mosquitto-acl.js';
import { EXTERNAL_BROKER_MAX_PACKET_BYTES } from './mosquitto-config.js';

export interface ExternalBrokerOptions {
  /** mqtt://HOST:PORT or mqtts://HOST:PORT. */
  url: string;
  username: string;
  password: string;
  clientId: string;
  topics: Topics;
  log: Logger;
  /** Called with the node of every message a device sends: its liveness (see below). */
  onDeviceActivity?: (node: string) => void;
  connectTimeoutMs?: number;
  /** A device message over this many bytes is dropped on arrival (DEFAULT_MAX_PACKET_BYTES when absent). */
  maxPacketBytes?: number;
}

type Handler = (topic: string, payload: Buffer) => void;

/** Messages the broker delivers before the part that wants them has subscribed again (a restart). */
const EARLY_BUFFER_LIMIT = 10_000;
/** And their bytes: ten thousand messages near the packet limit would be gigabytes. */
const EARLY_BUFFER_BYTES = 64 * 1024 * 1024;
const EARLY_BUFFER_WINDOW_MS = 60_000;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 30_000;
/** At most one log line this often about oversized messages: a device gone wrong must not flood the log. */
const OVERSIZE_LOG_INTERVAL_MS = 10_000;
/** Room for a PUBLISH packet's fixed header, topic and packet id beside its payload. */
const PUBLISH_OVERHEAD_BYTES = 64 * 1024;

/** Whether `topic` matches the subscription `pattern` ([MQTT-4.7]: `+` one level, `#` the rest; `$` topics only by name). */
export function topicMatches(pattern: string, topic: string): boolean {
  const p = pattern.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (p[0] === '+' || p[0] === '#')) return false;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '#') return true;
    if (i >= t.length || (p[i] !== '+' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

/**
 * The hub as a client of an external MQTT broker (docs/PROTOCOL.md, 'Basics' and 'Sessions, keepalive and liveness'; how a fleet grows past
 * one machine), speaking MQTT 3.1.1 with mqtt.js.
 *
 * * One session under a fixed client id with clean session off: the broker keeps the hub's
 *   subscriptions and queues QoS 1 messages (status reports, join requests) while the hub is
 *   restarting. Those arrive right after CONNACK, before the hub's parts have subscribed again,
 *   so they are held (up to a limit, for the first minute) and handed to each handler when it
 *   subscribes.
 * * Reconnects are ours, with doubling back-off (1 s to 30 s) and jitter; when the broker lost
 *   the session (it restarted without persistence) every subscription is made again.
 * * publish resolves when the broker has the message (PUBACK for QoS 1); subscribe resolves on
 *   SUBACK and fails when the broker refuses the pattern (its ACL does not give the hub the topic).
 * * Liveness: the embedded broker sees a device's keepalive pings; here the hub sees only what a
 *   device publishes (metrics every 15 s by default, status at least every minute), so a fleet
 *   with metrics off needs a node grace period above a minute.
 * * disconnectNode goes through the broker's accounts (`accounts`, the dynamic-security
 *   plugin): the device's account is deleted, which disconnects it and keeps it out.
 *   connectedClients is the broker's own count ($SYS/broker/clients/connected), minus the hub.
 */
export class ExternalBroker implements MessageBus {
  /** The broker's accounts, when the hub manages them (Mosquitto's dynamic security). */
  accounts?: { removeDevice(node: string): Promise<void>; stop(): void };
  /** Device messages dropped on arrival for their size (the broker refuses larger packets itself, unseen by the hub). */
  oversizeDropped = 0;
  private oversizeLoggedAt = 0;
  /** Raw access for the broker's control API: not counted as fleet traffic. */
  readonly control: ControlLink;
  readonly port: number;

  private readonly routes: { pattern: string; handler: Handler }[] = [];
  private early: { topic: string; payload: Buffer }[] = [];
  private earlyDropped = 0;
  private earlyBytes = 0;
  private readonly startedAt = Date.now();
  private brokerClients = 0;
  private closing = false;
  private reconnectTimer?: NodeJS.Timeout;
  private failures = 0;

  private constructor(
    private readonly client: MqttClient,
    private readonly opts: ExternalBrokerOptions,
  ) {
    const url = new URL(opts.url);
    this.port = Number(url.port) || (url.protocol === 'mqtts:' ? 8883 : 1883);
    this.control = {
      publish: (topic, payload) => this.send(topic, payload, { qos: 1, retain: false }),
      subscribe: (pattern, handler) => this.addRoute(pattern, handler),
    };
  }

  /** Connects; fails with a clear message when the broker cannot be reached or refuses the hub. */
  static async connect(opts: ExternalBrokerOptions): Promise<ExternalBroker> {
    const timeoutMs = opts.connectTimeoutMs ?? 15_000;
    const client = mqtt.connect(opts.url, {
      clientId: opts.clientId,
      username: opts.username,
      password: opts.password,
      protocolVersion: 4,
      clean: false,
      keepalive: 30,
      connectTimeout: timeoutMs,
      reconnectPeriod: 0,
    });
    const broker = new ExternalBroker(client, opts);
    client.on('message', (topic, payload) => broker.deliver(topic, payload));
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        client.off('error', fail);
        client.off('close', closed);
        client.off('connect', connected);
      };
      const fail = (err: Error & { code?: number | string }) => {
        done();
        client.end(true);
        const refused = err.code === 4 || err.code === 5;
        reject(new Error(refused ? `the MQTT broker at ${opts.url} refused the hub's credentials (user '${opts.username}', password from broker.password): check its configuration (flotilla broker-config)` : `cannot reach the MQTT broker at ${opts.url}: ${err.message}`));
      };
      const closed = () => fail(new Error('connection closed'));
      const connected = () => {
        done();
        resolve();
      };
      const timer = setTimeout(() => fail(new Error(`no answer within ${timeoutMs / 1000}s`)), timeoutMs);
      client.on('error', fail);
      client.on('close', closed);
      client.on('connect', connected);
    });
    broker.watchConnection();
    opts.log.info({ url: opts.url, port: broker.port, clientId: opts.clientId }, 'mqtt broker connected');
    await broker.addRoute(SYS_CLIENTS_CONNECTED, (_topic, payload) => {
      const n = Number(payload.toString('utf8'));
      if (Number.isFinite(n)) broker.brokerClients = n;
    }).catch((err: Error) => opts.log.warn({ err: err.message }, 'the broker does not give its client count; connectedClients stays 0'));
    return broker;
  }

  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    return this.send(topic, payload, opts);
  }

  subscribe(pattern: string, handler: Handler): Promise<void> {
    return this.addRoute(pattern, handler);
  }

  disconnectNode(node: string): void {
    if (!this.accounts) {
      this.opts.log.warn({ node }, 'cannot disconnect the device: the hub does not manage this broker\'s accounts');
      return;
    }
    this.opts.log.info({ node }, 'removing the device\'s account at the broker');
    this.accounts.removeDevice(node).catch((err: Error) => this.opts.log.error({ node, err: err.message }, 'could not remove the device\'s account at the broker; it is retried at the next hub start'));
  }

  connectedClients(): number {
    return Math.max(0, this.brokerClients - 1);
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    this.accounts?.stop();
    // A DISCONNECT, not a clean session: the broker keeps queueing for the hub while it is down.
    await Promise.race([this.client.endAsync(false), new Promise((r) => setTimeout(r, 5_000).unref())]);
    if (!this.client.disconnected) await this.client.endAsync(true);
  }

  private send(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    // The broker would disconnect the hub for a packet over its limit, and the hub would send it
    // again on reconnecting: refuse it here, once, with the reason.
    if (payload.length + PUBLISH_OVERHEAD_BYTES > EXTERNAL_BROKER_MAX_PACKET_BYTES) {
      return Promise.reject(new Error(`a message of ${payload.length} bytes on ${topic} is over the broker's packet limit of ${EXTERNAL_BROKER_MAX_PACKET_BYTES} bytes`));
    }
    return new Promise((resolve, reject) => {
      this.client.publish(topic, payload, { qos: opts.qos, retain: opts.retain }, (err) => (err ? reject(err) : resolve()));
    });
  }

  private async addRoute(pattern: string, handler: Handler): Promise<void> {
    this.routes.push({ pattern, handler });
    // Hand over what arrived for this pattern before it was subscribed (in arrival order).
    const held = this.early.filter((m) => topicMatches(pattern, m.topic));
    if (held.length > 0) {
      this.early = this.early.filter((m) => !topicMatches(pattern, m.topic));
      for (const m of held) this.earlyBytes -= m.payload.length;
      for (const m of held) this.call(handler, m.topic, m.payload);
    }
    await this.subscribeAtBroker(pattern);
  }

  private subscribeAtBroker(pattern: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.subscribe(pattern, { qos: 1 }, (err, granted, packet) => {
        // SUBACK 0x80: the broker's ACL does not give the hub this topic [MQTT-3.9.3].
        const refused = granted?.[0]?.qos === 128 || (packet && 'granted' in packet && (packet.granted as number[]).includes(128));
        if (refused) return reject(new Error(`the MQTT broker refused the hub's subscription to ${pattern}: check the hub's role in its ACLs`));
        if (err) return reject(err);
        resolve();
      });
    });
  }

  private deliver(topic: string, payload: Buffer): void {
    const limit = this.opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    if (payload.length > limit && !topic.startsWith('$')) {
      this.oversizeDropped++;
      const now = Date.now();
      if (now - this.oversizeLoggedAt >= OVERSIZE_LOG_INTERVAL_MS) {
        this.oversizeLoggedAt = now;
        this.opts.log.warn({ topic, bytes: payload.length, limit, dropped: this.oversizeDropped }, 'mqtt message over the size limit dropped');
      }
      return;
    }
    const activity = this.opts.onDeviceActivity;
    if (activity) {
      const parsed = this.opts.topics.parseNodeTopic(topic);
      // Presence is left out: an `offline` presence may be the broker publishing a dead device's will.
      if (parsed && parsed.channel !== 'presence' && DEVICE_PUBLISH_CHANNELS.includes(parsed.channel)) activity(parsed.node);
    }
    let matched = false;
    for (const route of this.routes) {
      if (!topicMatches(route.pattern, topic)) continue;
      matched = true;
      this.call(route.handler, topic, payload);
    }
    if (matched || Date.now() - this.startedAt > EARLY_BUFFER_WINDOW_MS) return;
    if (this.early.length < EARLY_BUFFER_LIMIT && this.earlyBytes + payload.length <= EARLY_BUFFER_BYTES) {
      this.early.push({ topic, payload });
      this.earlyBytes += payload.length;
    } else if (this.earlyDropped++ === 0) this.opts.log.warn({ limit: EARLY_BUFFER_LIMIT, bytes: EARLY_BUFFER_BYTES }, 'too many messages before the hub subscribed; dropping (devices resend their status)');
  }

  private call(handler: Handler, topic: string, payload: Buffer): void {
    try {
      handler(topic, payload);
    } catch (err) {
      // A handler's failure must never take the connection down with it.
      this.opts.log.error({ err, topic }, 'message handler failed');
    }
  }

  private watchConnection(): void {
    const log = this.opts.log;
    this.client.on('error', (err) => log.warn({ err: err.message }, 'mqtt broker connection error'));
    this.client.on('close', () => {
      if (this.closing) return;
      if (this.failures === 0) log.warn({ url: this.opts.url }, 'lost the connection to the mqtt broker; reconnecting');
      this.scheduleReconnect();
    });
    this.client.on('connect', (connack) => {
      const wasDown = this.failures > 0;
      this.failures = 0;
      if (wasDown) log.info({ sessionPresent: connack.sessionPresent }, 'reconnected to the mqtt broker');
      // A broker that lost the session (restarted without persistence) lost our subscriptions too.
      if (!connack.sessionPresent) {
        for (const pattern of new Set(this.routes.map((r) => r.pattern))) {
          this.subscribeAtBroker(pattern).catch((err: Error) => log.error({ err: err.message, pattern }, 'resubscription failed'));
        }
      }
    });
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closing) return;
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(this.failures, 10));
    this.failures++;
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      // Keep the stores: QoS 1 messages not yet acknowledged (or published while down) go out again.
      if (!this.closing) this.client.reconnect({ incomingStore: this.client.incomingStore, outgoingStore: this.client.outgoingStore });
    }, delay);
  }
}
