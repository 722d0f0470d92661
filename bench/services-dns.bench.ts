import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { writeDnsScripts, type DnsScripts } from '../test/harness/dns.js';
import { startDockerd, type TestDockerd } from '../test/harness/dockerd.js';
import { engineContainers } from '../test/harness/fleet.js';
import { trySignal } from '../test/harness/host.js';
import { TEST_IMAGE, buildTestImages } from '../test/harness/images.js';
import type { LabDevice } from '../test/harness/lab.js';
import { liveWireguardGo, NSENTER, runIn } from '../test/harness/netns.js';
import { podNetnsPath } from '../test/harness/overlay.js';
import { REPO, spawnLogged, startAgent, stopAll, tempDir, waitFor, type RunningHub } from '../test/harness/processes.js';
import { generatePrivateKey } from '../shared/net/keys.js';
import { quantile, round, writeResult } from './results.js';

// DNS from a pod (docs/ARCHITECTURE.md, 'DNS'): a real agent with the overlay in a harness
// dockerd's namespace serves its service book (200 Services, one headless with 10 endpoints) on
// the pod gateway; a client in a pod's network namespace (entered through its infra container's
// process) asks, one query at a time, over the pod's veth and the pod bridge, as a pod's
// resolver does. The floor: a UDP echo of the same packet over the same path to a server on the
// same address, interleaved with the queries so that the machine's load falls on both alike.

const execFileP = promisify(execFile);
const QUERIES = Number(process.env.FLOTILLA_BENCH_DNS_QUERIES ?? 5000);
const SERVICES = 200;
const NODE = 'dns-bench';
const GATEWAY = '10.42.9.1';
const ECHO_PORT = 5300;
const IFACE = `fltb${process.pid % 1_000_000}`;
const NO_HUB = { mqttUrl: 'mqtt://127.0.0.1:1', joinToken: 'unused' } as unknown as RunningHub;
const dirs = tempDir('bench-dns');
const stateDir = join(dirs.path, 'state');
let dockerd: TestDockerd;
let scripts: DnsScripts;

function writeState(name: string, value: unknown): void {
  for (const file of [name, `${name}.bak`]) writeFileSync(join(stateDir, file), JSON.stringify(value), { mode: 0o600 });
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'bench-dns' });
  await buildTestImages(dockerd.docker);
  scripts = writeDnsScripts(dirs.path);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const http = { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 };
  const services = Array.from({ length: SERVICES }, (_, i) => ({ v: 1, namespace: 'default', name: `svc-${i}`, uid: `u-${i}`, type: 'ClusterIP', clusterIP: `10.43.${i >> 8}.${(i & 255) + 1}`, ports: [http], generation: 1 }));
  services.push({ v: 1, namespace: 'default', name: 'db', uid: 'u-db', type: 'ClusterIP', clusterIP: 'None', ports: [http], generation: 1 });
  const endpoints = Array.from({ length: 10 }, (_, i) => ['default', 'db', `db-${i}`, { v: 1, ip: `10.42.${i + 1}.10`, node: NODE, ready: true, ports: { http: 8080 }, hostname: `db-${i}`, generation: 1 }]);
  writeState('credentials.json', { hub: NO_HUB.mqttUrl, node: NODE, username: `node:${NODE}`, password: 'unused' });
  writeState('desired.json', { v: 1, rev: 1, pods: [{ uid: 'uid-client', name: 'client', namespace: 'default', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: TEST_IMAGE, command: ['sleep', '3600'] }] } }], configs: [], secrets: [], network: { podCIDR: '10.42.9.0/24', clusterCIDR: '10.42.0.0/16' } });
  writeState('desired-revision.json', { rev: 1 });
  writeState('services.json', { v: 1, services, endpoints });
  writeFileSync(join(stateDir, 'wireguard.key'), `${generatePrivateKey()}\n`, { mode: 0o600 });
  writeFileSync(join(dirs.path, 'resolv.conf'), 'nameserver 127.0.0.1\n');
  startAgent({ hub: NO_HUB, hubUrl: NO_HUB.mqttUrl, name: NODE, stateDir, dockerHost: dockerd.dockerHost, netns: dockerd.netns, extraArgs: ['--overlay', 'wireguard', '--wireguard-interface', IFACE, '--resolv-conf', join(dirs.path, 'resolv.conf')] });
  await waitFor('the client pod', async () => (await engineContainers(dockerd.docker, { 'flotilla.pod': 'client', 'flotilla.container': 'POD' })).some((c) => c.state === 'running'), 90_000, 250);
  await waitFor('the DNS server', async () => (await runIn(dockerd.netns, [process.execPath, scripts.query, GATEWAY, '53', 'db.default.svc.cluster.local', 'A', 'udp'])).stdout.includes('NOERROR'), 60_000, 250);
  const echo = spawnLogged([scripts.echo, GATEWAY, String(ECHO_PORT)], join(dirs.path, 'echo.log'), REPO, {}, dockerd.netns);
  await waitFor('the echo server', () => echo.log().includes('ready'), 15_000);
}, 240_000);

