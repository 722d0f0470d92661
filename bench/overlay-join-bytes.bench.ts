import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, expect, it } from 'vitest';
import { joinHub } from '../agent/link/join.js';
import { Topics, deviceClientId, deviceUsername } from '../shared/protocol/topics.js';
import { startHub, stopAll, tempDir, waitFor, type RunningHub } from '../test/harness/processes.js';
import { paperPeers } from './overlay-peers.js';
import { round, writeResult, type TargetFigure } from './results.js';

// What one device joining costs every other device (must ≤ 1 KB, aim ≤ 200 B), with 1,000 and
// 10,000 nodes in the overlay: the bytes on the wire (TCP payload, MQTT framing included) that
// an existing device's connection receives between the join and a quiet period after it.
// Existing nodes are paper nodes (bench/overlay-peers.ts) that joined and reported a key, so
// the hub holds a real peer table of that size; observers subscribe to the peer table and the
// relay exactly as an agent does (QoS 0) and count every byte their socket reads.

const SIZES = (process.env.OVERLAY_JOIN_SIZES ?? '1000,10000').split(',').map(Number);
// The default cluster CIDR (10.42.0.0/16 in /24 blocks) holds 256 nodes; a /10 holds 16,384.
const CLUSTER_CIDR = '10.0.0.0/10';
// The Services' virtual IPs lie outside it (the default 10.43.0.0/16 is inside).
const SERVICE_CIDR = '10.96.0.0/16';
const OBSERVERS = 3;
const QUIET_MS = 3_000;
const dirs = tempDir('joinbytes');
let hub: RunningHub | undefined;

afterAll(async () => {
  await stopAll();
  dirs.remove();
});

interface Observer {
  client: MqttClient;
  bytes: number;
  lastAt: number;
  peers: Set<string>;
}

async function observe(url: string, token: string, name: string, topics: Topics): Promise<Observer> {
  const creds = await joinHub({ hub: url, token, name, labels: {}, topics, timeoutMs: 60_000 });
  const client = await mqtt.connectAsync(url, { clientId: deviceClientId(name), username: deviceUsername(name), password: creds.password, reconnectPeriod: 0 });
  const o: Observer = { client, bytes: 0, lastAt: Date.now(), peers: new Set() };
  client.stream.on('data', (chunk: Buffer) => {
    o.bytes += chunk.length;
    o.lastAt = Date.now();
  });
  client.on('message', (topic) => {
    const node = topics.parsePeerTopic(topic);
    if (node) o.peers.add(node);
  });
  await client.subscribeAsync([topics.allPeers(), topics.relay()], { qos: 0 });
  return o;
}

async function quiet(observers: Observer[]): Promise<void> {
  await waitFor('the observers\' connections to go quiet', () => observers.every((o) => Date.now() - o.lastAt > QUIET_MS), 120_000, 200);
}

it(`bytes each existing device receives when one joins, at ${SIZES.join(' and ')} nodes`, async () => {
  const topics = new Topics();
  const figures: Record<string, unknown> = {};
  const targets: Record<string, TargetFigure> = {};
  let worst = 0;
  for (const size of SIZES) {
    hub = await startHub({ dataDir: join(dirs.path, `hub-${size}`), extraArgs: ['--relay', 'off', '--cluster-cidr', CLUSTER_CIDR, '--service-cidr', SERVICE_CIDR], env: { FLOTILLA_LOG_LEVEL: 'info' } });
    const startedAt = Date.now();
    await paperPeers({ mqttUrl: hub.mqttUrl, joinToken: hub.joinToken, count: size - OBSERVERS, prefix: 'paper', disconnect: true, concurrency: 20 });
    const joinSeconds = (Date.now() - startedAt) / 1000;
    console.log(`${size - OBSERVERS} paper nodes joined in ${round(joinSeconds)} s`);
    const observers = await Promise.all(Array.from({ length: OBSERVERS }, (_, i) => observe(hub!.mqttUrl, hub!.joinToken, `observer-${i}`, topics)));
    // The retained table arrives at subscribe; then nothing until the join.
    await waitFor(`the retained table at the observers (${size - OBSERVERS} peers)`, () => {
      if (observers.every((o) => o.peers.size >= size - OBSERVERS)) return true;
      throw new Error(`the observers have ${observers.map((o) => o.peers.size).join(', ')} peers`);
    }, 120_000, 200);
    await quiet(observers);
    const burstBytes = observers[0]!.bytes;
    for (const o of observers) o.bytes = 0;

    const joined = await paperPeers({ mqttUrl: hub.mqttUrl, joinToken: hub.joinToken, count: 1, prefix: 'newcomer' });
    await waitFor('the newcomer\'s peer at every observer', () => observers.every((o) => o.peers.has('newcomer-0')), 30_000, 50);
    await quiet(observers);
    const perDevice = observers.map((o) => o.bytes);
    await joined.close();
    await Promise.all(observers.map((o) => o.client.endAsync(true)));
    await hub.process.stop();

    const max = Math.max(...perDevice);
    worst = Math.max(worst, max);
    figures[`nodes${size}`] = { bytesPerExistingDevice: perDevice, retainedTableAtSubscribeBytes: burstBytes, joinSecondsForTheTable: round(joinSeconds) };
    targets[`joinBytes${size}`] = { what: `bytes each existing device receives when one device joins, ${size.toLocaleString('en-US')} nodes`, measured: max, unit: 'B', must: 1024, aim: 200, better: 'lower' };
  }
  writeResult({ benchmark: 'overlay-join-bytes', parameters: { sizes: SIZES, clusterCIDR: CLUSTER_CIDR, nodeCIDRMaskSize: 24, observers: OBSERVERS, quietMs: QUIET_MS, counted: 'TCP payload read by the observer (MQTT framing and keepalive answers included)' }, figures, targets });
  console.log(JSON.stringify(figures));
  expect(worst).toBeGreaterThan(0);
  expect(worst).toBeLessThanOrEqual(1024);
}, 3_600_000);
