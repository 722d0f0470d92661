import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { PROTOCOL_VERSION, decodePayload, desiredStateSchema, encodePayload, type DesiredState, type EventBatch, type StatusReport } from '../../shared/protocol/messages.js';
import { rpcRequestSchema, type RpcRequest, type RpcResponse } from '../../shared/protocol/rpc.js';
import { deviceClientId, type Topics } from '../../shared/protocol/topics.js';
import { formatFieldErrors } from '../../shared/resources/fields.js';
import type { DeviceCredentials } from '../state/state.js';
import { Backoff } from './backoff.js';

/**
 * A quarter of the hub's default node grace period and more, as the kubelet renews its Lease
 * every 10 s against a 40 s grace: two pings may be lost before the node is marked Unknown.
 * An idle device pays a 2-byte PINGREQ (about 60 bytes on the wire) per period for it.
 */
export const DEFAULT_HEARTBEAT_SECONDS = 15;

export interface LinkHandlers {
  onDesired: (desired: DesiredState) => void;
  onConnected: () => void;
  /** A request of the hub on this node's rpc/req topic (logs, cancel, keepalive), validated. */
  onRpcRequest?: (req: RpcRequest) => void;
  onDisconnected?: () => void;
  /** The hub refused this device's credentials (revoked, replaced, or damaged on disk). */
  onRefused?: () => void;
  /**
   * A message of the overlay's peer table on `network/peers/{node}` (every node's, this one's
   * too), undecoded: the peer book checks it. An empty payload: the hub deleted the node.
   */
  onPeer?: (node: string, payload: Buffer) => void;
  /** A message on `network/relay`, undecoded; empty when the hub runs no relay. */
  onRelay?: (payload: Buffer) => void;
  /**
   * Services (docs/PROTOCOL.md, 'Services'), undecoded: the service book checks them. An empty
   * payload: the hub deleted the Service or the endpoint. `onServiceSession` comes on each
   * connect, before the subscriptions that bring every retained message again.
   */
  onService?: (namespace: string, name: string, payload: Buffer) => void;
  onEndpoint?: (namespace: string, service: string, pod: string, payload: Buffer) => void;
  onCatalog?: (payload: Buffer) => void;
  onServiceSession?: () => void;
}

/**
 * The device's MQTT session with the hub: one outbound connection, a persistent session
 * (clean=false) so QoS 1 messages wait for it, a retained presence with a last will, and
 * reconnects with back-off and jitter. It never gives up: a device keeps running its last
 * desired state for as long as the hub is away.
 */
export class DeviceLink {
  private client?: MqttClient;
  private readonly backoff = new Backoff();
  private reconnectTimer?: NodeJS.Timeout;
  private closing = false;
  private refusedUntilMs = 0;
  connected = false;
  /** Milliseconds since the epoch of the current connection attempt: grows with every attempt. */
  private session = Date.now();

  constructor(
    private readonly creds: DeviceCredentials,
    private readonly topics: Topics,
    private readonly handlers: LinkHandlers,
    private readonly log: Logger,
    /**
     * The MQTT keepalive: with nothing else to send, the device pings this often, and that ping
     * is its heartbeat at the hub (which marks a node Unknown after its grace period, 40 s by
     * default, of hearing nothing). The broker drops a connection silent for 1.5 times this.
     */
    private readonly heartbeatSeconds = DEFAULT_HEARTBEAT_SECONDS,
  ) {}

