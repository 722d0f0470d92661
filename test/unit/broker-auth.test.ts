import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Credentials } from '../../hub/auth/credentials.js';
import { BrokerAuth } from '../../hub/broker/auth.js';
import { EmbeddedBroker } from '../../hub/broker/embedded.js';
import type { Database } from '../../hub/store/db.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import { JOIN_USERNAME, Topics, deviceClientId, deviceUsername, joinClientId } from '../../shared/protocol/topics.js';

// MQTT 3.1.1 CONNACK return codes and the SUBACK failure code.
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
const SUBACK_FAILURE = 0x80;

const topics = new Topics();
const log = pino({ level: 'silent' });

describe('BrokerAuth on the embedded broker', () => {
  let db: Database;
  let credentials: Credentials;
  let broker: EmbeddedBroker;
  let clients: MqttClient[];
  /** Topics of the messages the hub received on its node and join subscriptions. */
  let received: string[];

  beforeEach(async () => {
    db = openHubDatabase(':memory:');
    credentials = new Credentials(db);
    broker = await EmbeddedBroker.start({ host: '127.0.0.1', port: 0, auth: new BrokerAuth(credentials, topics, log), log });
    clients = [];
    received = [];
    for (const pattern of [topics.allNodes('status'), topics.allNodes('presence'), topics.allNodes('desired'), topics.allJoinRequests()]) {
      await broker.subscribe(pattern, (topic) => received.push(topic));
    }
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker.close();
    db.close();
  });

  // -------------------------------------------------------------------------------------------
  // Helpers

  async function connect(opts: IClientOptions): Promise<MqttClient> {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
    client.on('error', () => {});
    clients.push(client);
    return client;
  }

  /** The CONNACK return code of a refused connection (fails if the connection is accepted). */
  async function refusal(opts: IClientOptions): Promise<number> {
    try {
      await connect(opts);
    } catch (err) {
      return (err as { code: number }).code;
    }
    return expect.fail('the connection was accepted');
  }

  function deviceOptions(node: string, password: string, clientId = deviceClientId(node)): IClientOptions {
    return { clientId, username: deviceUsername(node), password };
  }

  function joinOptions(token: string, clientId = joinClientId('nonce1')): IClientOptions {
    return { clientId, username: JOIN_USERNAME, password: token };
  }

  async function device(node: string): Promise<MqttClient> {
    return connect(deviceOptions(node, credentials.issueDevicePassword(node)));
  }

  /** The granted QoS codes of the SUBACK for one subscription, whether granted or refused. */
  function suback(client: MqttClient, topic: string): Promise<number[]> {
    return new Promise((resolve, reject) => {
      client.subscribe(topic, { qos: 1 }, (err, _granted, packet) => {
        if (packet && 'granted' in packet) resolve(packet.granted as number[]);
        else reject(err ?? new Error('no SUBACK'));
      });
    });
  }

  function closed(client: MqttClient): Promise<void> {
    return new Promise((resolve) => client.once('close', () => resolve()));
  }

  const payload = (value: unknown) => Buffer.from(JSON.stringify(value));

  // -------------------------------------------------------------------------------------------

  describe('authentication', () => {
    it('refuses a client without credentials (not authorised)', async () => {
      expect(await refusal({ clientId: 'anonymous' })).toBe(NOT_AUTHORIZED);
      expect(await refusal({ clientId: deviceClientId('a'), username: deviceUsername('a') })).toBe(NOT_AUTHORIZED);
    });

    it('refuses a device with a wrong password (bad user name or password)', async () => {
      credentials.issueDevicePassword('a');
      expect(await refusal(deviceOptions('a', 'not-the-password'))).toBe(BAD_USERNAME_OR_PASSWORD);
    });

    it('refuses a device that never joined', async () => {
      const password = credentials.issueDevicePassword('a');
      expect(await refusal(deviceOptions('b', password))).toBe(BAD_USERNAME_OR_PASSWORD);
    });

    it('refuses an unknown user name', async () => {
      const { token } = credentials.createToken('admin');
      expect(await refusal({ clientId: 'admin-1', username: 'admin', password: token })).toBe(BAD_USERNAME_OR_PASSWORD);
    });

    it('accepts a joining client with a valid join token and a join- client id', async () => {
      const { token } = credentials.createToken('join');
      const client = await connect(joinOptions(token));
      expect(client.connected).toBe(true);
      expect(broker.connectedClients()).toBe(1);
    });

    it('refuses a joining client whose client id does not start with join-', async () => {
      const { token } = credentials.createToken('join');
      expect(await refusal(joinOptions(token, 'device-1'))).toBe(NOT_AUTHORIZED);
      expect(await refusal(joinOptions(token, deviceClientId('a')))).toBe(NOT_AUTHORIZED);
    });

    it('refuses a join with a token of another kind, a revoked one or a made-up one', async () => {
      const admin = credentials.createToken('admin').token;
      const revoked = credentials.createToken('join');
      credentials.revoke(revoked.record.id);
      expect(await refusal(joinOptions(admin))).toBe(BAD_USERNAME_OR_PASSWORD);
      expect(await refusal(joinOptions(revoked.token))).toBe(BAD_USERNAME_OR_PASSWORD);
      expect(await refusal(joinOptions('abcdef12.0123456789abcdefghij'))).toBe(BAD_USERNAME_OR_PASSWORD);
    });

    it('accepts a device with its own password and its own client id', async () => {
      const client = await device('a');
      expect(client.connected).toBe(true);
    });

    it('refuses a device that connects under the client id of another node', async () => {
      const password = credentials.issueDevicePassword('a');
      expect(await refusal(deviceOptions('a', password, deviceClientId('b')))).toBe(NOT_AUTHORIZED);
      expect(await refusal(deviceOptions('a', password, 'a'))).toBe(NOT_AUTHORIZED);
    });

    it('refuses a device password used as a join token', async () => {
      const password = credentials.issueDevicePassword('a');
      expect(await refusal(joinOptions(password))).toBe(BAD_USERNAME_OR_PASSWORD);
    });
  });

  describe('subscriptions', () => {
    it('grants a device its own desired set, rpc requests and the peer table', async () => {
      const a = await device('a');
      expect(await suback(a, topics.desired('a'))).toEqual([1]);
      expect(await suback(a, topics.node('a', 'rpc/req'))).toEqual([1]);
      expect(await suback(a, topics.allPeers())).toEqual([1]);
    });

    it("refuses a device another node's desired set (SUBACK 0x80)", async () => {
      const a = await device('a');
      expect(await suback(a, topics.desired('b'))).toEqual([SUBACK_FAILURE]);
      expect(a.connected).toBe(true);
    });

    it('refuses a device its own channels that only the hub reads', async () => {
      const a = await device('a');
      expect(await suback(a, topics.status('a'))).toEqual([SUBACK_FAILURE]);
      expect(await suback(a, topics.node('a', 'rpc/res'))).toEqual([SUBACK_FAILURE]);
    });

    it.each(['#', 'flotilla/v1/#', 'flotilla/v1/nodes/+/desired', 'flotilla/v1/nodes/a/#', 'flotilla/v1/nodes/a/+'])('refuses a device the wildcard %s', async (pattern) => {
      const a = await device('a');
      expect(await suback(a, pattern)).toEqual([SUBACK_FAILURE]);
    });

    it('grants a joining client its own join response only', async () => {
      const { token } = credentials.createToken('join');
      const joiner = await connect(joinOptions(token, joinClientId('mine')));
      expect(await suback(joiner, topics.joinResponse(joinClientId('mine')))).toEqual([1]);
      expect(await suback(joiner, topics.joinResponse(joinClientId('other')))).toEqual([SUBACK_FAILURE]);
      expect(await suback(joiner, topics.allJoinRequests())).toEqual([SUBACK_FAILURE]);
      expect(await suback(joiner, topics.desired('a'))).toEqual([SUBACK_FAILURE]);
      expect(await suback(joiner, topics.allPeers())).toEqual([SUBACK_FAILURE]);
    });

    it('delivers to a device the desired set the hub publishes for it, and not that of another node', async () => {
      const a = await device('a');
      const messages: string[] = [];
      a.on('message', (topic) => messages.push(topic));
      await suback(a, topics.desired('a'));
      await broker.publish(topics.desired('b'), payload({ v: 1, rev: 1, pods: [] }), { qos: 1, retain: true });
      await broker.publish(topics.desired('a'), payload({ v: 1, rev: 1, pods: [] }), { qos: 1, retain: true });
      await vi.waitFor(() => expect(messages).toEqual([topics.desired('a')]));
    });
  });

  describe('publishing', () => {
    it("delivers a device's own status and presence to the hub", async () => {
      const a = await device('a');
      await a.publishAsync(topics.status('a'), payload({ v: 1 }), { qos: 1 });
      await a.publishAsync(topics.presence('a'), payload({ v: 1, state: 'online' }), { qos: 1, retain: true });
      await vi.waitFor(() => expect(received).toEqual([topics.status('a'), topics.presence('a')]));
    });

    it("drops a device's publish to another node's status and closes its connection", async () => {
      await device('b');
      const a = await device('a');
      await a.publishAsync(topics.status('a'), payload({ v: 1 }), { qos: 1 });
      await vi.waitFor(() => expect(received).toEqual([topics.status('a')]));

      const gone = closed(a);
      a.publish(topics.status('b'), payload({ v: 1, forged: true }), { qos: 0 });
      await gone;
      expect(received).toEqual([topics.status('a')]);
    });

    it('drops a device publishing its own desired set, which only the hub writes', async () => {
      const a = await device('a');
      const gone = closed(a);
      a.publish(topics.desired('a'), payload({ v: 1, rev: 99, pods: [] }), { qos: 0, retain: true });
      await gone;
      expect(received).toEqual([]);
    });

    it('drops a device writing the peer table, its own peer included, which only the hub writes', async () => {
      const watcher = await device('b');
      const seen: string[] = [];
      watcher.on('message', (topic, body) => seen.push(`${topic} ${body.length}`));
      await suback(watcher, topics.allPeers());
      await suback(watcher, topics.relay());
      for (const topic of [topics.peer('a'), topics.peer('b'), topics.relay()]) {
        const a = await device('a');
        const gone = closed(a);
        a.publish(topic, payload({ v: 1, node: 'a', forged: true }), { qos: 0, retain: true });
        await gone;
      }
      // What the hub publishes there reaches the reader; nothing the device tried did.
      await broker.publish(topics.peer('a'), payload({ v: 1, node: 'a' }), { qos: 1, retain: true });
      await vi.waitFor(() => expect(seen).toEqual([`${topics.peer('a')} ${payload({ v: 1, node: 'a' }).length}`]));
    });

    it('tells the hub where a device connects from, and when', async () => {
      const connected: string[] = [];
      broker.onDeviceConnected((node) => connected.push(node));
      await device('a');
      await vi.waitFor(() => expect(connected).toEqual(['a']));
      expect(broker.remoteAddress('a')).toBe('127.0.0.1');
      expect(broker.remoteAddress('b')).toBeUndefined();
    });

    it('delivers a joining client its own join request only', async () => {
      const { token } = credentials.createToken('join');
      const joiner = await connect(joinOptions(token, joinClientId('mine')));
      await joiner.publishAsync(topics.joinRequest(joinClientId('mine')), payload({ v: 1, name: 'pi-01' }), { qos: 1 });
      await vi.waitFor(() => expect(received).toEqual([topics.joinRequest(joinClientId('mine'))]));

      const gone = closed(joiner);
      joiner.publish(topics.joinRequest(joinClientId('other')), payload({ v: 1, name: 'pi-02' }), { qos: 0 });
      await gone;
      expect(received).toEqual([topics.joinRequest(joinClientId('mine'))]);
    });

    it('drops a joining client publishing as a device', async () => {
      const { token } = credentials.createToken('join');
      const joiner = await connect(joinOptions(token));
      const gone = closed(joiner);
      joiner.publish(topics.status('a'), payload({ v: 1 }), { qos: 0 });
      await gone;
      expect(received).toEqual([]);
    });
  });

  describe('revocation', () => {
    it('disconnects a revoked device, which cannot connect again', async () => {
      const password = credentials.issueDevicePassword('a');
      const a = await connect(deviceOptions('a', password));
      const gone = closed(a);
      expect(credentials.revokeNode('a')).toBe(1);
      broker.disconnectNode('a');
      await gone;
      expect(a.connected).toBe(false);
      await vi.waitFor(() => expect(broker.connectedClients()).toBe(0));
      expect(await refusal(deviceOptions('a', password))).toBe(BAD_USERNAME_OR_PASSWORD);
    });

    it('refuses a device whose credential was revoked by id', async () => {
      const password = credentials.issueDevicePassword('a');
      const a = await connect(deviceOptions('a', password));
      const [record] = credentials.list();
      const gone = closed(a);
      credentials.revoke(record!.id);
      broker.disconnectNode('a');
      await gone;
      expect(await refusal(deviceOptions('a', password))).toBe(BAD_USERNAME_OR_PASSWORD);
    });

    it('disconnects only the named device', async () => {
      const a = await device('a');
      const b = await device('b');
      const gone = closed(a);
      broker.disconnectNode('a');
      await gone;
      expect(b.connected).toBe(true);
      await b.publishAsync(topics.status('b'), payload({ v: 1 }), { qos: 1 });
      await vi.waitFor(() => expect(received).toEqual([topics.status('b')]));
    });

    it('ignores a disconnect of a node that is not connected', async () => {
      const a = await device('a');
      broker.disconnectNode('nobody');
      expect(a.connected).toBe(true);
      expect(broker.connectedClients()).toBe(1);
    });

    it('refuses a revoked join token to a new client', async () => {
      const { token, record } = credentials.createToken('join');
      await connect(joinOptions(token, joinClientId('first')));
      credentials.revoke(record.id);
      expect(await refusal(joinOptions(token, joinClientId('second')))).toBe(BAD_USERNAME_OR_PASSWORD);
    });
  });
});
