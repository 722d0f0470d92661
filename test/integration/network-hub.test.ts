import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { joinHub } from '../../agent/link/join.js';
import { PROTOCOL_VERSION, decodePayload, desiredStateSchema, statusReportSchema } from '../../shared/protocol/messages.js';
import { peerAnnouncementSchema, type NodeNetworkReport, type PeerAnnouncement } from '../../shared/protocol/network.js';
import { HUB_USERNAME, Topics, deviceClientId, deviceUsername } from '../../shared/protocol/topics.js';
import { containsCidr, cidr } from '../../shared/net/cidr.js';
import { startMosquitto, type TestMosquitto } from '../harness/mosquitto.js';
import { BIN, REPO, cli, getJson, spawnLogged, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// The hub's side of the pod network against a real hub process: MQTT clients stand in for
// devices (they join through the real join flow and report a WireGuard overlay as an agent
// does). Pod CIDRs on join, kept over a restart and quarantined after a deletion; the desired
// set's network; the overlay in node status and NetworkUnavailable; the retained peer table and
// what one join costs a device; the CLI and /metrics; exhaustion; bad flags; and Mosquitto's ACL.

const topics = new Topics();
const dirs = tempDir('nethub');
const PROMTOOL = '/usr/bin/promtool';
/** Keys as an agent makes them (32 bytes, base64); any such string will do for the hub. */
const key = (n: number) => Buffer.alloc(32, n).toString('base64');

interface NodeJson {
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { overlay?: NodeNetworkReport; conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

const nodeJson = (hub: RunningHub, name: string) => getJson<NodeJson>(hub, ['node', name]);
const networkCondition = (hub: RunningHub, name: string) => nodeJson(hub, name).status?.conditions?.find((c) => c.type === 'NetworkUnavailable');

/** A device as the hub sees one: joined with the join token, connected with its own credentials, reporting status. */
class FakeDevice {
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
    return FakeDevice.connect(url, name, creds.password);
  }

  static async connect(url: string, name: string, password: string): Promise<FakeDevice> {
    const client = await mqtt.connectAsync(url, { clientId: deviceClientId(name), username: deviceUsername(name), password, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 });
    client.on('error', () => {});
    const device = new FakeDevice(name, client);
    devices.push(device);
    return device;
  }

  async report(network: NodeNetworkReport | undefined): Promise<void> {
    const report = statusReportSchema.parse({
      v: PROTOCOL_VERSION,
      ts: new Date().toISOString(),
      observedRev: null,
      node: { info: { hostname: this.name, operatingSystem: 'linux', architecture: 'arm64', agentVersion: 'test' }, capacity: { cpu: '1', memory: '1Gi', pods: '10' }, engineReady: true, ...(network ? { network } : {}) },
      pods: [],
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
    await this.client.endAsync(true);
  }
}

let devices: FakeDevice[] = [];
/** Each device's password from its join: a later test connects as the same device again. */
const passwords = new Map<string, string>();

function password(_hub: RunningHub, name: string): Promise<string> {
  const known = passwords.get(name);
  return known ? Promise.resolve(known) : Promise.reject(new Error(`${name} has not joined`));
}

function wireguard(n: number, fields: Partial<NodeNetworkReport> = {}): NodeNetworkReport {
  return { overlay: 'wireguard', ready: true, publicKey: key(n), port: 51820 + n, implementation: 'wireguard-go', interface: 'flotilla-wg', addresses: [`192.168.7.${n}`], ...fields };
}

async function metrics(hub: RunningHub): Promise<string> {
  const res = await fetch(`${hub.apiUrl}/metrics`, { headers: { authorization: `Bearer ${hub.adminToken}`, connection: 'close' } });
  return res.text();
}

afterEach(async () => {
  await Promise.all(devices.map((d) => d.close()));
  devices = [];
});

afterAll(async () => {
  await stopAll();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the pod network on the hub (embedded broker)', () => {
  const dataDir = join(dirs.path, 'hub');
  let hub: RunningHub;
  const cidrs = new Map<string, string>();

  beforeAll(async () => {
    hub = await startHub({ dataDir });
  });

  it('gives each joining node a distinct pod CIDR of the cluster CIDR, and sends it in the desired set', async () => {
    for (const name of ['net-a', 'net-b']) {
      const device = await FakeDevice.join(hub.mqttUrl, hub.joinToken, name);
      const node = await waitFor(`a pod CIDR on ${name}`, () => {
        const n = nodeJson(hub, name);
        return n.spec?.podCIDR ? n : undefined;
      });
      expect(node.spec!.podCIDRs).toEqual([node.spec!.podCIDR]);
      expect(containsCidr(cidr('10.42.0.0/16'), cidr(node.spec!.podCIDR!))).toBe(true);
      expect(node.spec!.podCIDR!.endsWith('/24')).toBe(true);
      cidrs.set(name, node.spec!.podCIDR!);
      await device.client.subscribeAsync(topics.desired(name), { qos: 1 });
      const desired = await waitFor(`the desired set of ${name} with its network`, () => {
        const last = device.messages.filter((m) => m.topic === topics.desired(name)).at(-1);
        const d = last && decodePayload(desiredStateSchema, last.payload);
        return d && d.ok && d.value.network ? d.value : undefined;
      });
      expect(desired.network).toEqual({ podCIDR: node.spec!.podCIDR, clusterCIDR: '10.42.0.0/16' });
    }
    expect(cidrs.get('net-a')).not.toBe(cidrs.get('net-b'));
  });

  it('stores the overlay report, derives NetworkUnavailable, and publishes the peer retained', async () => {
    const a = await FakeDevice.connect(hub.mqttUrl, 'net-a', await password(hub, 'net-a'));
    await a.report(wireguard(1, { advertiseAddress: '198.51.100.1' }));
    const node = await waitFor('status.overlay of net-a', () => {
      const n = nodeJson(hub, 'net-a');
      return n.status?.overlay ? n : undefined;
    });
    expect(node.status!.overlay).toMatchObject({ overlay: 'wireguard', publicKey: key(1), port: 51821 });
    expect(networkCondition(hub, 'net-a')).toMatchObject({ status: 'False', reason: 'WireGuardUp', message: 'WireGuard is up (wireguard-go on flotilla-wg).' });
    // A device that subscribes later gets the retained peer: the hub's word, with the endpoints in order.
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b', await password(hub, 'net-b'));
    await b.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const peer = await waitFor('the retained peer of net-a', () => b.peers('net-a').at(-1));
    expect(peer).toMatchObject({ v: 1, node: 'net-a', publicKey: key(1), podCIDR: cidrs.get('net-a') });
    // On loopback the hub-observed address (127.0.0.1) is no endpoint: advertised, then reported.
    expect((peer as PeerAnnouncement).endpoints).toEqual([
      { address: '198.51.100.1', port: 51821, source: 'advertised' },
      { address: '192.168.7.1', port: 51821, source: 'reported' },
    ]);
    expect((peer as PeerAnnouncement).publicAddress).toBeUndefined();
    // Not ready: the agent's reason; --overlay none: OverlayDisabled, and the peer is cleared.
    await a.report(wireguard(1, { ready: false, reason: 'PodCIDROverlaps', message: 'the pod CIDR overlaps the route 10.42.0.0/16 dev eth0' }));
    await waitFor('NetworkUnavailable=True', () => networkCondition(hub, 'net-a')?.reason === 'PodCIDROverlaps');
    expect(networkCondition(hub, 'net-a')).toMatchObject({ status: 'True', message: expect.stringContaining('overlaps the route') });
    await a.report({ overlay: 'none', ready: false });
    await waitFor('OverlayDisabled', () => networkCondition(hub, 'net-a')?.reason === 'OverlayDisabled');
    expect(networkCondition(hub, 'net-a')?.status).toBe('False');
    await waitFor('the peer of net-a cleared', () => b.peers('net-a').at(-1) === 'cleared');
    await a.report(wireguard(1, { advertiseAddress: '198.51.100.1' }));
    await waitFor('the peer of net-a back', () => b.peers('net-a').at(-1) !== 'cleared');
  });

  it('costs each device one small message when another device joins', async () => {
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b', await password(hub, 'net-b'));
    await b.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await waitFor('the retained peers', () => b.peers('net-a').length > 0);
    const before = b.messages.length;
    const c = await FakeDevice.join(hub.mqttUrl, hub.joinToken, 'net-c');
    await waitFor('a pod CIDR on net-c', () => nodeJson(hub, 'net-c').spec?.podCIDR);
    await c.report(wireguard(3, { addresses: ['192.168.7.3', '10.0.3.3'] }));
    const peer = await waitFor('the peer of net-c at net-b', () => b.peers('net-c').at(-1));
    // Reports that move only the figures publish nothing more.
    for (let i = 0; i < 5; i++) await c.report(wireguard(3, { addresses: ['192.168.7.3', '10.0.3.3'], peers: [{ node: 'net-a', path: 'direct', rxBytes: i * 1000, txBytes: i * 2000 }] }));
    await new Promise((r) => setTimeout(r, 1_000));
    const got = b.messages.slice(before);
    expect(got.map((m) => m.topic)).toEqual([topics.peer('net-c')]);
    const bytes = got[0]!.payload.length;
    console.log(`peer message for one join: ${bytes} bytes of payload`);
    expect(bytes).toBeLessThan(1024);
    expect(peer).toMatchObject({ node: 'net-c', endpoints: [{ source: 'reported' }, { source: 'reported' }] });
  });

  it('shows the pod CIDR and the overlay in get nodes -o wide and describe node', async () => {
    const wide = cli(hub, ['get', 'nodes', '-o', 'wide']);
    expect(wide.code, wide.stderr).toBe(0);
    const [header, ...rows] = wide.stdout.trim().split('\n');
    expect(header).toMatch(/INTERNAL-IP\s+POD-CIDR/);
    expect(rows.find((r) => r.startsWith('net-a'))).toContain(cidrs.get('net-a'));
    const described = cli(hub, ['describe', 'node', 'net-a']);
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(new RegExp(`PodCIDR:\\s+${cidrs.get('net-a')!.replace(/\./g, '\\.')}`));
    expect(described.stdout).toMatch(/WireGuard:\n\s+Ready:\s+True\n\s+Implementation:\s+wireguard-go/);
    expect(described.stdout).toMatch(/Endpoints:\s+198\.51\.100\.1:51821 advertised, 192\.168\.7\.1:51821 reported/);
    expect(described.stdout).toMatch(/NetworkUnavailable\s+False\s+\S+\s+WireGuardUp/);
  });

  it('counts overlay states and pod CIDRs in /metrics', async () => {
    const text = await metrics(hub);
    expect(text).toContain('flotilla_overlay_nodes{state="ready"} 2');
    expect(text).toContain('flotilla_overlay_nodes{state="disabled"} 0');
    expect(text).toContain('flotilla_ipam_cidrs{state="allocated"} 3');
    expect(text).toContain('flotilla_ipam_cidrs{state="free"} 253');
    if (existsSync(PROMTOOL)) {
      const checked = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect(checked.stdout + checked.stderr).not.toMatch(/flotilla_(overlay|ipam)/);
    }
  });

  it('keeps pod CIDRs and peers over a hub restart', async () => {
    const before = { a: nodeJson(hub, 'net-a').spec?.podCIDR, c: nodeJson(hub, 'net-c').spec?.podCIDR };
    const b0 = await FakeDevice.connect(hub.mqttUrl, 'net-b', await password(hub, 'net-b'));
    await b0.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const generation = (await waitFor('the peer of net-a', () => b0.peers('net-a').at(-1)) as PeerAnnouncement).generation;
    await b0.close();
    devices = [];
    await hub.process.stop();
    hub = await startHub({ dataDir });
    expect(nodeJson(hub, 'net-a').spec?.podCIDR).toBe(before.a);
    expect(nodeJson(hub, 'net-c').spec?.podCIDR).toBe(before.c);
    // The embedded broker lost its retained messages with the process: the hub publishes them again, as they were.
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b', await password(hub, 'net-b'));
    await b.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const peer = (await waitFor('the peer of net-a again', () => b.peers('net-a').at(-1))) as PeerAnnouncement;
    expect(peer.generation).toBe(generation);
    expect(peer.podCIDR).toBe(before.a);
  });

  it('clears a deleted node\'s peer everywhere and does not give its pod CIDR to the next node', async () => {
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b', await password(hub, 'net-b'));
    await b.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await waitFor('the peer of net-c', () => b.peers('net-c').length > 0);
    const released = nodeJson(hub, 'net-c').spec!.podCIDR!;
    const deleted = cli(hub, ['delete', 'node', 'net-c']);
    expect(deleted.code, deleted.stderr).toBe(0);
    await waitFor('the peer of net-c cleared', () => b.peers('net-c').at(-1) === 'cleared');
    // A new subscriber finds nothing retained for it.
    const late = await FakeDevice.join(hub.mqttUrl, hub.joinToken, 'net-d');
    await late.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await waitFor('the retained peer of net-a at net-d', () => late.peers('net-a').length > 0);
    expect(late.peers('net-c')).toEqual([]);
    const next = await waitFor('a pod CIDR on net-d', () => nodeJson(hub, 'net-d').spec?.podCIDR);
    expect(next).not.toBe(released);
    expect((await metrics(hub))).toContain('flotilla_ipam_cidrs{state="quarantined"} 1');
  });
});

describe('exhaustion', () => {
  it('gives CIDRNotAvailable and NetworkUnavailable when no block is left, naming the cluster CIDR', async () => {
    const hub = await startHub({ dataDir: join(dirs.path, 'tiny'), extraArgs: ['--cluster-cidr', '10.99.0.0/24', '--node-cidr-mask-size', '25'] });
    for (const name of ['t-1', 't-2', 't-3']) await FakeDevice.join(hub.mqttUrl, hub.joinToken, name);
    await waitFor('blocks on t-1 and t-2', () => nodeJson(hub, 't-1').spec?.podCIDR && nodeJson(hub, 't-2').spec?.podCIDR);
    expect([nodeJson(hub, 't-1').spec?.podCIDR, nodeJson(hub, 't-2').spec?.podCIDR].sort()).toEqual(['10.99.0.0/25', '10.99.0.128/25']);
    const condition = await waitFor('CIDRNotAvailable on t-3', () => networkCondition(hub, 't-3'));
    expect(condition).toEqual(expect.objectContaining({ status: 'True', reason: 'CIDRNotAvailable', message: expect.stringContaining('the cluster CIDR 10.99.0.0/24 (--cluster-cidr) holds 2 blocks of /25 (--node-cidr-mask-size)') }));
    expect(nodeJson(hub, 't-3').spec?.podCIDR).toBeUndefined();
    const described = cli(hub, ['describe', 'node', 't-3']);
    expect(described.stdout).toMatch(/Warning\s+CIDRNotAvailable/);
    // The device's own report does not overwrite the IPAM's reason while the node has no block.
    const t3 = devices.find((d) => d.name === 't-3')!;
    await t3.report(wireguard(9, { ready: false, reason: 'NoPodCIDR', message: 'waiting for a pod CIDR' }));
    await waitFor('the report stored', () => nodeJson(hub, 't-3').status?.overlay?.reason === 'NoPodCIDR');
    expect(networkCondition(hub, 't-3')?.reason).toBe('CIDRNotAvailable');
    // A deleted node's block is quarantined: t-3 still waits.
    expect(cli(hub, ['delete', 'node', 't-1']).code).toBe(0);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(nodeJson(hub, 't-3').spec?.podCIDR).toBeUndefined();
    expect(await metrics(hub)).toContain('flotilla_ipam_cidrs{state="quarantined"} 1');
    await hub.process.stop();
  });
});

describe('bad flags', () => {
  it.each([
    [['--cluster-cidr', '10.42.0.1/16'], /--cluster-cidr: '10\.42\.0\.1\/16' has host bits set/],
    [['--cluster-cidr', 'fd00::/64'], /--cluster-cidr: .*IPv4/],
    [['--node-cidr-mask-size', '16'], /--node-cidr-mask-size: \/16 is not longer than the cluster CIDR 10\.42\.0\.0\/16/],
    [['--node-cidr-mask-size', '31'], /--node-cidr-mask-size: 31 is not a prefix length from 1 to 30/],
    [['--node-cidr-mask-size', 'big'], /--node-cidr-mask-size: 'big' is not a prefix length/],
  ])('refuses %j with a clear error and exit 2', (args, message) => {
    const r = spawnSync(process.execPath, [BIN, 'hub', '--data-dir', join(dirs.path, 'never'), '--api-port', '0', '--mqtt-port', '0', ...args], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(existsSync(join(dirs.path, 'never'))).toBe(false);
  });
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
    await x.report(wireguard(4));
    const peer = (await waitFor('the peer of ext-x through Mosquitto', () => y.peers('ext-x').at(-1))) as PeerAnnouncement;
    expect(peer).toMatchObject({ node: 'ext-x', publicKey: key(4) });
    // With an external broker the hub does not see where a device connects from: no hub-observed endpoint.
    expect(peer.endpoints.map((e) => e.source)).toEqual(['reported']);
    // Mosquitto drops what a device publishes where it may not (MQTT 3.1.1 has no refusal to send back).
    await x.client.publishAsync(topics.peer('ext-x'), Buffer.from(JSON.stringify({ ...peer, publicKey: key(5), generation: peer.generation + 1 })), { qos: 1, retain: true });
    await x.client.publishAsync(topics.peer('ext-y'), Buffer.from('forged'), { qos: 1, retain: true });
    await x.client.publishAsync(topics.relay(), Buffer.from('forged'), { qos: 1, retain: true });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(y.peers('ext-x').filter((p) => p !== 'cleared' && p.publicKey === key(5))).toEqual([]);
    expect(y.messages.filter((m) => m.topic !== topics.peer('ext-x'))).toEqual([]);
    // A fresh reader gets the hub's retained message, not the device's.
    const z = await FakeDevice.join(mosquitto.url, hub.joinToken, 'ext-z');
    await z.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const retained = (await waitFor('the retained peer of ext-x', () => z.peers('ext-x').at(-1))) as PeerAnnouncement;
    expect(retained.publicKey).toBe(key(4));
    expect(z.messages.some((m) => m.topic === topics.relay())).toBe(false);
  });

  it('clears, when it starts, what the broker retains for a node that no longer exists', async () => {
    const hubDir = join(dirs.path, 'ext-hub');
    await hub.process.stop();
    // A peer left behind at the broker while the hub was down (written here with the hub's own account).
    const writer = await mqtt.connectAsync(mosquitto.url, { clientId: 'test-ghost-writer', username: HUB_USERNAME, password: readFileSync(join(hubDir, 'broker.password'), 'utf8').trim(), protocolVersion: 4, reconnectPeriod: 0 });
    await writer.publishAsync(topics.peer('ghost'), Buffer.from(JSON.stringify({ v: 1, node: 'ghost', publicKey: key(6), podCIDR: '10.42.99.0/24', endpoints: [], generation: 1 })), { qos: 1, retain: true });
    await writer.endAsync();
    hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
    const reader = await FakeDevice.connect(mosquitto.url, 'ext-y', passwords.get('ext-y')!);
    await reader.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await waitFor('the peers of existing nodes', () => reader.peers('ext-x').length > 0);
    await waitFor('nothing retained for ghost', async () => {
      const probe = await FakeDevice.connect(mosquitto.url, 'ext-z', passwords.get('ext-z')!);
      await probe.client.subscribeAsync(topics.allPeers(), { qos: 1 });
      await new Promise((r) => setTimeout(r, 300));
      const ghost = probe.peers('ghost');
      await probe.close();
      return ghost.length === 0;
    }, 15_000, 500);
    expect(reader.peers('ext-x').at(-1)).toMatchObject({ publicKey: key(4) });
  });
});

/** Starts test/harness/relay.mjs (a byte relay) and waits for what it listens on. */
async function startRelay(listen: string, connect: string, name: string, netns?: string): Promise<{ process: ManagedProcess; listening: number | string }> {
  const proc = spawnLogged([join(REPO, 'test', 'harness', 'relay.mjs'), listen, connect], join(dirs.path, `relay-${name}.log`), REPO, {}, netns);
  const listening = await waitFor(`the relay ${listen} -> ${connect}`, () => {
    if (proc.exitCode !== undefined) throw new Error(`relay exited with ${proc.exitCode}: ${proc.log()}`);
    const line = proc.log().split('\n').find((l) => l.startsWith('{"listening"'));
    return line ? (JSON.parse(line) as { listening: number | string }).listening : undefined;
  }, 10_000, 50);
  return { process: proc, listening };
}

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
    await startRelay(`unix:${socket}`, `tcp:${source}:${innerMqtt}`, `ns-${source}`, netns);
    const host = await startRelay('tcp:127.0.0.1:0', `unix:${socket}`, `host-${source}`);
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
    await startRelay(`unix:${apiSocket}`, `tcp:127.0.0.1:${inside.apiPort}`, 'ns-api', netns);
    const api = await startRelay('tcp:127.0.0.1:0', `unix:${apiSocket}`, 'host-api');
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
    await n1.report(wireguard(7));
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
    await FakeDevice.connect(after, 'nat-1', passwords.get('nat-1')!);
    const moved = (await waitFor('the peer of nat-1 at its new address', () => {
      const last = n2.peers('nat-1').at(-1);
      return last !== 'cleared' && last?.publicAddress === '198.51.100.99' ? last : undefined;
    })) as PeerAnnouncement;
    console.log(`peer followed a new public address in ${Date.now() - started} ms`);
    expect(moved.endpoints[0]).toEqual({ address: '198.51.100.99', port: 51827, source: 'hub-observed' });
    expect(moved.generation).toBeGreaterThan(first.generation);
  });
});
