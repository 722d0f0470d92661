import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeviceLink, type LinkHandlers } from '../../agent/link/link.js';
import { Credentials } from '../../hub/auth/credentials.js';
import { BrokerAuth } from '../../hub/broker/auth.js';
import { EmbeddedBroker } from '../../hub/broker/embedded.js';
import type { Database } from '../../hub/store/db.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import { Topics, deviceClientId, deviceUsername } from '../../shared/protocol/topics.js';
import { payloadOf, peer, relayAnnouncement } from './network-builders.js';

const topics = new Topics();
const log = pino({ level: 'silent' });

/**
 * The device link's subscription to the overlay's peer table, against the hub's embedded broker
 * with its real authorisation: the hub publishes retained announcements (as its peer publisher
 * will), a device's link receives them, and no device can write them.
 */
describe('DeviceLink: the peer table', () => {
  let db: Database;
  let credentials: Credentials;
  let broker: EmbeddedBroker;
  let links: DeviceLink[];
  let clients: MqttClient[];

  beforeEach(async () => {
    db = openHubDatabase(':memory:');
    credentials = new Credentials(db);
    broker = await EmbeddedBroker.start({ host: '127.0.0.1', port: 0, auth: new BrokerAuth(credentials, topics, log), log });
    links = [];
    clients = [];
  });

  afterEach(async () => {
    await Promise.all(links.map((l) => l.stop()));
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker.close();
    db.close();
  });

  interface Heard {
    peers: [string, string][];
    relays: string[];
    desired: number;
    connected: number;
  }

  function link(node: string, withNetwork = true): Heard {
    const heard: Heard = { peers: [], relays: [], desired: 0, connected: 0 };
    const handlers: LinkHandlers = {
      onDesired: () => heard.desired++,
      onConnected: () => heard.connected++,
      ...(withNetwork
        ? {
            onPeer: (peerNode: string, payload: Buffer) => heard.peers.push([peerNode, payload.toString('utf8')]),
            onRelay: (payload: Buffer) => heard.relays.push(payload.toString('utf8')),
          }
        : {}),
    };
    const creds = { hub: `mqtt://127.0.0.1:${broker.port}`, node, username: deviceUsername(node), password: credentials.issueDevicePassword(node) };
    const l = new DeviceLink(creds, topics, handlers, log);
    links.push(l);
    l.start();
    return heard;
  }

  const b = peer({ node: 'edge-b', n: 2, publicAddress: '198.51.100.20' });
  const c = peer({ node: 'edge-c', n: 3 });

  it('receives the retained announcements and the relay on connect, later ones, and a deletion', async () => {
    await broker.publish(topics.peer('edge-b'), payloadOf(b), { qos: 1, retain: true });
    await broker.publish(topics.peer('edge-c'), payloadOf(c), { qos: 1, retain: true });
    await broker.publish(topics.relay(), payloadOf(relayAnnouncement()), { qos: 1, retain: true });
    await broker.publish(topics.desired('edge-a'), payloadOf({ v: 1, rev: 1, pods: [] }), { qos: 1, retain: true });

    const heard = link('edge-a');
    await vi.waitFor(() => {
      expect(heard.peers.map(([node]) => node).sort()).toEqual(['edge-b', 'edge-c']);
      expect(heard.relays).toEqual([JSON.stringify(relayAnnouncement())]);
    });
    expect(heard.peers.find(([node]) => node === 'edge-b')?.[1]).toBe(JSON.stringify(b));
    // The desired set goes where it always went.
    await vi.waitFor(() => expect(heard.desired).toBe(1));

    const moved = { ...b, generation: 2, publicAddress: '198.51.100.77' };
    await broker.publish(topics.peer('edge-b'), payloadOf(moved), { qos: 1, retain: true });
    await vi.waitFor(() => expect(heard.peers.at(-1)).toEqual(['edge-b', JSON.stringify(moved)]));
    // The hub deletes a node: an empty retained payload.
    await broker.publish(topics.peer('edge-c'), Buffer.alloc(0), { qos: 1, retain: true });
    await vi.waitFor(() => expect(heard.peers.at(-1)).toEqual(['edge-c', '']));
    await broker.publish(topics.relay(), Buffer.alloc(0), { qos: 1, retain: true });
    await vi.waitFor(() => expect(heard.relays.at(-1)).toBe(''));

    // A device that connects now gets only what is left: the deleted node and the relay are gone.
    const late = link('edge-d');
    await vi.waitFor(() => expect(late.peers).toEqual([['edge-b', JSON.stringify(moved)]]));
    expect(late.relays).toEqual([]);
  });

  it('after a reconnect, gets what changed while it was away from the retained messages', async () => {
    await broker.publish(topics.peer('edge-b'), payloadOf(b), { qos: 1, retain: true });
    const heard = link('edge-a');
    await vi.waitFor(() => expect(heard.peers).toHaveLength(1));
    broker.disconnectNode('edge-a');
    await vi.waitFor(() => expect(broker.nodeConnected('edge-a')).toBe(false));
    const moved = { ...b, generation: 2, publicAddress: '198.51.100.77' };
    await broker.publish(topics.peer('edge-b'), payloadOf(moved), { qos: 1, retain: true });
    await vi.waitFor(() => expect(heard.connected).toBe(2), { timeout: 10_000 });
    await vi.waitFor(() => expect(heard.peers.at(-1)).toEqual(['edge-b', JSON.stringify(moved)]));
  });

  it('does not subscribe to the peer table when the agent gives no handler (overlay off)', async () => {
    await broker.publish(topics.peer('edge-b'), payloadOf(b), { qos: 1, retain: true });
    const off = link('edge-a', false);
    const on = link('edge-e');
    await vi.waitFor(() => expect(on.peers).toHaveLength(1));
    expect(off.connected).toBe(1);
    expect(off.peers).toEqual([]);
  });

  it('a device cannot write the peer table: its publish is dropped and its connection closed', async () => {
    const heard = link('edge-a');
    await vi.waitFor(() => expect(heard.connected).toBe(1));
    const hubSaw: string[] = [];
    await broker.subscribe(topics.allPeers(), (topic) => hubSaw.push(topic));

    const forger = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: deviceClientId('edge-b'), username: deviceUsername('edge-b'), password: credentials.issueDevicePassword('edge-b') });
    forger.on('error', () => {});
    clients.push(forger);
    const gone = new Promise<void>((resolve) => forger.once('close', () => resolve()));
    forger.publish(topics.peer('edge-b'), payloadOf({ ...b, generation: 99 }), { qos: 0, retain: true });
    await gone;
    const relayForger = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4, reconnectPeriod: 0, clientId: deviceClientId('edge-c'), username: deviceUsername('edge-c'), password: credentials.issueDevicePassword('edge-c') });
    relayForger.on('error', () => {});
    clients.push(relayForger);
    const relayGone = new Promise<void>((resolve) => relayForger.once('close', () => resolve()));
    relayForger.publish(topics.relay(), payloadOf(relayAnnouncement()), { qos: 0, retain: true });
    await relayGone;

    // A message the hub publishes after them arrives; the forged ones never did, and none was retained.
    await broker.publish(topics.peer('edge-c'), payloadOf(c), { qos: 1, retain: true });
    await vi.waitFor(() => expect(heard.peers).toEqual([['edge-c', JSON.stringify(c)]]));
    expect(heard.relays).toEqual([]);
    expect(hubSaw).toEqual([topics.peer('edge-c')]);
    const late = link('edge-f');
    await vi.waitFor(() => expect(late.peers).toEqual([['edge-c', JSON.stringify(c)]]));
    expect(late.relays).toEqual([]);
  });
});
