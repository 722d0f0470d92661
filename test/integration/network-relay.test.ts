import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinHub } from '../../agent/link/join.js';
import type { DeviceCredentials } from '../../agent/state/state.js';
import { publicKeyOf } from '../../shared/net/keys.js';
import { parseDump } from '../../shared/net/wireguard.js';
import { PROTOCOL_VERSION, statusReportSchema } from '../../shared/protocol/messages.js';
import { relayAnnouncementSchema, type RelayAnnouncement } from '../../shared/protocol/network.js';
import { deviceClientId, deviceUsername, Topics } from '../../shared/protocol/topics.js';
import { inNs, IP, NSENTER, RelayLab, WG, wireguardGoPids, type WireguardEnd } from '../harness/relay-lab.js';
import { BIN, REPO, spawnLogged, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The hub's WireGuard relay on real parts: a hub in a network namespace of the test's own with
// --relay on, real wireguard-go and wg. Two hand-made WireGuard ends in two more namespaces,
// each reaching only the hub's namespace (over its own veth) and each with the relay as its only
// peer, exchange datagrams through it. Devices are fake (MQTT clients that joined through the real
// join flow and report a WireGuard key in their status), their ends are real.

const PROMTOOL = '/usr/bin/promtool';
/** Runs the hub without CAP_NET_ADMIN (root keeps every other capability). */
const NO_NET_ADMIN = ['/usr/bin/setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin', '--'];
const ID = process.pid % 100_000;
const RELAY_IF = `rly${ID}`;
const CLUSTER_CIDR = '10.42.0.0/16';
// Ports on the hub namespace's own loopback: nothing else listens there, and they stay the same over restarts.
const API_PORT = 18080;
const MQTT_PORT = 11883;

const topics = new Topics();
const dirs = tempDir('net-relay');
const lab = new RelayLab(dirs.path);
const HUB_NS = `rlh${ID}`;
const A_NS = `rla${ID}`;
const B_NS = `rlb${ID}`;
const dataDir = join(dirs.path, 'hub');
let hub: RunningHub;
let api: { apiUrl: string; mqttUrl: string };
let ends: Record<'a' | 'b', WireguardEnd>;
let creds: Record<'a' | 'b', DeviceCredentials>;
const clients: MqttClient[] = [];
const podCIDRs: Record<'a' | 'b', string> = { a: '', b: '' };

function startRelayHub(mode: 'on' | 'off' | 'auto', ns = HUB_NS, iface = RELAY_IF, opts: { env?: Record<string, string>; wrap?: string[]; dir?: string } = {}): Promise<RunningHub> {
  return startHub({
    dataDir: opts.dir ?? dataDir,
    apiPort: API_PORT,
    mqttPort: MQTT_PORT,
    extraArgs: ['--relay', mode, '--relay-interface', iface, '--relay-port', '51820'],
    wrap: [NSENTER, `--net=/var/run/netns/${ns}`, ...(opts.wrap ?? [])],
    ...(opts.env ? { env: opts.env } : {}),
  });
}

async function hubApi(path: string, init: RequestInit = {}, base = api.apiUrl): Promise<Response> {
  return fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': 'application/json' } });
}

async function metrics(base = api.apiUrl): Promise<string> {
  const res = await hubApi('/metrics', {}, base);
  expect(res.status).toBe(200);
  return res.text();
}

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

/** The relay interface's `wg show dump`, parsed, read inside the hub's namespace. */
function relayDump() {
  return parseDump(inNs(HUB_NS, WG, ['show', RELAY_IF, 'dump']));
}

/** True when all `count` datagrams from `from` were answered by `to`, which saw `from`'s own overlay address (no NAT on the path). */
function reaches(from: WireguardEnd, to: WireguardEnd, count = 1, size = 64): boolean {
  const seen = lab.echo(from, to, count, size);
  return seen.length === count && seen.every((address) => address === from.address);
}

function logEntries(h: RunningHub): { msg?: string; level?: number; [k: string]: unknown }[] {
  return h.process.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string });
}

