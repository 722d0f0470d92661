import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apply, getPod } from '../harness/fleet.js';
import { agentOf, startLabAgent } from '../harness/lab-flotilla.js';
import { NFT, runIn } from '../harness/netns.js';
import { execInPod, startOverlayLab, type OverlayLab } from '../harness/overlay.js';
import { cli, getJson, stopAll, waitFor } from '../harness/processes.js';
import { CLUSTER_DOMAIN, clientPodManifest, getServicesTable, nslookup, podGateway, runPods, waitClusterIP, waitWho, whoFrom, whoFromNamespace, whoMany, whoPodManifest, WHO_PORT, type ServiceJson } from '../harness/services.js';

// Services across the device lab, end to end: three devices a, b and c on the WireGuard
// overlay, a backend `store` on b and on c, a client pod on a. What a pod sees is tested, and
// nothing of how the parts do it: the hub gives each Service its virtual IP and publishes it,
// each device's DNS server answers on its pod gateway, its service proxy sends a virtual IP to an
// endpoint on any device, its NodePorts take traffic on its own address, and new pods get the
// Services' environment variables. The device keeps all of it with the hub gone, and drops a
// Service deleted while it was away when it returns.

const NS = 'default';
const fqdn = (name: string): string => `${name}.${NS}.svc.${CLUSTER_DOMAIN}`;

const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: store}
spec:
  selector: {app: store}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: store-hl}
spec:
  clusterIP: None
  selector: {app: store}
  ports: [{name: http, port: ${WHO_PORT}, targetPort: ${WHO_PORT}}]
---
apiVersion: v1
kind: Service
metadata: {name: web-b}
spec:
  type: NodePort
  selector: {app: only-b}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: gone}
spec:
  selector: {app: store}
  ports: [{port: 81, targetPort: ${WHO_PORT}}]
