import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KernelProxyPlane } from '../../agent/services/proxy/nft.js';
import { ServiceProxy } from '../../agent/services/proxy/proxy.js';
import type { ServiceAnnouncement } from '../../shared/protocol/services.js';
import { mustRunIn, runIn } from '../harness/netns.js';
import { CLUSTER_CIDR, DEVICE_ADDRESS, OUTSIDE_ADDRESS, POD_CIDR, ProxyLab, SERVE_PORT, tally, type ProxyLabPod } from '../harness/proxy-lab.js';
import { MemoryServices } from '../harness/service-source.js';

// The service proxy's data path with real nftables and real traffic: the proxy's own code
// programs a device namespace's table (through nsenter), and pods in namespaces around it
// connect to virtual IPs and node ports. The device is node "a"; pods on the far bridge stand
// for node "b"'s, reached as over the overlay.

class Book extends MemoryServices {
  put(s: Partial<ServiceAnnouncement> & { name: string; clusterIP: string }, pods: readonly ProxyLabPod[], ports: Record<string, number> = { '': SERVE_PORT }): string {
    const svc: ServiceAnnouncement = { v: 1, namespace: 'lab', uid: s.name, type: 'ClusterIP', ports: [{ protocol: 'TCP', port: 80, targetPort: SERVE_PORT }], generation: 1, ...s };
    this.svcs.set(`lab/${s.name}`, svc);
    this.eps.set(`lab/${s.name}`, new Map(pods.map((p) => [p.name, { v: 1, ip: p.ip, node: p.node, ready: true, ports, generation: 1 }])));
    return `lab/${s.name}`;
  }
}

let lab: ProxyLab;
let proxy: ServiceProxy;
const book = new Book();
const pods: Record<string, ProxyLabPod> = {};

beforeAll(async () => {
  lab = await ProxyLab.create();
  for (const [name, node] of [['b1', 'b'], ['b2', 'b'], ['a1', 'a']] as const) pods[name] = await lab.addPod(name, node);
  // The client pod serves too: it reaches itself through a Service (hairpin).
  await lab.serve(lab.client.ns, 'client');
  book.put({ name: 'store', clusterIP: '10.43.0.10' }, [pods.b1!, pods.b2!]);
  book.put({ name: 'dns', clusterIP: '10.43.0.53', ports: [{ protocol: 'UDP', port: 53, targetPort: SERVE_PORT }] }, [pods.b1!]);
  book.put({ name: 'sticky', clusterIP: '10.43.0.11', sessionAffinity: 'ClientIP', affinitySeconds: 300 }, [pods.b1!, pods.b2!, pods.a1!]);
  book.put({ name: 'empty', clusterIP: '10.43.0.12', ports: [{ protocol: 'TCP', port: 80, targetPort: SERVE_PORT }, { protocol: 'UDP', port: 81, targetPort: SERVE_PORT }] }, []);
  book.put({ name: 'mesh', clusterIP: '10.43.0.13', type: 'NodePort', ports: [{ protocol: 'TCP', port: 80, targetPort: SERVE_PORT, nodePort: 30080 }] }, [pods.b1!, pods.b2!]);
  book.put({ name: 'keep', clusterIP: '10.43.0.14', type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ protocol: 'TCP', port: 80, targetPort: SERVE_PORT, nodePort: 30081 }] }, [pods.a1!, pods.b1!]);
  book.put({ name: 'faraway', clusterIP: '10.43.0.15', type: 'NodePort', externalTrafficPolicy: 'Local', ports: [{ protocol: 'TCP', port: 80, targetPort: SERVE_PORT, nodePort: 30082 }] }, [pods.b1!]);
  book.put({ name: 'itp', clusterIP: '10.43.0.16', internalTrafficPolicy: 'Local' }, [pods.a1!, pods.b1!]);
  book.put({ name: 'close', clusterIP: '10.43.0.17', trafficDistribution: 'PreferClose' }, [pods.a1!, pods.b1!, pods.b2!]);
  book.put({ name: 'self', clusterIP: '10.43.0.18' }, [lab.client]);
  book.put({ name: 'headless', clusterIP: 'None' }, [pods.b1!]);
  proxy = new ServiceProxy({ source: book, log: pino({ level: 'silent' }), plane: new KernelProxyPlane({ wrap: lab.deviceWrap }), checkIntervalMs: 3_600_000 });
  proxy.setNode({ name: 'a', podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR });
  await proxy.idle();
  expect(proxy.last?.kind).toBe('full');
  await proxy.hairpin();
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await lab?.teardown();
});

