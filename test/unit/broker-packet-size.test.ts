import { createConnection } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Credentials } from '../../hub/auth/credentials.js';
import { BrokerAuth } from '../../hub/broker/auth.js';
import { EmbeddedBroker } from '../../hub/broker/embedded.js';
import type { Database } from '../../hub/store/db.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import { DEFAULT_MAX_PACKET_BYTES } from '../../shared/protocol/bounds.js';
import { JOIN_USERNAME, Topics, deviceClientId, deviceUsername, joinClientId } from '../../shared/protocol/topics.js';

// The embedded broker's packet limit: a packet over it is refused from its header, and its
// client's connection closed; what is within it is delivered as before.

const topics = new Topics();
const log = pino({ level: 'silent' });

describe('the embedded broker refuses packets over its limit', () => {
  let db: Database;
  let credentials: Credentials;
  let broker: EmbeddedBroker;
  let clients: MqttClient[];
  let received: { topic: string; bytes: number }[];

  beforeEach(async () => {
    db = openHubDatabase(':memory:');
    credentials = new Credentials(db);
    broker = await EmbeddedBroker.start({ host: '127.0.0.1', port: 0, auth: new BrokerAuth(credentials, topics, log), log });
    clients = [];
    received = [];
    for (const pattern of [topics.allNodes('status'), topics.allJoinRequests()]) await broker.subscribe(pattern, (topic, payload) => received.push({ topic, bytes: payload.length }));
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker.close();
    db.close();
  });

  async function connect(opts: IClientOptions): Promise<MqttClient> {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
    client.on('error', () => {});
    clients.push(client);
    return client;
  }

  function device(node: string): Promise<MqttClient> {
    return connect({ clientId: deviceClientId(node), username: deviceUsername(node), password: credentials.issueDevicePassword(node) });
  }

  /** Publishes at QoS 1 and tells whether the broker acknowledged it or closed the connection. */
  function outcome(client: MqttClient, topic: string, payload: Buffer): Promise<'acknowledged' | 'closed'> {
    return new Promise((resolve) => {
      client.once('close', () => resolve('closed'));
      client.publish(topic, payload, { qos: 1 }, (err) => {
        if (!err) resolve('acknowledged');
      });
    });
  }

  it('takes a device packet up to the limit, and refuses one over it', async () => {
    const a = await device('a');
    expect(await outcome(a, topics.status('a'), Buffer.alloc(DEFAULT_MAX_PACKET_BYTES - 1024, 0x20))).toBe('acknowledged');
    expect(await outcome(a, topics.status('a'), Buffer.alloc(DEFAULT_MAX_PACKET_BYTES + 1, 0x20))).toBe('closed');
    expect(received.map((m) => m.bytes)).toEqual([DEFAULT_MAX_PACKET_BYTES - 1024]);
    expect(broker.oversizeDropped).toBe(1);
  });

  it('holds a joining client to 64 KiB', async () => {
    const { token } = credentials.createToken('join');
    const j = await connect({ clientId: joinClientId('n1'), username: JOIN_USERNAME, password: token });
    expect(await outcome(j, topics.joinRequest(joinClientId('n1')), Buffer.alloc(65 * 1024, 0x20))).toBe('closed');
    expect(received).toEqual([]);
    expect(broker.oversizeDropped).toBe(1);
  });

  it('refuses a CONNECT that says it is long, before reading it', async () => {
    const socket = createConnection({ host: '127.0.0.1', port: broker.port });
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // CONNECT with a remaining length of 200,000 bytes, of which only the first few are sent.
    socket.write(Buffer.from([0x10, 0xc0, 0x9a, 0x0c, 0x00, 0x04]));
    await closed;
    expect(broker.oversizeDropped).toBe(1);
  });
});
