import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import { join } from 'node:path';
import type tls from 'node:tls';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUB_USERNAME, Topics } from '../../shared/protocol/topics.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';
import { startDeviceAgent, startRelay, type DeviceAgent } from '../harness/device.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply, podRunning } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startMosquitto, type TestMosquitto } from '../harness/mosquitto.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';

// Ingress end to end, with real parts: a hub (its broker a real Mosquitto, so that the test can
// write as the hub what the hub's Service publisher would), a device whose agent runs in a
// harness dockerd's namespace with the WireGuard overlay, two Services each with a busybox httpd
// pod serving its own content, and an Ingress with two hosts and two paths to them, plus TLS
// from kubernetes.io/tls Secrets made here with openssl. The device is made an ingress device by
// its label; the client reaches its ports 80 and 443 at the device's LAN address (not loopback)
// through a byte relay into its namespace, and checks each route, the 404, and the certificate
// each server name gets. Then the hub goes, the agent restarts, and the ingress still serves.

const execFileP = promisify(execFile);
const IP = '/usr/sbin/ip';
const NODE = 'edge';
const IFACE = `flti${process.pid % 1_000_000}`;
const WG_PORT = 51897;
const DEVICE_ADDRESS = '192.0.2.10';
const dirs = tempDir('ingress');
const topics = new Topics();

let dockerd: TestDockerd;
let mosquitto: TestMosquitto;
let hub: RunningHub;
let device: DeviceAgent;
const ports = { http: 0, https: 0 };
const certs: Record<string, { cert: string; key: string }> = {};

function httpdPod(name: string, app: string, files: Record<string, string>): string {
  const script = [...Object.entries(files).map(([path, text]) => `mkdir -p /www${path} && echo ${text} > /www${path}/index.html`), 'exec httpd -f -p 8080 -h /www'].join(' && ');
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {app: ${app}}}
spec:
  nodeName: ${NODE}
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["/bin/sh", "-c", ${JSON.stringify(script)}]
      ports: [{name: web, containerPort: 8080}]
`;
}

function service(name: string): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}}
spec:
  selector: {app: ${name}}
  ports: [{name: http, port: 80, targetPort: web}]
`;
}

const INGRESS = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  ingressClassName: flotilla
  tls:
    - {hosts: [alpha.test], secretName: alpha-tls}
    - {hosts: [beta.test], secretName: beta-tls}
  rules:
    - host: alpha.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
          - {path: /beta, pathType: Prefix, backend: {service: {name: beta, port: {name: http}}}}
    - host: beta.test
      http:
        paths:
          - {path: /, pathType: Exact, backend: {service: {name: beta, port: {number: 80}}}}
