import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startAgent, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import { execIn, inDevice, killStrayDaemons, sandbox } from '../harness/device-pods.js';

// Two devices' data planes carry pod traffic: each device a dockerd's namespace with the agent in
// it, joined by a veth pair on a documentation range (the underlay). Each agent has the other's
// peer in its peer cache on disk (as after a restart with the hub gone) and its pod CIDR in its
// desired set on disk. A pod on one device reaches the pod on the other by pod IP, and the
// receiver sees the sender's pod IP: no NAT between pod CIDRs. Peers, paths and the hub's part
// are tested elsewhere; this is the tunnel, the bridge, the route and the nft table together.

const IP = '/usr/sbin/ip';
const PORT = 51898;
const CLUSTER_CIDR = '10.42.0.0/16';
const dirs = tempDir('overlay-pods');
const NO_HUB = { mqttUrl: 'mqtt://127.0.0.1:1', joinToken: 'unused' } as unknown as RunningHub;

interface Device {
  node: string;
  dockerd: TestDockerd;
  iface: string;
  underlay: string;
  podCIDR: string;
  privateKey: string;
  stateDir: string;
  agent?: ManagedProcess;
}
const devices: Device[] = [];

/** A pod whose httpd answers /cgi-bin/ip with the address the request came from. */
const SERVER = ['sh', '-c', 'mkdir -p /tmp/www/cgi-bin && printf \'#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho "$REMOTE_ADDR"\\n\' > /tmp/www/cgi-bin/ip && chmod +x /tmp/www/cgi-bin/ip && exec httpd -f -p 8080 -h /tmp/www'];

function seed(d: Device, peer: Device): void {
  mkdirSync(d.stateDir, { recursive: true, mode: 0o700 });
  const desired = { v: 1, rev: 1, pods: [{ uid: `uid-${d.node}`, name: `server-${d.node}`, namespace: 'default', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: TEST_IMAGE, command: SERVER }] } }], configs: [], secrets: [], network: { podCIDR: d.podCIDR, clusterCIDR: CLUSTER_CIDR } };
  const announcement = { v: 1, node: peer.node, publicKey: publicKeyOf(peer.privateKey), podCIDR: peer.podCIDR, endpoints: [{ address: peer.underlay, port: PORT, source: 'advertised' }], generation: 1 };
  const files: [string, string][] = [
    ['credentials.json', JSON.stringify({ hub: NO_HUB.mqttUrl, node: d.node, username: `node:${d.node}`, password: 'unused' })],
    ['desired.json', JSON.stringify(desired)],
    ['desired-revision.json', JSON.stringify({ rev: 1 })],
    ['wireguard.key', `${d.privateKey}\n`],
    ['peers.json', JSON.stringify({ v: 1, peers: [announcement] })],
  ];
  for (const [name, text] of files) for (const file of [name, `${name}.bak`]) writeFileSync(join(d.stateDir, file), text, { mode: 0o600 });
}

beforeAll(async () => {
  for (const [i, node] of ['dev-a', 'dev-b'].entries()) {
    const dockerd = await startDockerd({ name: `ovl-${node}` });
    await buildTestImages(dockerd.docker);
    devices.push({ node, dockerd, iface: `flt${i === 0 ? 'a' : 'b'}${process.pid % 1_000_000}`, underlay: `192.0.2.${i + 1}`, podCIDR: `10.42.${i + 1}.0/24`, privateKey: generatePrivateKey(), stateDir: join(dirs.path, node, 'state') });
  }
  const [a, b] = devices as [Device, Device];
  // The underlay: a veth pair made inside A with its other end in B; nothing on the host.
  await inDevice(a, IP, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0', 'netns', b.dockerd.netns);
  for (const d of devices) {
    await inDevice(d, IP, 'addr', 'add', `${d.underlay}/24`, 'dev', 'ul0');
    await inDevice(d, IP, 'link', 'set', 'ul0', 'up');
  }
  seed(a, b);
  seed(b, a);
  for (const d of devices) {
    mkdirSync(join(dirs.path, d.node), { recursive: true });
    d.agent = startAgent({ hub: NO_HUB, hubUrl: NO_HUB.mqttUrl, name: d.node, stateDir: d.stateDir, dockerHost: d.dockerd.dockerHost, netns: d.dockerd.netns, extraArgs: ['--overlay', 'wireguard', '--wireguard-interface', d.iface, '--wireguard-port', String(PORT), '--advertise-address', d.underlay] });
  }
}, 180_000);

afterAll(async () => {
  await stopAll();
  for (const d of devices) await inDevice(d, IP, 'link', 'del', 'dev', d.iface).catch(() => undefined);
  killStrayDaemons(devices.map((d) => d.iface));
  for (const d of devices) await d.dockerd.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('pod to pod across two devices', () => {
  it('gives each pod an IP in its own node\'s pod CIDR', async () => {
    for (const d of devices) {
      const s = await waitFor(`the pod on ${d.node}`, () => sandbox(d), 90_000, 250);
      expect(s.ip.startsWith(d.podCIDR.replace('0/24', ''))).toBe(true);
    }
  });

  it('a pod reaches the other device\'s pod by pod IP, both ways, and the receiver sees the sender\'s pod IP', async () => {
    const [a, b] = devices as [Device, Device];
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const target = (await sandbox(to))!.ip;
      const source = (await sandbox(from))!.ip;
      const answer = await waitFor(`${from.node} → ${to.node}`, async () => {
        // busybox's nc, not its wget (which crashes in the static busybox of the test image).
        const r = await execIn(from, ['sh', '-c', `printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${target} 8080`]);
        const last = r.output.split(/\r?\n/).filter(Boolean).pop();
        if (r.code !== 0 || !last) throw new Error(`nc exited ${r.code}: ${r.output}`);
        // httpd listens on IPv6 and says `[::ffff:a.b.c.d]` for an IPv4 client.
        return last.replace(/^\[::ffff:(.*)\]$/, '$1');
      }, 60_000, 500);
      expect(answer).toBe(source);
    }
    // Through the tunnel: each side's interface has a handshake with the other.
    for (const d of devices) {
      const dump = await inDevice(d, 'wg', 'show', d.iface, 'dump');
      const peer = dump.split('\n')[1]!.split('\t');
      expect(Number(peer[4])).toBeGreaterThan(0);
    }
  });

  it('gives pods MTU 1420, and a full-size packet crosses the tunnel', async () => {
    const [a, b] = devices as [Device, Device];
    expect((await execIn(a, ['cat', '/sys/class/net/eth0/mtu'])).output).toBe('1420');
    // 1392 bytes of ICMP data + 28 of headers: one packet of the pod interface's MTU.
    const r = await execIn(a, ['ping', '-c', '2', '-W', '3', '-s', '1392', (await sandbox(b))!.ip]);
    expect(r.code, r.output).toBe(0);
  });
});
