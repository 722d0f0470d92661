import type { MqttClient } from 'mqtt';
import type { Packet } from 'mqtt-packet';
import type { Logger } from 'pino';
import { Agent, type AgentConfig } from '../../agent/agent.js';
import { PAUSE_IMAGE } from '../../agent/runtime/pause/image.js';
import type { StatusReport } from '../../shared/protocol/messages.js';
import { DEFAULT_TOPIC_PREFIX } from '../../shared/protocol/topics.js';
import { MemoryNetPlane } from './memory-network.js';
import { MemoryRuntime, type MemoryRuntimeOptions } from './memory-runtime.js';

export interface HollowDeviceOptions {
  /** The hub's MQTT URL (or a broker's in front of it). */
  hub: string;
  token: string;
  name: string;
  labels: Record<string, string>;
  /** This device's own state directory (credentials, last desired set, volumes). */
  stateDir: string;
  runtime?: MemoryRuntimeOptions;
  /** 0: no metrics. Default: the agent's own default. */
  metricsIntervalSeconds?: number;
  heartbeatSeconds?: number;
  /** The overlay on over an in-memory network, reading the peer table or not. */
  overlay?: { peerTable: boolean; address: string };
  /** One logger for every device of a process (a silent one for benchmarks). */
  log: Logger;
}

/** A predicate on the status reports a device sends; the first one it holds for is timed. */
export type StatusCondition = (report: StatusReport) => boolean;

/**
 * A simulated device in the manner of Kubernetes' kubemark: the real Agent (join, MQTT link,
 * desired state, reconcile, status, presence, events, metrics) over an in-memory container
 * engine. Only the engine differs from a device in the field.
 */
export class HollowDevice {
  readonly runtime: MemoryRuntime;
  readonly agent: Agent;
  /** Epoch milliseconds: when start() was called, when the join was done, when the MQTT session was first up. */
  startedAt = 0;
  joinedAt: number | undefined;
  connectedAt: number | undefined;
  private client: MqttClient | undefined;
  private readonly awaited = new Map<number, (at: number) => void>();

  constructor(private readonly opts: HollowDeviceOptions) {
    this.runtime = new MemoryRuntime({ images: [PAUSE_IMAGE], ...opts.runtime });
    const config: AgentConfig = {
      hub: opts.hub,
      token: opts.token,
      name: opts.name,
      labels: opts.labels,
      stateDir: opts.stateDir,
      topicPrefix: DEFAULT_TOPIC_PREFIX,
      pauseImage: PAUSE_IMAGE,
      podNetwork: 'flotilla',
      podSubnet: '10.88.0.0/16',
      maxPods: 110,
      // The agent's defaults (agent/main.ts).
      resyncIntervalMs: 10_000,
      statusIntervalMs: 60_000,
      ...(opts.heartbeatSeconds !== undefined ? { heartbeatSeconds: opts.heartbeatSeconds } : {}),
      ...(opts.metricsIntervalSeconds !== undefined ? { metricsIntervalSeconds: opts.metricsIntervalSeconds } : {}),
      ...(opts.overlay ? { overlay: 'wireguard' as const, networkPlane: new MemoryNetPlane(this.runtime, opts.overlay.address), peerTable: opts.overlay.peerTable } : {}),
    };
    this.agent = new Agent(config, this.runtime, opts.log);
  }

  /** Joins (unless the state directory holds credentials already) and opens the MQTT session. */
  async start(): Promise<void> {
    this.startedAt = Date.now();
    await this.agent.start();
    this.joinedAt = Date.now();
    this.client = mqttClientOf(this.agent);
    if (this.client.connected) this.connectedAt = Date.now();
    else this.client.once('connect', () => (this.connectedAt = Date.now()));
    // A QoS 1 status report is acknowledged by the broker after the hub's own subscription has
    // taken it in (aedes delivers to subscribers before it answers PUBACK): the moment the hub knows.
    this.client.on('packetreceive', (packet: Packet) => {
      if (packet.cmd === 'publish') this.count(packet.topic, packet.length ?? 0);
      if (packet.cmd !== 'puback' || packet.messageId === undefined) return;
      const done = this.awaited.get(packet.messageId);
      if (!done) return;
      this.awaited.delete(packet.messageId);
      done(Date.now());
    });
  }

  /** PUBLISH packets received, as ReceivedCount says; counted only for a device that reads the peer table. */
  readonly received = { peerMessages: 0, peerBytes: 0, otherMessages: 0, otherBytes: 0, lastPeers: [] as string[] };

  private count(topic: string, remainingLength: number): void {
    if (!this.opts.overlay?.peerTable) return;
    // On the wire: the fixed header's byte, the remaining length's 1 to 4 bytes, then the rest.
    const bytes = 1 + (remainingLength < 128 ? 1 : remainingLength < 16_384 ? 2 : remainingLength < 2_097_152 ? 3 : 4) + remainingLength;
    const peer = topic.startsWith(`${DEFAULT_TOPIC_PREFIX}/network/`);
    if (peer) {
      this.received.peerMessages++;
      this.received.peerBytes += bytes;
      this.received.lastPeers.push(topic.slice(topic.lastIndexOf('/') + 1));
      if (this.received.lastPeers.length > 16) this.received.lastPeers.shift();
    } else {
      this.received.otherMessages++;
      this.received.otherBytes += bytes;
    }
  }

  get name(): string {
    return this.opts.name;
  }

  /** Resolves once the MQTT session has been up (at once if it has). */
  connectedOnce(): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error(`${this.opts.name} has not started`));
    if (this.connectedAt !== undefined) return Promise.resolve();
    return new Promise((resolve) => client.once('connect', () => resolve()));
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /**
   * Resolves with the epoch milliseconds at which the hub acknowledged the first status report,
   * sent from now on, that `condition` holds for.
   */
  reported(condition: StatusCondition): Promise<number> {
    const client = this.client;
    if (!client) return Promise.reject(new Error(`${this.opts.name} has not started`));
    const statusTopic = `${DEFAULT_TOPIC_PREFIX}/nodes/${this.opts.name}/status`;
    return new Promise((resolve) => {
      const onSend = (packet: Packet) => {
        if (packet.cmd !== 'publish' || packet.topic !== statusTopic || packet.messageId === undefined) return;
        const report = JSON.parse(packet.payload.toString()) as StatusReport;
        if (!condition(report)) return;
        client.off('packetsend', onSend);
        this.awaited.set(packet.messageId, resolve);
      };
      client.on('packetsend', onSend);
    });
  }

  async stop(): Promise<void> {
    await this.agent.stop();
  }
}

/**
 * The MQTT client of an agent's link. The agent keeps it to itself; the hollow device reads it
 * to time what goes over the wire, and fails loudly if the agent's shape has changed.
 */
function mqttClientOf(agent: Agent): MqttClient {
  const client = (agent as unknown as { link?: { client?: MqttClient } }).link?.client;
  if (!client || typeof client.on !== 'function') throw new Error('the agent has no MQTT client where the hollow device expects one (agent.link.client)');
  return client;
}

/**
 * The condition "at least `pods` pods whose containers all run one of `images` are Running,
 * every container of theirs running".
 */
export function podsRunning(images: readonly string[], pods: number): StatusCondition {
  const wanted = new Set(images);
  return (report) => {
    let running = 0;
    for (const pod of report.pods) {
      if (!pod.containerStatuses.every((c) => wanted.has(c.image))) continue;
      if (pod.phase === 'Running' && pod.containerStatuses.every((c) => c.state.running)) running++;
    }
    return running >= pods;
  };
}