`;

function tlsSecret(name: string, host: string): string {
  const dir = join(dirs.path, 'certs');
  mkdirSync(dir, { recursive: true });
  const key = join(dir, `${host}.key`);
  const cert = join(dir, `${host}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${host}`, '-addext', `subjectAltName=DNS:${host}`], { stdio: 'ignore' });
  certs[host] = { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
  return JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(certs[host].cert).toString('base64'), 'tls.key': Buffer.from(certs[host].key).toString('base64') } });
}

/**
 * The Services' retained messages as the hub's Service publisher writes them, written with the
 * hub's own broker account when the hub has not written them itself within a few seconds.
 */
async function announceServices(names: string[]): Promise<void> {
  const client = await mqtt.connectAsync(mosquitto.url, { clientId: `test-ingress-${process.pid}`, username: HUB_USERNAME, password: readFileSync(join(hub.dataDir, 'broker.password'), 'utf8').trim(), protocolVersion: 4, reconnectPeriod: 0 });
  try {
    const retained = new Set<string>();
    client.on('message', (topic, payload) => {
      if (payload.length) retained.add(topic);
    });
    await client.subscribeAsync([topics.allServices(), topics.allEndpoints()], { qos: 1 });
    await new Promise((r) => setTimeout(r, 3_000));
    for (const name of names) {
      const pod = podRunning(hub, name)!;
      if (!retained.has(topics.service('default', name))) {
        const svc: ServiceAnnouncement = { v: 1, namespace: 'default', name, uid: `uid-${name}`, type: 'ClusterIP', clusterIP: 'None', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' }], generation: 1 };
        await client.publishAsync(topics.service('default', name), Buffer.from(JSON.stringify(svc)), { qos: 1, retain: true });
      }
      if (!retained.has(topics.endpoint('default', name, name))) {
        const ep: EndpointAnnouncement = { v: 1, ip: pod.status!.podIP!, node: NODE, ready: true, ports: { http: 8080 }, generation: 1 };
        await client.publishAsync(topics.endpoint('default', name, name), Buffer.from(JSON.stringify(ep)), { qos: 1, retain: true });
      }
    }
  } finally {
    await client.endAsync();
  }
}

function request(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A TLS request naming `servername` (SNI), trusting `ca` only and checking the name as a client does. */
function secureRequest(servername: string, ca: string, path = '/'): Promise<{ status: number; body: string; subject: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: ports.https, servername, path, headers: { host: servername }, ca, agent: false, timeout: 10_000 }, (res) => {
      const subject = String((res.socket as tls.TLSSocket).getPeerCertificate().subject.CN);
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim(), subject }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function rssKiB(proc: ManagedProcess): number {
  const status = readFileSync(`/proc/${proc.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

const agentArgs = ['--overlay', 'wireguard', '--wireguard-interface', IFACE, '--wireguard-port', String(WG_PORT), '--ingress-http-port', '80', '--ingress-https-port', '443'];

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'ingress' });
  await buildTestImages(dockerd.docker);
  const hubDir = join(dirs.path, 'hub');
  mkdirSync(hubDir, { recursive: true });
  mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
  hub = await startHub({ dataDir: hubDir, extraArgs: ['--broker', mosquitto.url] });
  // The device's own address on its LAN (a veth pair inside its namespace): its InternalIP, where the ingress is reached.
  for (const args of [['link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan1'], ['addr', 'add', `${DEVICE_ADDRESS}/24`, 'dev', 'lan0'], ['link', 'set', 'lan1', 'up'], ['link', 'set', 'lan0', 'up']]) await execFileP(IP, ['netns', 'exec', dockerd.netns, IP, ...args]);
  mkdirSync(join(dirs.path, 'device'), { recursive: true });
  device = await startDeviceAgent({ hub: { ...hub, mqttPort: mosquitto.port }, dockerd, name: NODE, stateDir: join(dirs.path, 'device', 'state'), extraArgs: agentArgs });
  await waitFor('the node to be Ready', () => getJson<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, ['node', NODE]).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'), 60_000, 250);
  apply(hub, httpdPod('alpha', 'alpha', { '': 'alpha-home' }));
  apply(hub, httpdPod('beta', 'beta', { '': 'beta-home', '/beta': 'beta-under-path' }));
  apply(hub, service('alpha'));
  apply(hub, service('beta'));
  for (const name of ['alpha', 'beta']) await waitFor(`pod ${name} running with a pod IP`, () => podRunning(hub, name)?.status?.podIP, 120_000, 250);
  await announceServices(['alpha', 'beta']);
  // The client's way in: host loopback → unix socket → the device's port at its LAN address.
  for (const [name, port] of [['http', 80], ['https', 443]] as const) {
    const socket = join(dirs.path, `ingress-${name}.sock`);
    await startRelay(`unix:${socket}`, `tcp:${DEVICE_ADDRESS}:${port}`, join(dirs.path, `relay-in-${name}.log`), { netns: dockerd.netns });
    ports[name] = Number((await startRelay('tcp:127.0.0.1:0', `unix:${socket}`, join(dirs.path, `relay-out-${name}.log`))).listening);
  }
}, 300_000);

afterAll(async () => {
  await stopAll();
  if (dockerd) {
    await execFileP(IP, ['netns', 'exec', dockerd.netns, IP, 'link', 'del', 'dev', IFACE]).catch(() => undefined);
    killStrayWireguardGo(IFACE);
    await dockerd.stop();
  }
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
}, 60_000);

function killStrayWireguardGo(name: string): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmdline[0]?.endsWith('wireguard-go') && cmdline.includes(name)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

