import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAgentArgs } from '../../agent/main.js';
import { Credentials } from '../../hub/auth/credentials.js';
import { BrokerAuth } from '../../hub/broker/auth.js';
import { EmbeddedBroker } from '../../hub/broker/embedded.js';
import { NodeHeartbeats } from '../../hub/dispatch/heartbeats.js';
import type { Database } from '../../hub/store/db.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import { Topics, deviceClientId, deviceUsername } from '../../shared/protocol/topics.js';

// A device's liveness at the hub: every packet of its MQTT connection, its keepalive pings
// included, is a heartbeat the node lifecycle controller's grace period counts from.

const topics = new Topics();
const log = pino({ level: 'silent' });

describe('heartbeats from the embedded broker', () => {
  let db: Database;
  let credentials: Credentials;
  let broker: EmbeddedBroker;
  let heartbeats: NodeHeartbeats;
  let client: MqttClient | undefined;

  beforeEach(async () => {
    db = openHubDatabase(':memory:');
    credentials = new Credentials(db);
    heartbeats = new NodeHeartbeats();
    broker = await EmbeddedBroker.start({ host: '127.0.0.1', port: 0, auth: new BrokerAuth(credentials, topics, log), log, onDeviceActivity: (node) => heartbeats.heard(node) });
  });
  afterEach(async () => {
    await client?.endAsync(true);
    await broker.close();
    db.close();
  });

  async function device(node: string, keepalive: number): Promise<MqttClient> {
    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: deviceClientId(node), username: deviceUsername(node), password: credentials.issueDevicePassword(node), keepalive, clean: false });
    return client;
  }

  it('counts an idle device\'s keepalive pings', async () => {
    await device('edge-1', 1);
    expect(heartbeats.lastHeardAt('edge-1')).toBeUndefined();
    const before = Date.now();
    await new Promise<void>((resolve) => client!.once('packetreceive', (p) => p.cmd === 'pingresp' && resolve()));
    expect(heartbeats.lastHeardAt('edge-1')).toBeGreaterThanOrEqual(before);
  });

  it('counts what a device publishes, and nothing the hub publishes itself', async () => {
    const c = await device('edge-2', 60);
    await broker.publish(topics.desired('edge-2'), Buffer.from('{}'), { qos: 1, retain: false });
    expect(heartbeats.lastHeardAt('edge-2')).toBeUndefined();
    await c.publishAsync(topics.status('edge-2'), '{}', { qos: 1 });
    expect(heartbeats.lastHeardAt('edge-2')).toBeDefined();
  });
});

describe('flotilla agent --heartbeat', () => {
  const base = ['--hub', 'mqtt://127.0.0.1:1883', '--name', 'edge-1'];

  it('sets the MQTT keepalive, and leaves the 15 s default when absent', () => {
    const given = parseAgentArgs([...base, '--heartbeat', '5']);
    expect(given !== 'help' && given !== 'version' && given.config.heartbeatSeconds).toBe(5);
    const absent = parseAgentArgs(base);
    expect(absent !== 'help' && absent !== 'version' && absent.config.heartbeatSeconds).toBeUndefined();
  });

  it('refuses a heartbeat that is not a whole number of seconds from 1 to 3600', () => {
    for (const bad of ['0', '1.5', 'often', '7200']) expect(() => parseAgentArgs([...base, '--heartbeat', bad])).toThrow(`--heartbeat: '${bad}' is not a whole number of seconds between 1 and 3600`);
  });
});