`;

let o: OverlayLab;
let ips: Record<string, string> = {};
const svc: Record<string, ServiceJson> = {};

beforeAll(async () => {
  o = await startOverlayLab('svce2e', { devices: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] });
  ips = await runPods(o.hub, {
    'store-b': whoPodManifest('store-b', 'b', { app: 'store' }),
    'store-c': whoPodManifest('store-c', 'c', { app: 'store' }),
    'only-b': whoPodManifest('only-b', 'b', { app: 'only-b' }),
    'client-a': clientPodManifest('client-a', 'a'),
  });
  apply(o.hub, SERVICES);
  for (const name of ['store', 'web-b', 'gone']) svc[name] = await waitClusterIP(o.hub, name);
  svc['store-hl'] = getJson<ServiceJson>(o.hub, ['service', 'store-hl']);
}, 300_000);

afterAll(async () => {
  await stopAll();
  await o?.lab.teardown();
});

const vip = (name: string): string => svc[name]!.spec.clusterIP!;

describe('Services on the overlay, end to end', () => {
  it('gives each Service a virtual IP from 10.43.0.0/16 and a NodePort from 30000-32767, and shows them as kubectl does', () => {
    for (const name of ['store', 'web-b', 'gone']) expect(vip(name)).toMatch(/^10\.43\.\d+\.\d+$/);
    expect(new Set(['store', 'web-b', 'gone'].map(vip)).size).toBe(3);
    expect(svc['store-hl']!.spec.clusterIP).toBe('None');
    const nodePort = svc['web-b']!.spec.ports![0]!.nodePort!;
    expect(nodePort).toBeGreaterThanOrEqual(30000);
    expect(nodePort).toBeLessThanOrEqual(32767);
    const table = getServicesTable(o.hub).split('\n');
    expect(table[0]).toMatch(/^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE/);
    const row = (name: string): string[] => table.find((l) => l.startsWith(`${name} `))?.split(/\s+/) ?? [];
    expect(row('store').slice(1, 5)).toEqual(['ClusterIP', vip('store'), '<none>', '80/TCP']);
    expect(row('store-hl').slice(1, 5)).toEqual(['ClusterIP', 'None', '<none>', `${WHO_PORT}/TCP`]);
    expect(row('web-b').slice(1, 5)).toEqual(['NodePort', vip('web-b'), '<none>', `80:${nodePort}/TCP`]);
  });

  it('gives a pod the device\'s DNS server on its pod gateway, Kubernetes\' search list and ndots:5', async () => {
    const r = await execInPod(o.devices.a!, 'client-a', ['cat', '/etc/resolv.conf']);
    expect(r.stdout).toMatch(new RegExp(`^nameserver ${podGateway(o.hub, 'a').replace(/\./g, '\\.')}$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^search ${NS}\\.svc\\.cluster\\.local svc\\.cluster\\.local cluster\\.local$`, 'm'));
    expect(r.stdout).toMatch(/^options .*\bndots:5\b/m);
  });

  it('reaches store from a pod on a by short name, by FQDN and by virtual IP, at a backend on b or c that sees the client\'s pod IP', async () => {
    const a = o.devices.a!;
    for (const target of ['store', fqdn('store'), vip('store')]) {
      const who = await waitWho(a, 'client-a', target, 80, 30_000);
      expect(['store-b', 'store-c'], `${target} answered by`).toContain(who.name);
      expect(who.from, `${target}: the backend saw`).toBe(ips['client-a']);
    }
    expect(getPod(o.hub, 'store-b')?.spec.nodeName).toBe('b');
    expect(getPod(o.hub, 'store-c')?.spec.nodeName).toBe('c');
  });

  it('spreads 100 requests by name over both backends', async () => {
    const tally = await whoMany(o.devices.a!, 'client-a', 'store', 80, 100);
    const b = tally.get('store-b') ?? 0;
    const c = tally.get('store-c') ?? 0;
    expect(b + c, JSON.stringify([...tally])).toBe(100);
    // Random choice: fewer than 20 of 100 on either side has odds of about one in 10^9.
    expect(b).toBeGreaterThanOrEqual(20);
    expect(c).toBeGreaterThanOrEqual(20);
  });

  it('resolves a headless Service to its pods\' IPs, and answers SRV for a named port', async () => {
    const a = o.devices.a!;
    const podIPs = [ips['store-b']!, ips['store-c']!].sort();
    const byFqdn = await waitFor('store-hl to resolve to both pods', async () => {
      const r = await nslookup(a, 'client-a', `${fqdn('store-hl')}.`);
      return r.addresses.length === 2 ? r : undefined;
    }, 30_000, 250);
    expect(byFqdn.addresses.sort()).toEqual(podIPs);
    // The short name through the search list gives the same.
    expect((await nslookup(a, 'client-a', 'store-hl')).addresses.sort()).toEqual(podIPs);

    const headlessSrv = await nslookup(a, 'client-a', `_http._tcp.${fqdn('store-hl')}.`, 'SRV');
    expect(headlessSrv.srv, headlessSrv.output).toHaveLength(2);
    for (const record of headlessSrv.srv) {
      expect(record.port).toBe(WHO_PORT);
      expect(record.target.endsWith(`.${fqdn('store-hl')}`), record.target).toBe(true);
      // Each target is a pod's own name, resolving to that pod's IP.
      const target = await nslookup(a, 'client-a', `${record.target}.`);
      expect(target.addresses, target.output).toHaveLength(1);
      expect(podIPs).toContain(target.addresses[0]);
    }
    expect(new Set(headlessSrv.srv.map((r) => r.target)).size).toBe(2);

    const clusterSrv = await nslookup(a, 'client-a', `_http._tcp.${fqdn('store')}.`, 'SRV');
    expect(clusterSrv.srv, clusterSrv.output).toEqual([expect.objectContaining({ port: 80, target: fqdn('store') })]);
    // A name that is no Service is no such name.
    expect((await nslookup(a, 'client-a', `${fqdn('nothing')}.`)).nxdomain).toBe(true);
  });

  it('takes a NodePort on a\'s address (and c\'s) to the pod that runs only on b', async () => {
    const nodePort = svc['web-b']!.spec.ports![0]!.nodePort!;
    expect(getPod(o.hub, 'only-b')?.spec.nodeName).toBe('b');
    // From the lab's internet (the hub's namespace is a host on it), not from any device.
    for (const device of [o.devices.a!, o.devices.c!]) {
      const who = await waitFor(`${device.address}:${nodePort} to answer`, () => whoFromNamespace(o.lab.hubNs, device.address, nodePort, 2), 30_000, 250);
      expect(who.name, `through ${device.name}`).toBe('only-b');
    }
  });

  it('gives a pod created after the Services their environment variables, and none with enableServiceLinks: false', async () => {
    const a = o.devices.a!;
    await runPods(o.hub, {
      'late-a': clientPodManifest('late-a', 'a'),
      'nolinks-a': clientPodManifest('nolinks-a', 'a', '  enableServiceLinks: false\n'),
    });
    const env = (await execInPod(a, 'late-a', ['env'])).stdout.split('\n');
    const ip = vip('store');
    expect(env).toEqual(expect.arrayContaining([
      `STORE_SERVICE_HOST=${ip}`,
      'STORE_SERVICE_PORT=80',
      'STORE_SERVICE_PORT_HTTP=80',
      `STORE_PORT=tcp://${ip}:80`,
      `STORE_PORT_80_TCP=tcp://${ip}:80`,
      'STORE_PORT_80_TCP_PROTO=tcp',
      'STORE_PORT_80_TCP_PORT=80',
      `STORE_PORT_80_TCP_ADDR=${ip}`,
      `WEB_B_SERVICE_HOST=${vip('web-b')}`,
    ]));
    // A headless Service has no address to give.
    expect(env.some((l) => l.startsWith('STORE_HL_SERVICE_HOST='))).toBe(false);
    const none = (await execInPod(a, 'nolinks-a', ['env'])).stdout;
    expect(none).not.toMatch(/^STORE_SERVICE_HOST=/m);
    expect(none).not.toMatch(/_SERVICE_HOST=/m);
  });

  it('drops a Service deleted while a device was offline once the device is back', async () => {
    const c = o.devices.c!;
    const ip = vip('gone');
    const svcTable = async (): Promise<string> => (await runIn(c.ns, [NFT, 'list', 'table', 'ip', 'flotilla-svc'])).stdout;
    // c has it: by name and in its kernel's service table.
    await waitFor('c to resolve gone', async () => (await nslookup(c, 'store-c', `${fqdn('gone')}.`)).addresses[0] === ip, 30_000, 250);
    await waitFor('c\'s service table to hold gone\'s virtual IP', async () => (await svcTable()).includes(ip), 30_000, 250);

    await agentOf(c).stop();
    const r = cli(o.hub, ['delete', 'service', 'gone']);
    expect(r.code, r.stderr).toBe(0);
    startLabAgent(o.lab, o.hub, c);

    await waitFor('c to forget gone', async () => {
      const lookup = await nslookup(c, 'store-c', `${fqdn('gone')}.`);
      return lookup.nxdomain && !(await svcTable()).includes(ip);
    }, 45_000, 250);
    // What was not deleted stays: c still resolves store and reaches it.
    expect((await nslookup(c, 'store-c', `${fqdn('store')}.`)).addresses).toEqual([vip('store')]);
    expect(['store-b', 'store-c']).toContain((await waitWho(c, 'store-c', 'store', 80, 15_000)).name);
  });

  it('keeps DNS and the virtual IP working with the hub stopped', async () => {
    const a = o.devices.a!;
    await o.hub.stop();
    expect(o.hub.process.exitCode).not.toBeUndefined();
    const until = Date.now() + 10_000;
    let rounds = 0;
    while (Date.now() < until || rounds < 3) {
      for (const target of ['store', vip('store')]) {
        expect((await whoFrom(a, 'client-a', target, 80, 2))?.name, `${target}, round ${rounds}, hub down`).toMatch(/^store-[bc]$/);
      }
      rounds++;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  });

  it('restores DNS and the virtual IP after an agent restart with the hub still stopped (the kernel table gone, as after a reboot)', async () => {
    const a = o.devices.a!;
    await agentOf(a).stop();
    // The kernel's service table goes, as a reboot takes it: the agent must make it again from its disk.
    await runIn(a.ns, [NFT, 'delete', 'table', 'ip', 'flotilla-svc']);
    expect((await runIn(a.ns, [NFT, 'list', 'table', 'ip', 'flotilla-svc'])).code).not.toBe(0);
    expect(await whoFrom(a, 'client-a', vip('store'), 80, 2)).toBeUndefined();

    const agent = startLabAgent(o.lab, o.hub, a);
    for (const target of [vip('store'), 'store', fqdn('store')]) {
      const who = await waitFor(`${target} from client-a again, hub still down`, async () => {
        if (agent.exitCode !== undefined) throw new Error(`agent exited ${agent.exitCode}: ${agent.log().slice(-2000)}`);
        return whoFrom(a, 'client-a', target, 80, 2);
      }, 45_000, 250);
      expect(who.name).toMatch(/^store-[bc]$/);
    }
    expect((await nslookup(a, 'client-a', `${fqdn('store-hl')}.`)).addresses.sort()).toEqual([ips['store-b']!, ips['store-c']!].sort());
    expect(o.hub.process.exitCode).not.toBeUndefined();
  });
});
