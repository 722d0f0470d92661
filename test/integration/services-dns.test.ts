import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDnsScripts, type DnsScripts } from '../harness/dns.js';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { engineContainers } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { trySignal } from '../harness/host.js';
import { liveWireguardGo, runIn } from '../harness/netns.js';
import { REPO, spawnLogged, startAgent, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { generatePrivateKey } from '../../shared/net/keys.js';

// The device's DNS server, for real: an agent with the overlay in a harness dockerd's namespace,
// the hub gone (never there: the desired set and the service book are on the device's disk, as
// after a restart with the hub away). The server answers on the pod gateway over UDP and TCP,
// forwards other names to the device's resolver (a fake one this test runs on the namespace's
// loopback, as a systemd-resolved stub would be), and a pod's busybox resolves Services by short
// name, FQDN, headless and SRV, and knows its own hostname and FQDN. The cross-device lab with
// the hub's Services is elsewhere (test/integration/services-*.test.ts).

const execFileP = promisify(execFile);
const IP = '/usr/sbin/ip';
const dirs = tempDir('services-dns');
const NO_HUB = { mqttUrl: 'mqtt://127.0.0.1:1', joinToken: 'unused' } as unknown as RunningHub;
const NODE = 'dev-dns';
const POD_CIDR = '10.42.7.0/24';
const GATEWAY = '10.42.7.1';
const IFACE = `fltd${process.pid % 1_000_000}`;
const STORE_IP = '10.43.0.20';

let dockerd: TestDockerd;
let scripts: DnsScripts;
let agent: ManagedProcess | undefined;
let upstream: ManagedProcess | undefined;
const stateDir = join(dirs.path, 'state');
const resolvConf = join(dirs.path, 'device-resolv.conf');

const SLEEP = ['sleep', '3600'];
const pods = [
  { uid: 'uid-web-0', name: 'web-0', namespace: 'default', spec: { subdomain: 'web', terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: TEST_IMAGE, command: SLEEP }] } },
  { uid: 'uid-own-dns', name: 'own-dns', namespace: 'default', spec: { dnsPolicy: 'None', dnsConfig: { nameservers: ['192.0.2.53'], searches: ['corp.example'], options: [{ name: 'ndots', value: '1' }] }, terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: TEST_IMAGE, command: SLEEP }] } },
];

function writeState(name: string, value: unknown): void {
  const text = JSON.stringify(value);
  for (const file of [name, `${name}.bak`]) writeFileSync(join(stateDir, file), text, { mode: 0o600 });
}

/** The service book as the device cached it: a ClusterIP Service and a headless one with web-0 as its endpoint. */
function writeServiceBook(web0: string): void {
  const http = { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 };
  writeState('services.json', {
    v: 1,
    services: [
      { v: 1, namespace: 'default', name: 'store', uid: 'u-store', type: 'ClusterIP', clusterIP: STORE_IP, ports: [http], generation: 1 },
      { v: 1, namespace: 'default', name: 'web', uid: 'u-web', type: 'ClusterIP', clusterIP: 'None', ports: [http], generation: 1 },
    ],
    endpoints: [['default', 'web', 'web-0', { v: 1, ip: web0, node: NODE, ready: true, ports: { http: 8080 }, hostname: 'web-0', generation: 1 }]],
  });
}

function runAgent(): ManagedProcess {
  return startAgent({ hub: NO_HUB, hubUrl: NO_HUB.mqttUrl, name: NODE, stateDir, dockerHost: dockerd.dockerHost, netns: dockerd.netns, extraArgs: ['--overlay', 'wireguard', '--wireguard-interface', IFACE, '--resolv-conf', resolvConf] });
}

async function podIP(name: string): Promise<string | undefined> {
  const [c] = (await engineContainers(dockerd.docker, { 'flotilla.node': NODE, 'flotilla.pod': name, 'flotilla.container': 'POD' })).filter((x) => x.state === 'running');
  if (!c) return undefined;
  return Object.values((await dockerd.docker.getContainer(c.id).inspect()).NetworkSettings.Networks)[0]?.IPAddress || undefined;
}

