import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodePayload, desiredStateSchema } from '../../shared/protocol/messages.js';
import type { PeerAnnouncement } from '../../shared/protocol/network.js';
import { Topics } from '../../shared/protocol/topics.js';
import { containsCidr, cidr } from '../../shared/net/cidr.js';
import { closeFakeDevices, FakeDevice, networkCondition, nodeJson, wireguardKey, wireguardReport } from '../harness/fake-device.js';
import { BIN, cli, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// The hub's side of the pod network against a real hub process, with MQTT clients standing in
// for devices (test/harness/fake-device.ts): pod CIDRs on join, kept over a restart and
// quarantined after a deletion; the desired set's network; the overlay in node status and
// NetworkUnavailable; the retained peer table and what one join costs a device; the CLI and
// /metrics; exhaustion; bad flags. The brokers' side is network-hub-brokers.test.ts.

const topics = new Topics();
const dirs = tempDir('nethub');
const PROMTOOL = '/usr/bin/promtool';

async function metrics(hub: RunningHub): Promise<string> {
  const res = await fetch(`${hub.apiUrl}/metrics`, { headers: { authorization: `Bearer ${hub.adminToken}`, connection: 'close' } });
  return res.text();
}

afterEach(closeFakeDevices);

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
      expect(desired.network).toEqual({ podCIDR: node.spec!.podCIDR, clusterCIDR: '10.42.0.0/16', serviceCIDR: '10.43.0.0/16' });
    }
    expect(cidrs.get('net-a')).not.toBe(cidrs.get('net-b'));
  });

  it('stores the overlay report, derives NetworkUnavailable, and publishes the peer retained', async () => {
    const a = await FakeDevice.connect(hub.mqttUrl, 'net-a');
    await a.report(wireguardReport(1, { advertiseAddress: '198.51.100.1' }));
    const node = await waitFor('status.overlay of net-a', () => {
      const n = nodeJson(hub, 'net-a');
      return n.status?.overlay ? n : undefined;
    });
    expect(node.status!.overlay).toMatchObject({ overlay: 'wireguard', publicKey: wireguardKey(1), port: 51821 });
    expect(networkCondition(hub, 'net-a')).toMatchObject({ status: 'False', reason: 'WireGuardUp', message: 'WireGuard is up (wireguard-go on flotilla-wg).' });
    // A device that subscribes later gets the retained peer: the hub's word, with the endpoints in order.
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b');
    await b.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const peer = await waitFor('the retained peer of net-a', () => b.peers('net-a').at(-1));
    expect(peer).toMatchObject({ v: 1, node: 'net-a', publicKey: wireguardKey(1), podCIDR: cidrs.get('net-a') });
    // On loopback the hub-observed address (127.0.0.1) is no endpoint: advertised, then reported.
    expect((peer as PeerAnnouncement).endpoints).toEqual([
      { address: '198.51.100.1', port: 51821, source: 'advertised' },
      { address: '192.168.7.1', port: 51821, source: 'reported' },
    ]);
    expect((peer as PeerAnnouncement).publicAddress).toBeUndefined();
    // Not ready: the agent's reason; --overlay none: OverlayDisabled, and the peer is cleared.
    await a.report(wireguardReport(1, { ready: false, reason: 'PodCIDROverlaps', message: 'the pod CIDR overlaps the route 10.42.0.0/16 dev eth0' }));
    await waitFor('NetworkUnavailable=True', () => networkCondition(hub, 'net-a')?.reason === 'PodCIDROverlaps');
    expect(networkCondition(hub, 'net-a')).toMatchObject({ status: 'True', message: expect.stringContaining('overlaps the route') });
    await a.report({ overlay: 'none', ready: false });
    await waitFor('OverlayDisabled', () => networkCondition(hub, 'net-a')?.reason === 'OverlayDisabled');
    expect(networkCondition(hub, 'net-a')?.status).toBe('False');
    await waitFor('the peer of net-a cleared', () => b.peers('net-a').at(-1) === 'cleared');
    await a.report(wireguardReport(1, { advertiseAddress: '198.51.100.1' }));
    await waitFor('the peer of net-a back', () => b.peers('net-a').at(-1) !== 'cleared');
  });

  it('costs each device one small message when another device joins', async () => {
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b');
    await b.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    await waitFor('the retained peers', () => b.peers('net-a').length > 0);
    const before = b.messages.length;
    const c = await FakeDevice.join(hub.mqttUrl, hub.joinToken, 'net-c');
    await waitFor('a pod CIDR on net-c', () => nodeJson(hub, 'net-c').spec?.podCIDR);
    await c.report(wireguardReport(3, { addresses: ['192.168.7.3', '10.0.3.3'] }));
    const peer = await waitFor('the peer of net-c at net-b', () => b.peers('net-c').at(-1));
    // Reports that move only the figures publish nothing more.
    for (let i = 0; i < 5; i++) await c.report(wireguardReport(3, { addresses: ['192.168.7.3', '10.0.3.3'], peers: [{ node: 'net-a', path: 'direct', rxBytes: i * 1000, txBytes: i * 2000 }] }));
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
    const b0 = await FakeDevice.connect(hub.mqttUrl, 'net-b');
    await b0.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const generation = (await waitFor('the peer of net-a', () => b0.peers('net-a').at(-1)) as PeerAnnouncement).generation;
    await b0.close();

    await hub.process.stop();
    hub = await startHub({ dataDir });
    expect(nodeJson(hub, 'net-a').spec?.podCIDR).toBe(before.a);
    expect(nodeJson(hub, 'net-c').spec?.podCIDR).toBe(before.c);
    // The embedded broker lost its retained messages with the process: the hub publishes them again, as they were.
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b');
    await b.client.subscribeAsync(topics.allPeers(), { qos: 1 });
    const peer = (await waitFor('the peer of net-a again', () => b.peers('net-a').at(-1))) as PeerAnnouncement;
    expect(peer.generation).toBe(generation);
    expect(peer.podCIDR).toBe(before.a);
  });

  it('clears a deleted node\'s peer everywhere and does not give its pod CIDR to the next node', async () => {
    const b = await FakeDevice.connect(hub.mqttUrl, 'net-b');
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
    await FakeDevice.join(hub.mqttUrl, hub.joinToken, 't-1');
    await FakeDevice.join(hub.mqttUrl, hub.joinToken, 't-2');
    const t3 = await FakeDevice.join(hub.mqttUrl, hub.joinToken, 't-3');
    await waitFor('blocks on t-1 and t-2', () => nodeJson(hub, 't-1').spec?.podCIDR && nodeJson(hub, 't-2').spec?.podCIDR);
    expect([nodeJson(hub, 't-1').spec?.podCIDR, nodeJson(hub, 't-2').spec?.podCIDR].sort()).toEqual(['10.99.0.0/25', '10.99.0.128/25']);
    const condition = await waitFor('CIDRNotAvailable on t-3', () => networkCondition(hub, 't-3'));
    expect(condition).toEqual(expect.objectContaining({ status: 'True', reason: 'CIDRNotAvailable', message: expect.stringContaining('the cluster CIDR 10.99.0.0/24 (--cluster-cidr) holds 2 blocks of /25 (--node-cidr-mask-size)') }));
    expect(nodeJson(hub, 't-3').spec?.podCIDR).toBeUndefined();
    const described = cli(hub, ['describe', 'node', 't-3']);
    expect(described.stdout).toMatch(/Warning\s+CIDRNotAvailable/);
    // The device's own report does not overwrite the IPAM's reason while the node has no block.
    await t3.report(wireguardReport(9, { ready: false, reason: 'NoPodCIDR', message: 'waiting for a pod CIDR' }));
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
