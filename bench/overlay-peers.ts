import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { joinHub } from '../agent/link/join.js';
import { PROTOCOL_VERSION, statusReportSchema } from '../shared/protocol/messages.js';
import { Topics, deviceClientId, deviceUsername } from '../shared/protocol/topics.js';

// Peers for a device to hold, without a device behind each: "paper" nodes that join the hub as
// devices do and send one status report whose overlay part carries a random WireGuard key and a
// documentation address. The hub then allocates their pod CIDRs and publishes their peer
// announcements itself, exactly as for real devices (a peer published by anyone else would be
// cleared by the hub as a peer of no node).

export interface PaperPeers {
  nodes: string[];
  close(): Promise<void>;
}

function statusWithKey(node: string, index: number): string {
  return JSON.stringify(statusReportSchema.parse({
    v: PROTOCOL_VERSION,
    ts: new Date().toISOString(),
    observedRev: null,
    node: {
      info: { hostname: node, operatingSystem: 'linux', architecture: 'amd64', agentVersion: 'paper' },
      capacity: { cpu: '1', memory: '1Gi', pods: '10' },
      engineReady: true,
      network: {
        overlay: 'wireguard',
        ready: true,
        // Any 32 bytes are a Curve25519 public key WireGuard accepts.
        publicKey: randomBytes(32).toString('base64'),
        port: 51820,
        implementation: 'wireguard-go',
        interface: 'flotilla-wg',
        addresses: [`192.0.2.${(index % 250) + 1}`],
      },
    },
    pods: [],
  }));
}

/**
 * Joins `count` paper nodes named `${prefix}-N` and has each report its key once; they stay
 * connected until close(), or with `disconnect` leave once the hub has the report (thousands of
 * open sessions would measure the test, not the hub).
 */
export async function paperPeers(opts: { mqttUrl: string; joinToken: string; count: number; prefix: string; disconnect?: boolean; concurrency?: number }): Promise<PaperPeers> {
  const topics = new Topics();
  const clients: MqttClient[] = [];
  const nodes = Array.from({ length: opts.count }, (_, i) => `${opts.prefix}-${i}`);
  const close = async (): Promise<void> => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
  };
  try {
    // A few at a time: the hub takes joins one by one anyway.
    const step = opts.concurrency ?? 10;
    for (let i = 0; i < nodes.length; i += step) {
      await Promise.all(nodes.slice(i, i + step).map(async (node, j) => {
        const creds = await joinHub({ hub: opts.mqttUrl, token: opts.joinToken, name: node, labels: {}, topics, timeoutMs: 60_000 });
        const client = await mqtt.connectAsync(opts.mqttUrl, { clientId: deviceClientId(node), username: deviceUsername(node), password: creds.password, reconnectPeriod: 0 });
        // QoS 1: PUBACK comes once the hub's subscription has the report.
        await client.publishAsync(topics.node(node, 'status'), statusWithKey(node, i + j), { qos: 1 });
        if (opts.disconnect) await client.endAsync();
        else clients.push(client);
      }));
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { nodes, close };
}
