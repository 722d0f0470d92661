import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PeerAnnouncement } from '../../shared/protocol/network.js';
import { HUB_USERNAME, Topics } from '../../shared/protocol/topics.js';
import { closeFakeDevices, FakeDevice, nodeJson, wireguardKey, wireguardReport } from '../harness/fake-device.js';
import { startRelay } from '../harness/device.js';
import { startMosquitto, type TestMosquitto } from '../harness/mosquitto.js';
import { startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The peer table as the brokers carry it: Mosquitto's ACL (devices read every peer and write
// none) and what it retains over a hub restart; and, with the embedded broker, the address a
// device connects from (a NAT's public address), published and followed when it changes.

const topics = new Topics();
const dirs = tempDir('nethub-brokers');

afterEach(closeFakeDevices);

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the peer table on an external Mosquitto', () => {
  let mosquitto: TestMosquitto;
  let hub: RunningHub;

  beforeAll(async () => {
    const hubDir = join(dirs.path, 'ext-hub');
    mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
    hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
  });

  it('lets devices read every peer and write none, their own included', async () => {
    const x = await FakeDevice.join(mosquitto.url, hub.joinToken, 'ext-x');
    const y = await FakeDevice.join(mosquitto.url, hub.joinToken, 'ext-y');
    await waitFor('pod CIDRs', () => nodeJson(hub, 'ext-x').spec?.podCIDR && nodeJson(hub, 'ext-y').spec?.podCIDR);
    await y.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await y.client.subscribeAsync(topics.relay(), { qos: 1 });
    await x.report(wireguardReport(4));
    const peer = (await waitFor('the peer of ext-x through Mosquitto', () => y.peers('ext-x').at(-1))) as PeerAnnouncement;
    expect(peer).toMatchObject({ node: 'ext-x', publicKey: wireguardKey(4) });
    // With an external broker the hub does not see where a device connects from: no hub-observed endpoint.
    expect(peer.endpoints.map((e) => e.source)).toEqual(['reported']);
    // Mosquitto drops what a device publishes where it may not (MQTT 3.1.1 has no refusal to send back).
    await x.client.publishAsync(topics.peer('ext-x'), Buffer.from(JSON.stringify({ ...peer, publicKey: wireguardKey(5), generation: peer.generation + 1 })), { qos: 1, retain: true });
    await x.client.publishAsync(topics.peer('ext-y'), Buffer.from('forged'), { qos: 1, retain: true });
    await x.client.publishAsync(topics.relay(), Buffer.from('forged'), { qos: 1, retain: true });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(y.peers('ext-x').filter((p) => p !== 'cleared' && p.publicKey === wireguardKey(5))).toEqual([]);
    expect(y.messages.filter((m) => m.topic !== topics.peer('ext-x'))).toEqual([]);
    // A fresh reader gets the hub's retained message, not the device's.
    const z = await FakeDevice.join(mosquitto.url, hub.joinToken, 'ext-z');
    await z.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const retained = (await waitFor('the retained peer of ext-x', () => z.peers('ext-x').at(-1))) as PeerAnnouncement;
    expect(retained.publicKey).toBe(wireguardKey(4));
    expect(z.messages.some((m) => m.topic === topics.relay())).toBe(false);
  });

  it('clears, when it starts, what the broker retains for a node that no longer exists', async () => {
    const hubDir = join(dirs.path, 'ext-hub');
    await hub.process.stop();
    // A peer left behind at the broker while the hub was down (written here with the hub's own account).
    const writer = await mqtt.connectAsync(mosquitto.url, { clientId: 'test-ghost-writer', username: HUB_USERNAME, password: readFileSync(join(hubDir, 'broker.password'), 'utf8').trim(), protocolVersion: 4, reconnectPeriod: 0 });
    await writer.publishAsync(topics.peer('ghost'), Buffer.from(JSON.stringify({ v: 1, node: 'ghost', publicKey: wireguardKey(6), podCIDR: '10.42.99.0/24', endpoints: [], generation: 1 })), { qos: 1, retain: true });
    await writer.endAsync();
    hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
    const reader = await FakeDevice.connect(mosquitto.url, 'ext-y');
    await reader.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await waitFor('the peers of existing nodes', () => reader.peers('ext-x').length > 0);
    await waitFor('nothing retained for ghost', async () => {
      const probe = await FakeDevice.connect(mosquitto.url, 'ext-z');
      await probe.client.subscribeAsync(topics.allPeers(), { qos: 1 });
      await new Promise((r) => setTimeout(r, 300));
      const ghost = probe.peers('ghost');
      await probe.close();
      return ghost.length === 0;
    }, 15_000, 500);
    expect(reader.peers('ext-x').at(-1)).toMatchObject({ publicKey: wireguardKey(4) });
  });
});


