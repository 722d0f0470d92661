import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startAgent, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { BUSYBOX, mustRunIn } from '../harness/netns.js';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import { execIn, inDevice, killStrayDaemons, sandbox } from '../harness/device-pods.js';

// The service proxy inside the real agent, with the hub gone: two devices (each a dockerd's
// namespace with its agent, joined by a veth underlay, the overlay's peers and desired sets on
// disk as in overlay-pods.test.ts). Device A's agent is stopped, its service book on disk is
// given a Service whose only endpoint is the pod on device B, and it is started again with no
// hub to reach: its pod reaches the Service's virtual IP (through the agent's nft table and the
// WireGuard overlay, the pod's address kept), and device B reaches the node port on A's
// underlay address (the routing mesh: A forwards to B's pod and the reply comes back through A).

const IP = '/usr/sbin/ip';
const PORT = 51897;
const CLUSTER_CIDR = '10.42.0.0/16';
const VIP = '10.43.0.10';
const NODE_PORT = 30080;
const dirs = tempDir('svc-proxy-agent');
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

function writeState(d: Device, name: string, value: unknown): void {
  for (const file of [name, `${name}.bak`]) writeFileSync(join(d.stateDir, file), JSON.stringify(value), { mode: 0o600 });
}

function seed(d: Device, peer: Device): void {
  mkdirSync(d.stateDir, { recursive: true, mode: 0o700 });
  const desired = { v: 1, rev: 1, pods: [{ uid: `uid-${d.node}`, name: `server-${d.node}`, namespace: 'default', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: TEST_IMAGE, command: SERVER }] } }], configs: [], secrets: [], network: { podCIDR: d.podCIDR, clusterCIDR: CLUSTER_CIDR } };
  const announcement = { v: 1, node: peer.node, publicKey: publicKeyOf(peer.privateKey), podCIDR: peer.podCIDR, endpoints: [{ address: peer.underlay, port: PORT, source: 'advertised' }], generation: 1 };
  writeState(d, 'credentials.json', { hub: NO_HUB.mqttUrl, node: d.node, username: `node:${d.node}`, password: 'unused' });
  writeState(d, 'desired.json', desired);
  writeState(d, 'desired-revision.json', { rev: 1 });
  writeFileSync(join(d.stateDir, 'wireguard.key'), `${d.privateKey}\n`, { mode: 0o600 });
  writeFileSync(join(d.stateDir, 'wireguard.key.bak'), `${d.privateKey}\n`, { mode: 0o600 });
  writeState(d, 'peers.json', { v: 1, peers: [announcement] });
}

function start(d: Device): void {
  d.agent = startAgent({ hub: NO_HUB, hubUrl: NO_HUB.mqttUrl, name: d.node, stateDir: d.stateDir, dockerHost: d.dockerd.dockerHost, netns: d.dockerd.netns, extraArgs: ['--overlay', 'wireguard', '--wireguard-interface', d.iface, '--wireguard-port', String(PORT), '--advertise-address', d.underlay] });
}

beforeAll(async () => {
  for (const [i, node] of ['svc-a', 'svc-b'].entries()) {
    const dockerd = await startDockerd({ name: `svp-${node}` });
    await buildTestImages(dockerd.docker);
    devices.push({ node, dockerd, iface: `fsv${i === 0 ? 'a' : 'b'}${process.pid % 1_000_000}`, underlay: `192.0.2.${i + 1}`, podCIDR: `10.42.${i + 1}.0/24`, privateKey: generatePrivateKey(), stateDir: join(dirs.path, node, 'state') });
  }
  const [a, b] = devices as [Device, Device];
  await inDevice(a, IP, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0', 'netns', b.dockerd.netns);
  for (const d of devices) {
    await inDevice(d, IP, 'addr', 'add', `${d.underlay}/24`, 'dev', 'ul0');
    await inDevice(d, IP, 'link', 'set', 'ul0', 'up');
  }
  seed(a, b);
  seed(b, a);
  for (const d of devices) start(d);
  for (const d of devices) await waitFor(`the pod on ${d.node}`, () => sandbox(d), 90_000, 250);
}, 240_000);

afterAll(async () => {
  await stopAll();
  for (const d of devices) await inDevice(d, IP, 'link', 'del', 'dev', d.iface).catch(() => undefined);
  killStrayDaemons(devices.map((d) => d.iface));
  for (const d of devices) await d.dockerd.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the agent\'s service proxy, with the hub gone', () => {
  it('after a restart from the service book on disk, a pod reaches a virtual IP and a node port forwards to another device', async () => {
    const [a, b] = devices as [Device, Device];
    const podA = (await sandbox(a))!.ip;
    const podB = (await sandbox(b))!.ip;
    await a.agent!.stop();
    writeState(a, 'services.json', {
      v: 1,
      services: [{ v: 1, namespace: 'default', name: 'store', uid: 'u-store', type: 'NodePort', clusterIP: VIP, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080, nodePort: NODE_PORT }], generation: 1 }],
      endpoints: [['default', 'store', 'server-svc-b', { v: 1, ip: podB, node: b.node, ready: true, ports: { '': 8080 }, generation: 1 }]],
    });
    start(a);

    // Pod on A → virtual IP → pod on B over the overlay; B sees A's pod address.
    const answer = await waitFor('the virtual IP from the pod on A', async () => {
      const r = await execIn(a, ['sh', '-c', `printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${VIP} 80`]);
      const last = r.output.split(/\r?\n/).filter(Boolean).pop();
      if (r.code !== 0 || !last) throw new Error(`nc exited ${r.code}: ${r.output}`);
      return last.replace(/^\[::ffff:(.*)\]$/, '$1');
    }, 60_000, 500);
    expect(answer).toBe(podA);

    // Device B → A's own address and node port → B's pod, the source rewritten to A's pod gateway so the reply comes back through A.
    const seen = await waitFor('the node port on A from device B', async () => {
      const out = await mustRunIn(b.dockerd.netns, [BUSYBOX, 'sh', '-c', `printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | ${BUSYBOX} nc -w 3 ${a.underlay} ${NODE_PORT}`]);
      return out.split(/\r?\n/).filter(Boolean).pop()?.replace(/^\[::ffff:(.*)\]$/, '$1');
    }, 30_000, 500);
    expect(seen).toBe('10.42.1.1');

    const tables = await inDevice(a, 'nft', 'list', 'tables');
    expect(tables).toContain('table ip flotilla-svc');
    expect(tables).toContain('table ip flotilla\n');
    expect(readFileSync(join(a.stateDir, '..', readdirSync(join(a.stateDir, '..')).filter((f) => f.startsWith('agent-svc-a')).sort().pop()!), 'utf8')).toContain('service table written whole');
  });
});