describe('the service proxy in a device namespace', () => {
  it('spreads connections to a virtual IP over the ready endpoints, keeping the pod\'s address', async () => {
    const replies = await lab.request(lab.client.ns, 'tcp', '10.43.0.10', 80, 60);
    const counts = tally(replies);
    expect(Object.keys(counts).sort()).toEqual(['b1', 'b2']);
    expect(counts.b1).toBeGreaterThanOrEqual(10);
    expect(counts.b2).toBeGreaterThanOrEqual(10);
    expect(new Set(replies.map((r) => r.reply!.split(' ')[1]))).toEqual(new Set([lab.client.ip]));
  });

  it('ClientIP affinity keeps one client on one endpoint', async () => {
    const counts = tally(await lab.request(lab.client.ns, 'tcp', '10.43.0.11', 80, 20));
    expect(Object.values(counts)).toEqual([20]);
  });

  it('a Service without ready endpoints refuses at once (TCP reset, ICMP unreachable for UDP) rather than blackholing', async () => {
    const started = Date.now();
    expect(await lab.request(lab.client.ns, 'tcp', '10.43.0.12', 80, 1, { timeoutMs: 5_000 })).toEqual([{ error: 'ECONNREFUSED' }]);
    expect(await lab.request(lab.client.ns, 'udp', '10.43.0.12', 81, 1, { timeoutMs: 5_000 })).toEqual([{ error: 'ECONNREFUSED' }]);
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('UDP: a virtual IP answers, and an endpoint that goes has its conntrack entries cleared', async () => {
    const first = await lab.request(lab.client.ns, 'udp', '10.43.0.53', 53, 1, { localPort: 40053 });
    expect(first[0]?.reply).toBe(`b1 ${lab.client.ip}`);
    // b1 still runs: only the cleared conntrack entry sends the same flow (same ports) to b2.
    book.eps.set('lab/dns', new Map([['b2', { v: 1, ip: pods.b2!.ip, node: 'b', ready: true, ports: { '': SERVE_PORT }, generation: 2 }]]));
    proxy.changed(['lab/dns']);
    await proxy.idle();
    expect(proxy.last?.kind).toBe('incremental');
    const second = await lab.request(lab.client.ns, 'udp', '10.43.0.53', 53, 1, { localPort: 40053 });
    expect(second[0]?.reply).toBe(`b2 ${lab.client.ip}`);
  });

  it('NodePort: the device\'s own address forwards to endpoints on another device, masqueraded so replies come back', async () => {
    const replies = await lab.request(lab.outside, 'tcp', DEVICE_ADDRESS, 30080, 30);
    const counts = tally(replies);
    expect(Object.keys(counts).sort()).toEqual(['b1', 'b2']);
    expect(new Set(replies.map((r) => r.reply!.split(' ')[1]))).toEqual(new Set(['10.42.1.1']));
    // Any of the device's addresses, the pod gateway's too.
    expect(tally(await lab.request(lab.outside, 'tcp', '10.42.1.1', 30080, 4))).not.toHaveProperty('error:ETIMEDOUT');
  });

  it('externalTrafficPolicy Local: only this device\'s endpoint, the client\'s address kept; no local endpoint drops', async () => {
    const replies = await lab.request(lab.outside, 'tcp', DEVICE_ADDRESS, 30081, 10);
    expect(new Set(replies.map((r) => r.reply))).toEqual(new Set([`a1 ${OUTSIDE_ADDRESS}`]));
    expect(await lab.request(lab.outside, 'tcp', DEVICE_ADDRESS, 30082, 1, { timeoutMs: 1_500 })).toEqual([{ error: 'ETIMEDOUT' }]);
  });

  it('internalTrafficPolicy Local and PreferClose stay on this device', async () => {
    expect(tally(await lab.request(lab.client.ns, 'tcp', '10.43.0.16', 80, 10))).toEqual({ a1: 10 });
    expect(tally(await lab.request(lab.client.ns, 'tcp', '10.43.0.17', 80, 10))).toEqual({ a1: 10 });
  });

  it('a pod reaches itself through its Service (hairpin, masqueraded), and the device itself reaches a virtual IP', async () => {
    expect(await lab.request(lab.client.ns, 'tcp', '10.43.0.18', 80, 3)).toEqual(Array(3).fill(expect.objectContaining({ reply: 'client 10.42.1.1' })));
    const fromDevice = await lab.request(lab.device, 'tcp', '10.43.0.10', 80, 10);
    expect(fromDevice.every((r) => r.reply && /^b[12] 10\.42\.1\.1$/.test(r.reply))).toBe(true);
  });

  it('a change is one transaction on one Service; the table matches what was applied; a removed table is written again', async () => {
    book.eps.get('lab/store')!.set('a1', { v: 1, ip: pods.a1!.ip, node: 'a', ready: true, ports: { '': SERVE_PORT }, generation: 1 });
    proxy.changed(['lab/store']);
    await proxy.idle();
    expect(proxy.last).toMatchObject({ kind: 'incremental', services: 1 });
    expect(Object.keys(tally(await lab.request(lab.client.ns, 'tcp', '10.43.0.10', 80, 60))).sort()).toEqual(['a1', 'b1', 'b2']);
    expect(await proxy.check()).toBeUndefined();
    // The headless Service has nothing in the table; the overlay's table is not touched.
    const listing = await mustRunIn(lab.device, ['/usr/sbin/nft', 'list', 'tables']);
    expect(listing.trim()).toBe('table ip flotilla-svc');

    await mustRunIn(lab.device, ['/usr/sbin/nft', 'delete', 'table', 'ip', 'flotilla-svc']);
    expect(await proxy.check()).toBe('the table is gone');
    const restarted = new ServiceProxy({ source: book, log: pino({ level: 'silent' }), plane: new KernelProxyPlane({ wrap: lab.deviceWrap }), checkIntervalMs: 100 });
    await proxy.stop();
    proxy = restarted;
    proxy.setNode({ name: 'a', podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR });
    await proxy.idle();
    expect(await proxy.check()).toBeUndefined();
    // Someone else changes a rule: the periodic check puts the table back whole.
    proxy.start();
    await mustRunIn(lab.device, ['/usr/sbin/nft', 'flush', 'chain', 'ip', 'flotilla-svc', 'services']);
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (await runIn(lab.device, ['/usr/sbin/nft', 'list', 'chain', 'ip', 'flotilla-svc', 'services'])).stdout.indexOf('@service-ips') < 0) await new Promise((r) => setTimeout(r, 100));
    expect(tally(await lab.request(lab.client.ns, 'tcp', '10.43.0.10', 80, 5))).not.toHaveProperty('error:ECONNREFUSED');
    expect(await proxy.check()).toBeUndefined();
  });
});