async function deviceClient(c: DeviceCredentials): Promise<MqttClient> {
  const client = await mqtt.connectAsync(api.mqttUrl, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, clientId: deviceClientId(c.node), username: deviceUsername(c.node), password: c.password });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

/** The retained relay announcement as a device reads it: undefined when the topic holds nothing (cleared). */
async function readRelayAnnouncement(c: DeviceCredentials): Promise<RelayAnnouncement | undefined> {
  const client = await deviceClient(c);
  const got = new Promise<Buffer | undefined>((resolve) => {
    client.on('message', (topic, payload) => topic === topics.relay() && resolve(payload));
    setTimeout(() => resolve(undefined), 3_000);
  });
  await client.subscribeAsync(topics.relay(), { qos: 1 });
  const payload = await got;
  await client.endAsync(true);
  return payload && payload.length > 0 ? relayAnnouncementSchema.parse(JSON.parse(payload.toString('utf8'))) : undefined;
}

/** A status report of a fake device whose overlay is up with `end`'s key. */
async function reportNetwork(c: DeviceCredentials, end: WireguardEnd): Promise<void> {
  const client = await deviceClient(c);
  const report = statusReportSchema.parse({
    v: PROTOCOL_VERSION,
    ts: new Date().toISOString(),
    observedRev: null,
    node: {
      info: { hostname: c.node, operatingSystem: 'linux', architecture: 'amd64', agentVersion: 'relay-test' },
      capacity: { cpu: '2', memory: '1Gi', pods: '110' },
      engineReady: true,
      network: { overlay: 'wireguard', ready: true, publicKey: end.publicKey, port: 51820, implementation: 'wireguard-go', interface: end.iface },
    },
    pods: [],
  });
  await client.publishAsync(topics.status(c.node), JSON.stringify(report), { qos: 1 });
}

/** The node's pod CIDR: the one the hub gave it, or (before the hub allocates them) one set through the API. */
async function ensurePodCIDR(node: string, fallback: string): Promise<string> {
  const obj = (await (await hubApi(`/api/v1/nodes/${node}`)).json()) as { spec?: { podCIDR?: string } };
  if (obj.spec?.podCIDR) return obj.spec.podCIDR;
  const res = await hubApi(`/api/v1/nodes/${node}`, { method: 'PUT', body: JSON.stringify({ ...obj, spec: { ...obj.spec, podCIDR: fallback, podCIDRs: [fallback] } }) });
  expect(res.status, await res.clone().text()).toBe(200);
  return fallback;
}