  start(): void {
    const node = this.creds.node;
    // One session number per connection attempt: its online message and its will carry the same one.
    const presence = (state: 'online' | 'offline') => encodePayload({ v: PROTOCOL_VERSION, state, ts: new Date().toISOString(), session: this.session });
    const client = mqtt.connect(this.creds.hub, {
      clientId: deviceClientId(node),
      username: this.creds.username,
      password: this.creds.password,
      clean: false,
      protocolVersion: 4,
      keepalive: this.heartbeatSeconds,
      connectTimeout: 15_000,
      // Reconnects are ours, with back-off and jitter (mqtt.js only knows a fixed period).
      reconnectPeriod: 0,
      // mqtt-packet's cache of 65,536 pre-encoded packet ids costs ~6 MB of heap: too much for a Pi.
      writeCache: false,
      will: { topic: this.topics.presence(node), payload: presence('offline'), qos: 1, retain: true },
    });
    this.client = client;
    client.on('connect', (connack) => {
      this.connected = true;
      this.backoff.reset();
      this.log.info({ hub: this.creds.hub, sessionPresent: connack.sessionPresent }, 'connected to hub');
      client.publish(this.topics.presence(node), presence('online'), { qos: 1, retain: true });
      // Subscribe every time: cheap, and right even when the broker lost the session (a hub restart).
      client.subscribe(this.topics.desired(node), { qos: 1 }, (err, granted) => {
        if (err || granted?.[0]?.qos === 128) this.log.error({ err }, 'the hub refused the subscription to the desired set');
      });
      if (this.handlers.onRpcRequest) {
        client.subscribe(this.topics.node(node, 'rpc/req'), { qos: 1 }, (err, granted) => {
          if (err || granted?.[0]?.qos === 128) this.log.error({ err }, 'the hub refused the subscription to rpc requests');
        });
      }
      this.handlers.onServiceSession?.();
      this.subscribeNetwork(client);
      this.handlers.onConnected();
    });
    client.on('message', (topic, payload) => {
      if (topic === this.topics.node(node, 'rpc/req')) return this.onRpc(payload);
      if (this.handlers.onPeer) {
        const peer = this.topics.parsePeerTopic(topic);
        if (peer !== undefined) return this.handlers.onPeer(peer, payload);
      }
      if (topic === this.topics.relay()) return this.handlers.onRelay?.(payload);
      if (this.handlers.onService) {
        const svc = this.topics.parseServiceTopic(topic);
        if (svc) return this.handlers.onService(svc.namespace, svc.name, payload);
        const ep = this.topics.parseEndpointTopic(topic);
        if (ep) return this.handlers.onEndpoint?.(ep.namespace, ep.service, ep.pod, payload);
        if (topic === this.topics.catalog()) return this.handlers.onCatalog?.(payload);
      }
      if (topic !== this.topics.desired(node)) return;
      if (payload.length === 0) {
        this.log.warn('the hub cleared this node\'s desired set (node deleted?); keeping the last one');
        return;
      }
      const decoded = decodePayload(desiredStateSchema, payload);
      if (!decoded.ok) {
        this.log.error({ errors: formatFieldErrors(decoded.errors) }, 'malformed desired set ignored; keeping the last good one');
        return;
      }
      this.handlers.onDesired(decoded.value);
    });
    client.on('error', (err: Error & { code?: number }) => {
      if (err.code === 4 || err.code === 5) {
        // Revoked or deleted: keep running pods, and ask again only rarely.
        this.log.error({ node }, 'the hub refused this device\'s credentials (revoked?); pods keep running');
        this.refusedUntilMs = Date.now() + 60_000;
        this.handlers.onRefused?.();
      } else this.log.warn({ err: err.message }, 'mqtt error');
    });
    client.on('close', () => {
      const was = this.connected;
      if (was) this.log.warn('disconnected from hub; pods keep running');
      this.connected = false;
      if (was) this.handlers.onDisconnected?.();
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.closing || this.reconnectTimer) return;
    const cap = this.refusedUntilMs > Date.now() ? 300_000 : 60_000;
    const delay = Math.max(this.backoff.next(cap), this.refusedUntilMs - Date.now());
    this.log.debug({ delayMs: delay }, 'reconnecting later');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closing || !this.client) return;
      this.session = Math.max(Date.now(), this.session + 1);
      const will = this.client.options.will;
      if (will) will.payload = encodePayload({ v: PROTOCOL_VERSION, state: 'offline', ts: new Date().toISOString(), session: this.session });
      this.client.reconnect();
    }, delay);
  }

  /**
   * The overlay's peer table and relay, when the agent runs the overlay. QoS 0: these are
   * retained state, not events. A device away misses nothing by it (subscribing again on each
   * connect brings every retained message anew), and the broker queues none of them for a device
   * that is offline, which at 10,000 devices would be a queue of every change for each one.
   */
  private subscribeNetwork(client: MqttClient): void {
    const wanted: [string, boolean][] = [
      [this.topics.allPeers(), this.handlers.onPeer !== undefined],
      [this.topics.relay(), this.handlers.onRelay !== undefined],
      [this.topics.allServices(), this.handlers.onService !== undefined],
      [this.topics.allEndpoints(), this.handlers.onEndpoint !== undefined],
      [this.topics.catalog(), this.handlers.onCatalog !== undefined],
    ];
    for (const [topic, want] of wanted) {
      if (!want) continue;
      client.subscribe(topic, { qos: 0 }, (err, granted) => {
        if (err || granted?.[0]?.qos === 128) this.log.error({ err, topic }, 'the hub refused a subscription to the pod network\'s retained state');
      });
    }
  }

  publishStatus(report: StatusReport): boolean {
    if (!this.client || !this.connected) return false;
    this.client.publish(this.topics.status(this.creds.node), encodePayload(report), { qos: 1 });
    return true;
  }

  /** Pod events, best-effort (QoS 1); false when not connected, so the caller keeps them. */
  publishEvents(batch: EventBatch): boolean {
    if (!this.client || !this.connected) return false;
    this.client.publish(this.topics.node(this.creds.node, 'events'), encodePayload(batch), { qos: 1 });
    return true;
  }

  /** An encoded metrics batch, QoS 0: a lost one costs resolution, never data (the counters are cumulative). */
  publishMetrics(payload: Buffer): boolean {
    if (!this.client || !this.connected) return false;
    this.client.publish(this.topics.node(this.creds.node, 'metrics'), payload, { qos: 0 });
    return true;
  }

  publishRpcResponse(res: RpcResponse): boolean {
    if (!this.client || !this.connected) return false;
    this.client.publish(this.topics.node(this.creds.node, 'rpc/res'), encodePayload(res), { qos: 1 });
    return true;
  }

  private onRpc(payload: Buffer): void {
    const decoded = decodePayload(rpcRequestSchema, payload);
    if (!decoded.ok) {
      this.log.warn({ errors: formatFieldErrors(decoded.errors) }, 'malformed rpc request ignored');
      return;
    }
    this.handlers.onRpcRequest?.(decoded.value);
  }

  /** A clean stop: say offline (the will is only for crashes), then disconnect. */
  async stop(): Promise<void> {
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    if (!client) return;
    if (this.connected) {
      const offline = encodePayload({ v: PROTOCOL_VERSION, state: 'offline', ts: new Date().toISOString(), session: this.session });
      await new Promise<void>((resolve) => client.publish(this.topics.presence(this.creds.node), offline, { qos: 1, retain: true }, () => resolve()));
    }
    await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
  }
}