/** Runs a command in a pod's app container. */
async function execIn(pod: string, cmd: string[]): Promise<{ code: number; output: string }> {
  const [app] = (await engineContainers(dockerd.docker, { 'flotilla.node': NODE, 'flotilla.pod': pod, 'flotilla.container': 'app' })).filter((x) => x.state === 'running');
  if (!app) throw new Error(`no running app container in ${pod}`);
  const exec = await dockerd.docker.getContainer(app.id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, Tty: true });
  const stream = await exec.start({ hijack: true, stdin: false, Tty: true });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve());
  });
  return { code: (await exec.inspect()).ExitCode ?? -1, output: Buffer.concat(chunks).toString('utf8').replace(/\r/g, '').trim() };
}

interface QueryResult {
  rcode?: string;
  tc?: boolean;
  answers?: { type: string; name: string; data: unknown }[];
  error?: string;
}

/** One query from the device's namespace to the server on the pod gateway. */
async function query(name: string, type = 'A', transport: 'udp' | 'tcp' = 'udp'): Promise<QueryResult> {
  const r = await runIn(dockerd.netns, [process.execPath, scripts.query, GATEWAY, '53', name, type, transport], { timeoutMs: 15_000 });
  return JSON.parse(r.stdout.trim() || `{"error":${JSON.stringify(r.stderr)}}`) as QueryResult;
}

const a = (r: QueryResult) => (r.answers ?? []).filter((x) => x.type === 'A').map((x) => x.data);

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'svc-dns' });
  await buildTestImages(dockerd.docker);
  scripts = writeDnsScripts(dirs.path);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeState('credentials.json', { hub: NO_HUB.mqttUrl, node: NODE, username: `node:${NODE}`, password: 'unused' });
  writeState('desired.json', { v: 1, rev: 1, pods, configs: [], secrets: [], network: { podCIDR: POD_CIDR, clusterCIDR: '10.42.0.0/16' } });
  writeState('desired-revision.json', { rev: 1 });
  writeFileSync(join(stateDir, 'wireguard.key'), `${generatePrivateKey()}\n`, { mode: 0o600 });
  // Not yet known: the first start runs the pod; the book gets its address before the restart.
  writeServiceBook('10.42.7.250');
  // The device's resolver: a stub on its loopback, as systemd-resolved's 127.0.0.53.
  writeFileSync(resolvConf, 'nameserver 127.0.0.1\nsearch lab.example\n');
  upstream = spawnLogged([scripts.upstream, '127.0.0.1', '53', JSON.stringify({ 'outside.example': '192.0.2.99' })], join(dirs.path, 'upstream.log'), REPO, {}, dockerd.netns);
  await waitFor('the fake upstream', () => upstream!.log().includes('ready'), 15_000);
  agent = runAgent();
  const ip = await waitFor('web-0 running', () => podIP('web-0'), 90_000, 250);
  // An agent restart with the hub gone: the book comes back from disk and the server answers from it.
  await agent.stop();
  writeServiceBook(ip);
  agent = runAgent();
  await waitFor('the DNS server', async () => (await query('store.default.svc.cluster.local')).rcode === 'NOERROR', 60_000, 250);
}, 240_000);