describe('Ingress on an ingress device', () => {
  it('serves nothing until the node is labelled flotilla.io/ingress=true, then routes two hosts and two paths to two Services', async () => {
    apply(hub, tlsSecret('alpha-tls', 'alpha.test'));
    apply(hub, tlsSecret('beta-tls', 'beta.test'));
    apply(hub, INGRESS);
    await new Promise((r) => setTimeout(r, 2_000));
    // Not an ingress device yet: nothing listens on its port 80.
    await expect(request(ports.http, 'alpha.test', '/')).rejects.toThrow();
    const before = rssKiB(device.process);
    expect(cli(hub, ['label', 'node', NODE, 'flotilla.io/ingress=true']).code).toBe(0);
    const home = await waitFor('the ingress to route alpha.test/', async () => {
      const r = await request(ports.http, 'alpha.test', '/').catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    }, 60_000, 250);
    expect(home.body).toBe('alpha-home');
    expect(await request(ports.http, 'alpha.test', '/beta/')).toEqual({ status: 200, body: 'beta-under-path' });
    expect(await request(ports.http, 'beta.test', '/')).toEqual({ status: 200, body: 'beta-home' });
    // beta.test's only path is Exact '/'; an unknown host has no rule and there is no default backend.
    expect((await request(ports.http, 'beta.test', '/other')).status).toBe(404);
    expect((await request(ports.http, 'nowhere.test', '/')).status).toBe(404);
    for (let i = 0; i < 200; i++) await request(ports.http, i % 2 ? 'alpha.test' : 'beta.test', '/');
    const after = rssKiB(device.process);
    console.log(`ingress RSS on the agent: ${before} KiB before, ${after} KiB after the ingress started and served 200 requests (+${after - before} KiB)`);
  });

  it('serves TLS with each host\'s certificate by SNI, checked against that certificate only', async () => {
    const alpha = await waitFor('TLS on 443', () => secureRequest('alpha.test', certs['alpha.test']!.cert).catch(() => undefined), 30_000, 250);
    expect(alpha).toEqual({ status: 200, body: 'alpha-home', subject: 'alpha.test' });
    expect(await secureRequest('beta.test', certs['beta.test']!.cert)).toEqual({ status: 200, body: 'beta-home', subject: 'beta.test' });
    // beta.test is served beta's certificate, which alpha's CA does not vouch for.
    await expect(secureRequest('beta.test', certs['alpha.test']!.cert)).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
  });

  it('shows the ingress device\'s address in get ingress', async () => {
    const address = getJson<{ status?: { addresses?: { type: string; address: string }[] } }>(hub, ['node', NODE]).status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
    expect(address).toBe(DEVICE_ADDRESS);
    const line = await waitFor('the ADDRESS column', () => {
      const out = cli(hub, ['get', 'ingress']).stdout.split('\n');
      return out[1]?.includes(address!) ? out : undefined;
    }, 15_000, 250);
    expect(line[0]!.split(/\s{2,}/)).toEqual(['NAME', 'CLASS', 'HOSTS', 'ADDRESS', 'PORTS', 'AGE']);
    expect(line[1]!.split(/\s{2,}/).slice(0, 5)).toEqual(['shop', 'flotilla', 'alpha.test,beta.test', address, '80, 443']);
  });

  it('keeps serving with the hub gone, and after an agent restart with the hub gone', async () => {
    await hub.process.stop();
    await mosquitto.stop();
    expect((await request(ports.http, 'alpha.test', '/')).body).toBe('alpha-home');
    await device.process.stop();
    device = { ...device, process: startAgent({ hub: { ...hub, mqttPort: mosquitto.port }, name: NODE, stateDir: join(dirs.path, 'device', 'state'), dockerHost: dockerd.dockerHost, netns: dockerd.netns, hubUrl: device.hubUrl, extraArgs: agentArgs }) };
    const back = await waitFor('the restarted agent to serve', async () => {
      const r = await request(ports.http, 'alpha.test', '/beta/').catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    }, 60_000, 250);
    expect(back.body).toBe('beta-under-path');
    expect((await secureRequest('beta.test', certs['beta.test']!.cert)).subject).toBe('beta.test');
  });
});