afterAll(async () => {
  await stopAll();
  if (dockerd) {
    await execFileP('/usr/sbin/ip', ['netns', 'exec', dockerd.netns, '/usr/sbin/ip', 'link', 'del', 'dev', IFACE]).catch(() => undefined);
    for (const pid of liveWireguardGo([IFACE])) trySignal(pid, 'SIGKILL');
    await dockerd.stop();
  }
  dirs.remove();
});

it('DNS from a pod: p99 within 5 ms, against a UDP echo over the same path', async () => {
  const podNs = await podNetnsPath({ name: NODE, ns: dockerd.netns, dockerd } as LabDevice, 'client');
  const names = [...Array.from({ length: SERVICES }, (_, i) => `svc-${i}.default.svc.cluster.local`), 'db.default.svc.cluster.local', 'db-3.db.default.svc.cluster.local'];
  const { stdout } = await execFileP(NSENTER, [`--net=${podNs}`, '--', process.execPath, scripts.benchClient, GATEWAY, '53', String(ECHO_PORT), String(QUERIES), JSON.stringify(names)], { maxBuffer: 64 << 20, timeout: 300_000 });
  const { dns, echo } = JSON.parse(stdout) as { dns: number[]; echo: number[] };
  const stats = (xs: number[]) => ({ p50: round(quantile(xs, 0.5), 3), p90: round(quantile(xs, 0.9), 3), p99: round(quantile(xs, 0.99), 3), max: round(Math.max(...xs), 3) });
  const d = stats(dns);
  const e = stats(echo);
  const result = {
    benchmark: 'services-dns',
    parameters: {
      queries: QUERIES,
      services: SERVICES,
      headlessEndpoints: 10,
      client: 'one UDP socket in a pod\'s network namespace, one query at a time (A of a Service\'s FQDN, a headless Service, a pod\'s hostname)',
      server: 'the agent\'s DNS server on the pod gateway, answering from its service book restored from disk (no hub)',
      floor: 'a UDP echo server (node) on the pod gateway, the same packet, interleaved with the queries',
    },
    figures: { dnsMs: d, echoMs: e },
    floor: { echoMs: e },
    ratios: { p50OverEcho: round(d.p50 / e.p50, 2), p99OverEcho: round(d.p99 / e.p99, 2) },
    targets: {
      dnsFromPod: { what: 'DNS from a pod: p99 on the device', measured: d.p99, unit: 'ms', must: 5, better: 'lower' as const },
    },
  };
  writeResult(result);
  console.log(JSON.stringify(result.figures), JSON.stringify(result.ratios));
  expect(dns).toHaveLength(QUERIES);
  expect(d.p99).toBeLessThanOrEqual(5);
}, 600_000);