afterAll(async () => {
  await stopAll();
  if (dockerd) {
    await execFileP(IP, ['netns', 'exec', dockerd.netns, IP, 'link', 'del', 'dev', IFACE]).catch(() => undefined);
    for (const pid of liveWireguardGo([IFACE])) trySignal(pid, 'SIGKILL');
    await dockerd.stop();
  }
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('the device\'s DNS server (hub gone, after an agent restart)', () => {
  it('answers the cluster\'s names on the pod gateway over UDP and TCP from the book restored from disk', async () => {
    const web0 = (await podIP('web-0'))!;
    for (const transport of ['udp', 'tcp'] as const) {
      expect(a(await query('store.default.svc.cluster.local', 'A', transport)), transport).toEqual([STORE_IP]);
      expect(a(await query('web.default.svc.cluster.local', 'A', transport)), transport).toEqual([web0]);
      expect(a(await query('web-0.web.default.svc.cluster.local', 'A', transport)), transport).toEqual([web0]);
    }
    const srv = await query('_http._tcp.store.default.svc.cluster.local', 'SRV');
    expect(srv.answers?.filter((x) => x.type === 'SRV').map((x) => x.data)).toEqual([{ priority: 0, weight: 100, port: 80, target: 'store.default.svc.cluster.local' }]);
    expect((await query('nope.default.svc.cluster.local')).rcode).toBe('NXDOMAIN');
    const aaaa = await query('store.default.svc.cluster.local', 'AAAA');
    expect([aaaa.rcode, aaaa.answers]).toEqual(['NOERROR', []]);
  });

  it('forwards other names to the device\'s resolver, over UDP and TCP, and passes its NXDOMAIN on', async () => {
    expect(a(await query('outside.example', 'A', 'udp'))).toEqual(['192.0.2.99']);
    expect(a(await query('outside.example', 'A', 'tcp'))).toEqual(['192.0.2.99']);
    expect((await query('unknown.example')).rcode).toBe('NXDOMAIN');
  });

  it('gives a pod its resolv.conf, hostname and hosts file, and the pod resolves Services by short name, FQDN, headless and SRV', async () => {
    const web0 = (await podIP('web-0'))!;
    expect((await execIn('web-0', ['cat', '/etc/resolv.conf'])).output).toBe(`search default.svc.cluster.local svc.cluster.local cluster.local lab.example\nnameserver ${GATEWAY}\noptions ndots:5`);
    expect((await execIn('web-0', ['hostname'])).output).toBe('web-0');
    expect((await execIn('web-0', ['cat', '/etc/hosts'])).output.split('\n').pop()).toBe(`${web0}\tweb-0.web.default.svc.cluster.local\tweb-0`);
    // busybox's nslookup asks every search domain at once and exits 1 when any of them is
    // NXDOMAIN (as all but one are): the answer it found is what counts. It applies the search
    // list only to a name without a dot (no ndots), so `store.default` is a glibc resolver's case.
    const lookup = async (...args: string[]) => (await execIn('web-0', ['nslookup', ...args])).output;
    const found = (name: string, ip: string) => new RegExp(`Name:\\s+${name.replaceAll('.', '\\.')}\\s+Address: ${ip.replaceAll('.', '\\.')}(\\s|$)`);
    expect(await lookup('store')).toMatch(found('store.default.svc.cluster.local', STORE_IP));
    expect(await lookup('store.default.svc.cluster.local')).toMatch(found('store.default.svc.cluster.local', STORE_IP));
    expect(await lookup('web')).toMatch(found('web.default.svc.cluster.local', web0));
    expect(await lookup('web-0.web.default.svc.cluster.local')).toMatch(found('web-0.web.default.svc.cluster.local', web0));
    const srv = await lookup('-type=srv', '_http._tcp.store.default.svc.cluster.local');
    expect(srv).toContain('_http._tcp.store.default.svc.cluster.local\tservice = 0 100 80 store.default.svc.cluster.local');
    expect(await lookup('outside.example')).toMatch(found('outside.example', '192.0.2.99'));
  });

  it('gives a pod of dnsPolicy None exactly its dnsConfig', async () => {
    await waitFor('own-dns running', () => podIP('own-dns'), 60_000, 250);
    expect((await execIn('own-dns', ['cat', '/etc/resolv.conf'])).output).toBe('search corp.example\nnameserver 192.0.2.53\noptions ndots:1');
  });

  it('answers SERVFAIL, promptly, when the device\'s resolver is gone', async () => {
    await upstream!.stop();
    const started = Date.now();
    expect((await query('outside.example')).rcode).toBe('SERVFAIL');
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(a(await query('store.default.svc.cluster.local'))).toEqual([STORE_IP]);
  });
});