beforeAll(async () => {
  lab.namespace(HUB_NS);
  lab.namespace(A_NS);
  lab.namespace(B_NS);
  lab.owns(HUB_NS, RELAY_IF);
  // Each end reaches the hub's namespace only; the two have no route to each other's underlay.
  lab.link(HUB_NS, 'va', '198.51.100.1/24', A_NS, 'vh', '198.51.100.2/24');
  lab.link(HUB_NS, 'vb', '203.0.113.1/24', B_NS, 'vh', '203.0.113.2/24');
  hub = await startRelayHub('on');
  api = { apiUrl: `http://127.0.0.1:${await lab.bridge(HUB_NS, API_PORT, 'api')}`, mqttUrl: `mqtt://127.0.0.1:${await lab.bridge(HUB_NS, MQTT_PORT, 'mqtt')}` };
  creds = {
    a: await joinHub({ hub: api.mqttUrl, token: hub.joinToken, name: `dev-a-${ID}`, labels: {}, topics, timeoutMs: 15_000 }),
    b: await joinHub({ hub: api.mqttUrl, token: hub.joinToken, name: `dev-b-${ID}`, labels: {}, topics, timeoutMs: 15_000 }),
  };
  podCIDRs.a = await ensurePodCIDR(creds.a.node, '10.42.1.0/24');
  podCIDRs.b = await ensurePodCIDR(creds.b.node, '10.42.2.0/24');
  const first = (cidr: string) => `${cidr.split('/')[0]!.replace(/\.0$/, '.1')}/${cidr.split('/')[1]}`;
  ends = { a: lab.wireguardEnd(A_NS, `rwa${ID}`, first(podCIDRs.a)), b: lab.wireguardEnd(B_NS, `rwb${ID}`, first(podCIDRs.b)) };
}, 180_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await stopAll();
  await lab.cleanup();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the hub relay with --relay on, in a namespace of its own', () => {
  it('makes a wireguard-go interface with MTU 1420, the port, the key from the data directory, the cluster route and forwarding', () => {
    const [link] = JSON.parse(inNs(HUB_NS, IP, ['-d', '-j', 'link', 'show', 'dev', RELAY_IF])) as { mtu: number; linkinfo?: { info_kind?: string }; flags: string[] }[];
    expect(link?.mtu).toBe(1420);
    expect(link?.linkinfo?.info_kind).toBe('tun');
    expect(link?.flags).toContain('UP');
    expect(wireguardGoPids(RELAY_IF)).toHaveLength(1);
    const dump = relayDump()!;
    expect(dump.listenPort).toBe(51820);
    expect(dump.publicKey).toBe(publicKeyOf(readFileSync(join(dataDir, 'relay.key'), 'utf8').trim()));
    const routes = JSON.parse(inNs(HUB_NS, IP, ['-j', 'route', 'show', CLUSTER_CIDR])) as { dst: string; dev: string; protocol: string }[];
    expect(routes).toEqual([expect.objectContaining({ dst: CLUSTER_CIDR, dev: RELAY_IF, protocol: '241' })]);
    expect(inNs(HUB_NS, 'cat', ['/proc/sys/net/ipv4/ip_forward']).trim()).toBe('1');
    expect(logEntries(hub).find((e) => e.msg === 'relay up')).toMatchObject({ interface: RELAY_IF, implementation: 'wireguard-go', port: 51820 });
  });

  it('publishes its announcement retained, which a joined device reads', async () => {
    const announcement = await readRelayAnnouncement(creds.a);
    expect(announcement).toEqual({ v: 1, publicKey: relayDump()!.publicKey, port: 51820, endpoints: [], clusterCIDR: CLUSTER_CIDR });
  });

  it('makes a device that reports its key, and has a pod CIDR, a peer with allowed-IPs its pod CIDR', async () => {
    expect(relayDump()!.peers).toEqual([]);
    await reportNetwork(creds.a, ends.a);
    await reportNetwork(creds.b, ends.b);
    const peers = await waitFor('both devices to be relay peers', () => {
      const p = relayDump()!.peers;
      return p.length === 2 ? p : undefined;
    }, 20_000);
    expect(peers.map((p) => ({ key: p.publicKey, allowed: p.allowedIPs })).sort((x, y) => x.allowed[0]!.localeCompare(y.allowed[0]!))).toEqual([
      { key: ends.a.publicKey, allowed: [podCIDRs.a] },
      { key: ends.b.publicKey, allowed: [podCIDRs.b] },
    ]);
    // No endpoint is configured: the relay learns it from each device's handshake.
    expect(peers.every((p) => p.endpoint === undefined)).toBe(true);
  });

  it('forwards between two ends that reach only the relay, and observes their endpoints', async () => {
    const relayKey = relayDump()!.publicKey;
    lab.peerWithRelay(ends.a, relayKey, '198.51.100.1:51820', CLUSTER_CIDR);
    lab.peerWithRelay(ends.b, relayKey, '203.0.113.1:51820', CLUSTER_CIDR);
    // Without the relay there is no path: the ends' underlays have no route to each other.
    expect(() => inNs(A_NS, IP, ['route', 'get', '203.0.113.2'])).toThrow(/unreachable/);
    await lab.echoServer(ends.a);
    await lab.echoServer(ends.b);
    await waitFor('a datagram from a to b through the relay', () => reaches(ends.a, ends.b), 30_000, 500);
    expect(reaches(ends.b, ends.a, 3)).toBe(true);
    expect(reaches(ends.a, ends.b, 3)).toBe(true);
    const observed = await waitFor('the relay to log both observed endpoints', () => {
      const seen = new Map(logEntries(hub).filter((e) => e.msg === 'relay-observed endpoint').map((e) => [e.node as string, e.endpoint as string]));
      return seen.get(creds.a.node) && seen.get(creds.b.node) ? seen : undefined;
    }, 20_000);
    expect(observed.get(creds.a.node)).toBe('198.51.100.2:51820');
    expect(observed.get(creds.b.node)).toBe('203.0.113.2:51820');
  });

  it('shows its peers and relayed bytes rising on /metrics, which promtool accepts', async () => {
    const before = await waitFor('the relay counting bytes', async () => {
      const text = await metrics();
      return (sample(text, 'flotilla_relay_rx_bytes_total') ?? 0) > 0 ? text : undefined;
    }, 20_000, 1_000);
    expect(sample(before, 'flotilla_relay_up')).toBe(1);
    expect(sample(before, 'flotilla_relay_peers')).toBe(2);
    expect(sample(before, 'flotilla_relay_peers_connected')).toBe(2);
    expect(sample(before, 'flotilla_relay_handshakes_total')).toBeGreaterThanOrEqual(1);
    expect(reaches(ends.a, ends.b, 20, 1000)).toBe(true);
    await waitFor('relayed bytes to rise', async () => {
      const text = await metrics();
      return sample(text, 'flotilla_relay_rx_bytes_total')! > sample(before, 'flotilla_relay_rx_bytes_total')! && sample(text, 'flotilla_relay_tx_bytes_total')! > sample(before, 'flotilla_relay_tx_bytes_total')!;
    }, 20_000, 1_000);
    const check = spawnSync(PROMTOOL, ['check', 'metrics'], { input: before.split('\n').filter((l) => l.includes('flotilla_relay_')).join('\n') + '\n', encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
    expect(check.status).toBe(0);
  });

  it('keeps forwarding while the hub is stopped, and a restarted hub carries on with the same key and peers', async () => {
    const key = relayDump()!.publicKey;
    await hub.process.stop();
    expect(hub.process.exitCode).toBe(0);
    expect(wireguardGoPids(RELAY_IF)).toHaveLength(1);
    expect(reaches(ends.a, ends.b, 3)).toBe(true);
    hub = await startRelayHub('on');
    expect(relayDump()!.publicKey).toBe(key);
    expect(logEntries(hub).find((e) => e.msg === 'relay up')).toMatchObject({ publicKey: key, peers: 2 });
    expect(relayDump()!.peers.map((p) => p.publicKey).sort()).toEqual([ends.a.publicKey, ends.b.publicKey].sort());
    expect(reaches(ends.b, ends.a, 3)).toBe(true);
  });

  it('removes a deleted node from the peers', async () => {
    const res = await hubApi(`/api/v1/nodes/${creds.b.node}`, { method: 'DELETE' });
    expect(res.status).toBeLessThan(300);
    await waitFor('b to leave the relay', () => relayDump()!.peers.length === 1, 20_000);
    expect(relayDump()!.peers[0]!.publicKey).toBe(ends.a.publicKey);
    expect(reaches(ends.a, ends.b)).toBe(false);
  });

  it('makes the interface again, with its key and peers, when it is removed under the running hub', async () => {
    const key = relayDump()!.publicKey;
    inNs(HUB_NS, IP, ['link', 'del', RELAY_IF]);
    const dump = await waitFor('the relay interface to be back with its peer', () => {
      try {
        const d = relayDump();
        return d && d.peers.length === 1 ? d : undefined;
      } catch {
        return undefined;
      }
    }, 20_000, 250);
    expect(dump.publicKey).toBe(key);
    expect(dump.peers[0]).toMatchObject({ publicKey: ends.a.publicKey, allowedIPs: [podCIDRs.a] });
    expect(JSON.parse(inNs(HUB_NS, IP, ['-j', 'route', 'show', CLUSTER_CIDR]))).toEqual([expect.objectContaining({ dev: RELAY_IF, protocol: '241' })]);
    expect(logEntries(hub).some((e) => e.msg === 'the relay interface is gone: making it again')).toBe(true);
  });

  it('with --relay off removes the interface an earlier run left, and clears the announcement', async () => {
    await hub.process.stop();
    hub = await startRelayHub('off');
    expect(() => inNs(HUB_NS, IP, ['link', 'show', 'dev', RELAY_IF])).toThrow();
    await waitFor('the relay daemon to end', () => wireguardGoPids(RELAY_IF).length === 0, 10_000);
    expect(await readRelayAnnouncement(creds.a)).toBeUndefined();
    expect(sample(await metrics(), 'flotilla_relay_up')).toBe(0);
    expect(logEntries(hub).some((e) => e.msg?.includes('removed the relay interface an earlier run left'))).toBe(true);
  });
});

describe('the hub relay with --relay auto where the hub cannot make it', () => {
  it('starts the hub, warns naming what is missing, and reports the relay down', async () => {
    const ns = lab.namespace(`rlc${ID}`);
    const iface = `rlyc${ID}`;
    lab.owns(ns, iface);
    // Whether this kernel has WireGuard decides what the hub lacks without wireguard-go.
    let kernelWireguard = true;
    try {
      inNs(ns, IP, ['link', 'add', 'probe0', 'type', 'wireguard']);
      inNs(ns, IP, ['link', 'del', 'probe0']);
    } catch {
      kernelWireguard = false;
    }
    const bin = join(dirs.path, 'bin-without-wireguard-go');
    mkdirSync(bin);
    symlinkSync(IP, join(bin, 'ip'));
    symlinkSync(WG, join(bin, 'wg'));
    const apiUrl = `http://127.0.0.1:${await lab.bridge(ns, API_PORT, 'api-c')}`;
    const dir = join(dirs.path, 'hub-c');

    const noGo = await startRelayHub('auto', ns, iface, { dir, env: { PATH: bin } });
    const warning = logEntries(noGo).find((e) => e.level === 40 && e.msg?.startsWith('the relay is off'));
    if (kernelWireguard) {
      expect(logEntries(noGo).find((e) => e.msg === 'relay up')).toMatchObject({ implementation: 'kernel' });
    } else {
      expect(warning?.msg).toMatch(/kernel has no WireGuard/);
      expect(warning?.msg).toMatch(/wireguard-go is not installed/);
      expect(warning?.msg).toMatch(/--relay off/);
      expect(() => inNs(ns, IP, ['link', 'show', 'dev', iface])).toThrow();
      hub = noGo;
      expect(sample(await metrics(apiUrl), 'flotilla_relay_up')).toBe(0);
    }
    await noGo.process.stop();

    // Without CAP_NET_ADMIN no kernel or daemon helps: the warning says so.
    const noCap = await startRelayHub('auto', ns, iface, { dir, wrap: NO_NET_ADMIN });
    expect(logEntries(noCap).find((e) => e.level === 40 && e.msg?.startsWith('the relay is off'))?.msg).toMatch(/lacks CAP_NET_ADMIN/);
    hub = noCap;
    expect(sample(await metrics(apiUrl), 'flotilla_relay_up')).toBe(0);
    expect(() => inNs(ns, IP, ['link', 'show', 'dev', iface])).toThrow();
    await noCap.process.stop();
  });

  it('with --relay on, fails to start and names the flag', async () => {
    const ns = `rlc${ID}`;
    const dir = join(dirs.path, 'hub-c');
    const proc = spawnLogged([BIN, 'hub', '--data-dir', dir, '--api-port', String(API_PORT), '--mqtt-port', String(MQTT_PORT), '--relay', 'on', '--relay-interface', `rlyc${ID}`], join(dirs.path, 'hub-c-on.log'), REPO, {}, undefined, [NSENTER, `--net=/var/run/netns/${ns}`, ...NO_NET_ADMIN]);
    const code = await Promise.race([proc.exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 20_000))]);
    expect(code, proc.log().slice(-2000)).toBe(1);
    expect(proc.log()).toMatch(/--relay on: cannot run the relay on interface rlyc\d+: the hub lacks CAP_NET_ADMIN/);
    expect(proc.log()).not.toContain('"hub started"');
  });
});