// Where a device's connection comes from, as the hub sees it: the hub runs in a network namespace
// of the test's own, whose loopback also holds two documentation addresses standing for a NAT's
// public address before and after it changes; the test reaches the hub through byte relays over
// unix sockets, so nothing is added to the host's network.
describe('the hub-observed address (a NAT\'s public address)', () => {
  const netns = `flt-nethub-${process.pid}`;
  const ip = (...args: string[]) => {
    const r = spawnSync('/usr/sbin/ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };
  let hub: RunningHub;
  /** The hub's MQTT port inside the namespace. */
  let innerMqtt: number;

  /** A URL on the host's loopback that reaches the hub's MQTT port from `source` inside the namespace. */
  async function pathFrom(source: string): Promise<string> {
    const socket = join(dirs.path, `mqtt-${source}.sock`);
    await startRelay(`unix:${socket}`, `tcp:${source}:${innerMqtt}`, join(dirs.path, `relay-ns-${source}.log`), { netns });
    const host = await startRelay('tcp:127.0.0.1:0', `unix:${socket}`, join(dirs.path, `relay-host-${source}.log`));
    return `mqtt://127.0.0.1:${host.listening}`;
  }

  beforeAll(async () => {
    ip('netns', 'add', netns);
    ip('-n', netns, 'link', 'set', 'lo', 'up');
    ip('-n', netns, 'addr', 'add', '192.0.2.1/32', 'dev', 'lo');
    ip('-n', netns, 'addr', 'add', '198.51.100.99/32', 'dev', 'lo');
    const inside = await startHub({ dataDir: join(dirs.path, 'ns-hub'), extraArgs: ['--listen', '0.0.0.0'], wrap: ['/usr/bin/nsenter', `--net=/var/run/netns/${netns}`, '--'] });
    innerMqtt = inside.mqttPort;
    const apiSocket = join(dirs.path, 'api.sock');
    await startRelay(`unix:${apiSocket}`, `tcp:127.0.0.1:${inside.apiPort}`, join(dirs.path, 'relay-ns-api.log'), { netns });
    const api = await startRelay('tcp:127.0.0.1:0', `unix:${apiSocket}`, join(dirs.path, 'relay-host-api.log'));
    hub = { ...inside, apiUrl: `http://127.0.0.1:${api.listening}` };
  });

  afterAll(async () => {
    await stopAll();
    spawnSync('/usr/sbin/ip', ['netns', 'del', netns]);
  });

  it('publishes the address a device connects from, and follows it at once when it changes', async () => {
    const before = await pathFrom('192.0.2.1');
    const n1 = await FakeDevice.join(before, hub.joinToken, 'nat-1');
    const n2 = await FakeDevice.join(before, hub.joinToken, 'nat-2');
    await waitFor('pod CIDRs', () => nodeJson(hub, 'nat-1').spec?.podCIDR && nodeJson(hub, 'nat-2').spec?.podCIDR);
    await n2.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await n1.report(wireguardReport(7));
    const first = (await waitFor('the peer of nat-1', () => n2.peers('nat-1').at(-1))) as PeerAnnouncement;
    expect(first.publicAddress).toBe('192.0.2.1');
    expect(first.endpoints).toEqual([
      { address: '192.0.2.1', port: 51827, source: 'hub-observed' },
      { address: '192.168.7.7', port: 51827, source: 'reported' },
    ]);
    expect(nodeJson(hub, 'nat-1').metadata.annotations?.['network.flotilla.io/endpoints']).toBe('192.0.2.1:51827 hub-observed, 192.168.7.7:51827 reported');
    // The NAT's public address changes: the device's connection drops and comes back from the new one.
    await n1.close();
    const after = await pathFrom('198.51.100.99');
    const started = Date.now();
    await FakeDevice.connect(after, 'nat-1');
    const moved = (await waitFor('the peer of nat-1 at its new address', () => {
      const last = n2.peers('nat-1').at(-1);
      return last !== 'cleared' && last?.publicAddress === '198.51.100.99' ? last : undefined;
    })) as PeerAnnouncement;
    console.log(`peer followed a new public address in ${Date.now() - started} ms`);
    expect(moved.endpoints[0]).toEqual({ address: '198.51.100.99', port: 51827, source: 'hub-observed' });
    expect(moved.generation).toBeGreaterThan(first.generation);
  });
});
