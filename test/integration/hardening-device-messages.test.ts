import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { joinHub } from '../../agent/link/join.js';
import type { DeviceCredentials } from '../../agent/state/state.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import { JOIN_USERNAME, Topics, deviceClientId, deviceUsername, joinClientId } from '../../shared/protocol/topics.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, podManifest, podRunning, readyCondition } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startMosquitto, type TestMosquitto } from '../harness/mosquitto.js';
import { getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Unbounded device messages: a device (or anyone holding a join token) that sends a huge packet,
// or a schema-valid message with a huge field, must cost the hub neither memory nor store. The
// packet is refused before it is buffered (the embedded broker closes the connection, Mosquitto
// with the max_packet_size broker-config writes does the same), a field over its bound drops
// its message, every drop is counted on /metrics, and the devices that behave keep working.

const topics = new Topics();
const dirs = tempDir('devmsg');
const MiB = 1024 * 1024;
let dockerd: TestDockerd;
let mosquitto: TestMosquitto;
/** The hub with its embedded broker, and the hub on Mosquitto. */
let embedded: RunningHub;
let external: RunningHub;
let clients: MqttClient[] = [];

function rssMiB(hub: RunningHub): number {
  const status = readFileSync(`/proc/${hub.process.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function dropped(hub: RunningHub, reason: 'oversize' | 'invalid'): Promise<number> {
  const res = await fetch(`${hub.apiUrl}/metrics`, { headers: { authorization: `Bearer ${hub.adminToken}` } });
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`flotilla_mqtt_messages_dropped_total{reason="${reason}"}`));
  return line ? Number(line.split(' ')[1]) : Number.NaN;
}

async function connect(url: string, opts: IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

function asDevice(url: string, creds: DeviceCredentials): Promise<MqttClient> {
  return connect(url, { clientId: deviceClientId(creds.node), username: deviceUsername(creds.node), password: creds.password });
}

function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => (client.disconnected ? resolve() : client.once('close', () => resolve())));
}

/** A status report as an agent sends it, with `engineMessage` when given. */
function statusReport(agentVersion: string, engineMessage?: string): string {
  return JSON.stringify({
    v: PROTOCOL_VERSION,
    ts: new Date().toISOString(),
    observedRev: null,
    node: {
      info: { hostname: 'beta', operatingSystem: 'linux', architecture: 'arm64', agentVersion },
      capacity: { cpu: '1', memory: '1Gi', pods: '10' },
      engineReady: engineMessage === undefined,
      ...(engineMessage !== undefined ? { engineMessage } : {}),
    },
    pods: [],
  });
}

interface NodeJson {
  metadata: { resourceVersion: string };
  status?: { nodeInfo?: { agentVersion?: string }; conditions?: { type: string; status: string; message?: string }[] };
}

function node(hub: RunningHub, name: string): { json: NodeJson; bytes: number } {
  const json = getJson<NodeJson>(hub, ['node', name]);
  return { json, bytes: JSON.stringify(json).length };
}

/** The longest message of any Event the hub holds. */
function longestEventMessage(hub: RunningHub): number {
  return Math.max(0, ...getJson<{ items: { message?: string }[] }>(hub, ['events', '-A']).items.map((e) => e.message?.length ?? 0));
}

/** Sends a packet over the limit: the connection must be closed under it, and its PUBACK never come. */
async function sendUntilClosed(client: MqttClient, topic: string, payload: string): Promise<void> {
  const outcome = await new Promise<'closed' | 'acknowledged'>((resolve) => {
    client.publish(topic, payload, { qos: 1 }, (err) => {
      if (!err) resolve('acknowledged');
    });
    void closed(client).then(() => resolve('closed'));
  });
  expect(outcome).toBe('closed');
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'devmsg' });
  await buildTestImages(dockerd.docker);
  mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: join(dirs.path, 'hub-m') });
  [embedded, external] = await Promise.all([startHub({ dataDir: join(dirs.path, 'hub-e') }), startHub({ dataDir: join(dirs.path, 'hub-m'), extraArgs: ['--broker', mosquitto.url] })]);
  startAgent({ hub: embedded, name: 'alpha', stateDir: join(dirs.path, 'state-alpha'), dockerHost: dockerd.dockerHost });
  startAgent({ hub: external, name: 'gamma', stateDir: join(dirs.path, 'state-gamma'), dockerHost: dockerd.dockerHost, hubUrl: mosquitto.url });
  await waitFor('node alpha Ready', () => readyCondition(embedded, 'alpha')?.status === 'True', 60_000);
  await waitFor('node gamma Ready', () => readyCondition(external, 'gamma')?.status === 'True', 60_000);
}, 180_000);

afterEach(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  clients = [];
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('oversized device messages, embedded broker', () => {
  let beta: DeviceCredentials;

  beforeAll(async () => {
    beta = await joinHub({ hub: embedded.mqttUrl, token: embedded.joinToken, name: 'beta', labels: {}, topics, timeoutMs: 10_000 });
    const b = await asDevice(embedded.mqttUrl, beta);
    await b.publishAsync(topics.status('beta'), statusReport('1.0.0-before'), { qos: 1 });
    await waitFor("beta's first report applied", () => node(embedded, 'beta').json.status?.nodeInfo?.agentVersion === '1.0.0-before', 15_000);
  });

  it('refuses a 64 MB status from its header: the connection is closed, nothing is stored, the drop is counted', async () => {
    const rssBefore = rssMiB(embedded);
    const droppedBefore = await dropped(embedded, 'oversize');
    const b = await asDevice(embedded.mqttUrl, beta);
    await sendUntilClosed(b, topics.status('beta'), statusReport('6.6.6-huge', 'x'.repeat(64 * MiB)));
    const rssAfter = rssMiB(embedded);
    console.log(`embedded broker, 64 MB status: hub RSS ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB`);
    expect(rssAfter - rssBefore).toBeLessThan(50);
    expect(await dropped(embedded, 'oversize')).toBe(droppedBefore + 1);
    const after = node(embedded, 'beta');
    expect(after.json.status?.nodeInfo?.agentVersion).toBe('1.0.0-before');
    expect(after.bytes).toBeLessThan(20_000);
    expect(longestEventMessage(embedded)).toBeLessThanOrEqual(1024);
  });

  it('drops a status whose engineMessage is over its bound, naming the field, and counts it', async () => {
    const droppedBefore = await dropped(embedded, 'invalid');
    const b = await asDevice(embedded.mqttUrl, beta);
    // Under the packet limit and valid JSON, but 600 KB of engine message: the hub took it whole before.
    await b.publishAsync(topics.status('beta'), statusReport('6.6.6-long-field', 'y'.repeat(600 * 1024)), { qos: 1 });
    await waitFor('the drop counted', async () => (await dropped(embedded, 'invalid')) === droppedBefore + 1, 10_000);
    expect(embedded.process.log()).toMatch(/"reason":"node\.engineMessage: Too big[^"]*1024/);
    const after = node(embedded, 'beta');
    expect(after.json.status?.nodeInfo?.agentVersion).toBe('1.0.0-before');
    expect(after.json.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(after.bytes).toBeLessThan(20_000);
    expect(longestEventMessage(embedded)).toBeLessThanOrEqual(1024);
  });

  it('refuses an oversized CONNECT and join request, and a join request with too many labels by name', async () => {
    const droppedBefore = await dropped(embedded, 'oversize');
    // Before it is known, a client may send a few KiB: a CONNECT that says it is 200 KB long is refused from its header.
    const raw = createConnection({ host: '127.0.0.1', port: embedded.mqttPort });
    const rawClosed = new Promise<void>((resolve) => raw.once('close', () => resolve()));
    raw.on('error', () => {});
    raw.write(Buffer.from([0x10, 0xc0, 0x9a, 0x0c])); // CONNECT, remaining length 200,000
    raw.write(Buffer.alloc(16 * 1024));
    await rawClosed;
    // A joining client's request is a name and a few labels: 100 KB is refused, under the devices' 1 MiB.
    const j = await connect(embedded.mqttUrl, { clientId: joinClientId('huge1'), username: JOIN_USERNAME, password: embedded.joinToken });
    await sendUntilClosed(j, topics.joinRequest(joinClientId('huge1')), JSON.stringify({ v: PROTOCOL_VERSION, name: 'huge', labels: { big: 'z'.repeat(100 * 1024) } }));
    expect(await dropped(embedded, 'oversize')).toBe(droppedBefore + 2);
    // Under the packet limit, but 1,000 labels: refused by name, and counted.
    const invalidBefore = await dropped(embedded, 'invalid');
    const labels = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`l${i}`, 'v']));
    await expect(joinHub({ hub: embedded.mqttUrl, token: embedded.joinToken, name: 'many-labels', labels, topics, timeoutMs: 10_000 })).rejects.toThrow(/labels: must have at most 64 entries/);
    expect(await dropped(embedded, 'invalid')).toBe(invalidBefore + 1);
    const names = getJson<{ items: { metadata: { name: string } }[] }>(embedded, ['nodes']).items.map((n) => n.metadata.name);
    expect(names).not.toContain('huge');
    expect(names).not.toContain('many-labels');
  });

  it('keeps serving the devices that behave', async () => {
    // The device that sent the huge packets reconnects and reports as usual.
    const b = await asDevice(embedded.mqttUrl, beta);
    await b.publishAsync(topics.status('beta'), statusReport('1.0.1-after'), { qos: 1 });
    await waitFor("beta's next report applied", () => node(embedded, 'beta').json.status?.nodeInfo?.agentVersion === '1.0.1-after', 15_000);
    // A real agent runs a pod sent after all of it.
    expect(readyCondition(embedded, 'alpha')?.status).toBe('True');
    apply(embedded, podManifest({ name: 'web-e', node: 'alpha', image: TEST_IMAGE, command: ['httpd', '-f', '-p', '8080'] }));
    await waitFor('pod web-e Running on alpha', () => podRunning(embedded, 'web-e'), 60_000);
  });
});

describe('oversized device messages, Mosquitto as configured by broker-config', () => {
  let beta: DeviceCredentials;

  beforeAll(async () => {
    beta = await joinHub({ hub: mosquitto.url, token: external.joinToken, name: 'beta', labels: {}, topics, timeoutMs: 10_000 });
    const b = await asDevice(mosquitto.url, beta);
    await b.publishAsync(topics.status('beta'), statusReport('1.0.0-before'), { qos: 1 });
    await waitFor("beta's first report applied", () => node(external, 'beta').json.status?.nodeInfo?.agentVersion === '1.0.0-before', 15_000);
  });

  it('has Mosquitto refuse a 64 MB status: the sender is disconnected and the hub never sees it', async () => {
    expect(readFileSync(join(mosquitto.dir, 'mosquitto.conf'), 'utf8')).toMatch(/^max_packet_size \d+$/m);
    const rssBefore = rssMiB(external);
    const b = await asDevice(mosquitto.url, beta);
    await sendUntilClosed(b, topics.status('beta'), statusReport('6.6.6-huge', 'x'.repeat(64 * MiB)));
    const rssAfter = rssMiB(external);
    console.log(`Mosquitto, 64 MB status: hub RSS ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB`);
    expect(rssAfter - rssBefore).toBeLessThan(50);
    const after = node(external, 'beta');
    expect(after.json.status?.nodeInfo?.agentVersion).toBe('1.0.0-before');
    expect(after.bytes).toBeLessThan(20_000);
  });

  it('drops, and counts, what Mosquitto lets through but the hub refuses: a 2 MiB status, a field over its bound', async () => {
    const rssBefore = rssMiB(external);
    const oversizeBefore = await dropped(external, 'oversize');
    const invalidBefore = await dropped(external, 'invalid');
    const b = await asDevice(mosquitto.url, beta);
    // Under Mosquitto's limit, over the hub's 1 MiB.
    await b.publishAsync(topics.status('beta'), statusReport('6.6.6-2mib', 'x'.repeat(2 * MiB)), { qos: 1 });
    await b.publishAsync(topics.status('beta'), statusReport('6.6.6-long-field', 'y'.repeat(600 * 1024)), { qos: 1 });
    await waitFor('both drops counted', async () => (await dropped(external, 'oversize')) === oversizeBefore + 1 && (await dropped(external, 'invalid')) === invalidBefore + 1, 15_000);
    expect(rssMiB(external) - rssBefore).toBeLessThan(50);
    const after = node(external, 'beta');
    expect(after.json.status?.nodeInfo?.agentVersion).toBe('1.0.0-before');
    expect(after.bytes).toBeLessThan(20_000);
    expect(longestEventMessage(external)).toBeLessThanOrEqual(1024);
  });

  it('keeps serving the devices that behave', async () => {
    const b = await asDevice(mosquitto.url, beta);
    await b.publishAsync(topics.status('beta'), statusReport('1.0.1-after'), { qos: 1 });
    await waitFor("beta's next report applied", () => node(external, 'beta').json.status?.nodeInfo?.agentVersion === '1.0.1-after', 15_000);
    expect(readyCondition(external, 'gamma')?.status).toBe('True');
    apply(external, podManifest({ name: 'web-m', node: 'gamma', image: TEST_IMAGE, command: ['httpd', '-f', '-p', '8081'] }));
    await waitFor('pod web-m Running on gamma', () => podRunning(external, 'web-m'), 60_000);
  });
});
