import mqtt, { type MqttClient } from 'mqtt';
import { joinHub } from '../../agent/link/join.js';
import { PROTOCOL_VERSION, decodePayload, statusReportSchema } from '../../shared/protocol/messages.js';
import { peerAnnouncementSchema, type NodeNetworkReport, type PeerAnnouncement } from '../../shared/protocol/network.js';
import { Topics, deviceClientId, deviceUsername } from '../../shared/protocol/topics.js';
import { getJson, type RunningHub } from './processes.js';

// Devices as the hub's side of the pod network sees them, without an agent: MQTT clients that
// join through the real join flow and report a WireGuard overlay as an agent does.

const topics = new Topics();

/** Keys as an agent makes them (32 bytes, base64); any such string will do for the hub. */
export const wireguardKey = (n: number) => Buffer.alloc(32, n).toString('base64');

export interface NetworkNodeJson {
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { overlay?: NodeNetworkReport; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

export const nodeJson = (hub: RunningHub, name: string) => getJson<NetworkNodeJson>(hub, ['node', name]);
export const networkCondition = (hub: RunningHub, name: string) => nodeJson(hub, name).status?.conditions?.find((c) => c.type === 'NetworkUnavailable');

/** An overlay report of device number `n`: ready, its own key and port, one LAN address. */
export function wireguardReport(n: number, fields: Partial<NodeNetworkReport> = {}): NodeNetworkReport {
  return { overlay: 'wireguard', ready: true, publicKey: wireguardKey(n), port: 51820 + n, implementation: 'wireguard-go', interface: 'flotilla-wg', addresses: [`192.168.7.${n}`], ...fields };
}

/** Every device connected, to close after each test; each device's password from its join, to connect again. */
const connected = new Set<FakeDevice>();
const passwords = new Map<string, string>();

export async function closeFakeDevices(): Promise<void> {
  await Promise.all([...connected].map((d) => d.close()));
}

/** A pod a fake device says it runs: its address, and whether its containers are ready. */
export interface FakePod {
  uid: string;
  name: string;
  namespace?: string;
  podIP: string;
  ready: boolean;
  containers: string[];
}

/** A device as the hub sees one: joined with the join token, connected with its own credentials, reporting status. */
export class FakeDevice {
  readonly messages: { topic: string; payload: Buffer }[] = [];

  private constructor(
    readonly name: string,
    readonly client: MqttClient,
  ) {
    client.on('message', (topic, payload) => this.messages.push({ topic, payload }));
  }

  static async join(url: string, token: string, name: string): Promise<FakeDevice> {
    const creds = await joinHub({ hub: url, token, name, labels: {}, topics, timeoutMs: 10_000 });
    passwords.set(name, creds.password);
    return FakeDevice.connect(url, name);
  }

  /** Connects again as a device that joined before. */
  static async connect(url: string, name: string): Promise<FakeDevice> {
    const password = passwords.get(name);
    if (!password) throw new Error(`${name} has not joined`);
    const client = await mqtt.connectAsync(url, { clientId: deviceClientId(name), username: deviceUsername(name), password, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 });
    client.on('error', () => {});
    const device = new FakeDevice(name, client);
    connected.add(device);
    return device;
  }

  async report(network: NodeNetworkReport | undefined, pods: FakePod[] = []): Promise<void> {
    const ts = new Date().toISOString();
    const report = statusReportSchema.parse({
      v: PROTOCOL_VERSION,
      ts: new Date().toISOString(),
      observedRev: null,
      node: { info: { hostname: this.name, operatingSystem: 'linux', architecture: 'arm64', agentVersion: 'test' }, capacity: { cpu: '1', memory: '1Gi', pods: '10' }, engineReady: true, ...(network ? { network } : {}) },
      pods: pods.map((p) => ({
        uid: p.uid,
        name: p.name,
        namespace: p.namespace ?? 'default',
        phase: 'Running',
        podIP: p.podIP,
        startTime: ts,
        containerStatuses: p.containers.map((name) => ({ name, image: 'fake', ready: p.ready, restartCount: 0, state: { running: { startedAt: ts } } })),
      })),
    });
    await this.client.publishAsync(topics.status(this.name), Buffer.from(JSON.stringify(report)), { qos: 1 });
  }

  /** The peer messages received for `node`, decoded ('cleared' for an empty one). */
  peers(node: string): (PeerAnnouncement | 'cleared')[] {
    return this.messages
      .filter((m) => m.topic === topics.peer(node))
      .map((m) => {
        if (m.payload.length === 0) return 'cleared';
        const d = decodePayload(peerAnnouncementSchema, m.payload);
        if (!d.ok) throw new Error(`invalid peer message: ${JSON.stringify(d.errors)}`);
        return d.value;
      });
  }

  async close(): Promise<void> {
    connected.delete(this);
    await this.client.endAsync(true);
  }
}
