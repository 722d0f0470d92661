import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KernelProxyPlane } from '../agent/services/proxy/nft.js';
import { ServiceProxy } from '../agent/services/proxy/proxy.js';
import type { EndpointAnnouncement } from '../shared/protocol/services.js';
import { ip } from '../test/harness/netns.js';
import { CLUSTER_CIDR, POD_CIDR, ProxyLab, SERVE_PORT, tally, type ProxyLabPod } from '../test/harness/proxy-lab.js';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { median, quantile, round, writeResult } from './results.js';
import { MemoryServices } from '../test/harness/service-source.js';

// The service proxy's data path on one device (a network namespace of the bench's own, real
// nftables): the time to write the table whole for 1,000 Services × 10 endpoints, the time of
// one endpoint change (plan + the nft transaction), both as the proxy measures itself; and the
// first-packet cost, as TCP connect latency from a pod to a virtual IP with 10 and with 1,000
// Services in the table, against a direct connect to the same endpoints in the same run (the
// floor). Rounds interleave the three, so that a change in the machine's load falls on all.

const SERVICES = 1_000;
const ENDPOINTS = 10;
const CHANGES = 40;
const ROUNDS = 5;
const CONNECTS = 200;

/** CPU seconds of this process's reaped children (nsenter execs nft in its place): what nft itself cost, whatever the wait to be scheduled. */
function childCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

class Book extends MemoryServices {}

const vip = (i: number) => `10.43.${(i + 1) >> 8}.${(i + 1) & 255}`;
/** Endpoint addresses of the Services nobody connects to: in the cluster CIDR, never used. */
const fakeEndpoint = (i: number, j: number) => {
  const n = 3 * 256 + i * ENDPOINTS + j;
  return `10.42.${n >> 8}.${n & 255}`;
};

function fill(book: Book, count: number, real: readonly string[]): void {
  book.svcs.clear();
  book.eps.clear();
  for (let i = 0; i < count; i++) {
    const key = `bench/s${i}`;
    book.svcs.set(key, { v: 1, namespace: 'bench', name: `s${i}`, uid: `u${i}`, type: 'ClusterIP', clusterIP: vip(i), ports: [{ protocol: 'TCP', port: 80, targetPort: SERVE_PORT }], generation: 1 });
    const eps = new Map<string, EndpointAnnouncement>();
    for (let j = 0; j < ENDPOINTS; j++) eps.set(`p${j}`, { v: 1, ip: i === 0 ? real[j]! : fakeEndpoint(i, j), node: 'b', ready: true, ports: { '': SERVE_PORT }, generation: 1 });
    book.eps.set(key, eps);
  }
}

let lab: ProxyLab;
let proxy: ServiceProxy;
const book = new Book();
const real: string[] = [];
const pods: ProxyLabPod[] = [];

beforeAll(async () => {
  lab = await ProxyLab.create();
  pods.push(await lab.addPod('b1', 'b'), await lab.addPod('b2', 'b'));
  // Ten endpoint addresses on two servers: each pod answers on all of its addresses.
  for (let j = 0; j < ENDPOINTS; j++) {
    const pod = pods[j % 2]!;
    const address = j < 2 ? pod.ip : `10.42.2.${100 + j}`;
    if (j >= 2) await ip(pod.ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    real.push(address);
  }
  proxy = new ServiceProxy({ source: book, log: pino({ level: 'silent' }), plane: new KernelProxyPlane({ wrap: lab.deviceWrap }), checkIntervalMs: 3_600_000 });
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await lab?.teardown();
});

async function fullSync(count: number): Promise<{ planMs: number; applyMs: number }> {
  fill(book, count, real);
  proxy.resync();
  proxy.setNode({ name: 'a', podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR });
  await proxy.idle();
  expect(proxy.last?.kind).toBe('full');
  expect(proxy.last?.services).toBe(count);
  return { planMs: proxy.last!.planMs, applyMs: proxy.last!.applyMs };
}

/** Median TCP connect time (µs) of CONNECTS connections one after another from the client pod. */
async function connectUs(host: string): Promise<number> {
  const replies = await lab.request(lab.client.ns, 'tcp', host, host.startsWith('10.43.') ? 80 : SERVE_PORT, CONNECTS);
  const failed = replies.filter((r) => !r.reply);
  if (failed.length) throw new Error(`${failed.length} of ${CONNECTS} connections to ${host} failed: ${JSON.stringify(tally(failed))}`);
  return median(replies.map((r) => r.connectUs!));
}

it('1,000 Services × 10 endpoints: full sync, one endpoint change, first-packet cost at 10 and 1,000 Services', async () => {
  const full: { planMs: number; applyMs: number }[] = [];
  const at10: number[] = [];
  const at1000: number[] = [];
  const direct: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    await fullSync(10);
    at10.push(await connectUs(vip(0)));
    direct.push(await connectUs(real[0]!));
    full.push(await fullSync(SERVICES));
    at1000.push(await connectUs(vip(0)));
  }
  // All ten endpoints of the measured Service answer through the virtual IP.
  expect(Object.keys(tally(await lab.request(lab.client.ns, 'tcp', vip(0), 80, 100))).sort()).toEqual(['b1', 'b2']);

  const checkStart = performance.now();
  expect(await proxy.check()).toBeUndefined();
  const checkMs = performance.now() - checkStart;

  // One endpoint change at a time, in Services spread over the table: an endpoint moves to a new address.
  const change: { planMs: number; applyMs: number; totalMs: number }[] = [];
  const cpuBefore = childCpuSeconds();
  for (let c = 0; c < CHANGES; c++) {
    const i = 1 + ((c * 97) % (SERVICES - 1));
    const eps = book.eps.get(`bench/s${i}`)!;
    const old = eps.get('p3')!;
    eps.set('p3', { ...old, ip: `10.42.250.${c + 1}`, generation: old.generation + 1 });
    const t0 = performance.now();
    proxy.changed([`bench/s${i}`]);
    await proxy.idle();
    const totalMs = performance.now() - t0;
    expect(proxy.last).toMatchObject({ kind: 'incremental', services: 1 });
    change.push({ planMs: proxy.last!.planMs, applyMs: proxy.last!.applyMs, totalMs });
  }
  const nftCpuMsPerChange = ((childCpuSeconds() - cpuBefore) * 1000) / CHANGES;
  expect(await proxy.check()).toBeUndefined();

  const fullMs = full.map((f) => f.planMs + f.applyMs);
  const changeMs = change.map((c) => c.planMs + c.applyMs);
  const ratio = median(at1000.map((v, i) => v / at10[i]!));
  const result = {
    benchmark: 'services-datapath',
    parameters: { services: SERVICES, endpointsPerService: ENDPOINTS, rounds: ROUNDS, connectsPerMeasure: CONNECTS, endpointChanges: CHANGES, table: 'ip flotilla-svc (verdict maps, numgen random)', where: 'a network namespace of the bench\'s own; the proxy\'s own planner and nft plane' },
    figures: {
      fullSyncMs: { median: round(median(fullMs)), max: round(Math.max(...fullMs)), planMedian: round(median(full.map((f) => f.planMs))), applyMedian: round(median(full.map((f) => f.applyMs))) },
      endpointChangeMs: { median: round(median(changeMs), 2), p95: round(quantile(changeMs, 0.95), 2), max: round(Math.max(...changeMs), 2), planMedian: round(median(change.map((c) => c.planMs)), 3), applyMedian: round(median(change.map((c) => c.applyMs)), 2), withQueueMedian: round(median(change.map((c) => c.totalMs)), 2), nftCpuMsPerChange: round(nftCpuMsPerChange, 2) },
      loadAverage1mAtEnd: round(loadavg()[0] ?? 0, 2),
      connectUs: { services10: round(median(at10)), services1000: round(median(at1000)), samples10: at10.map((v) => round(v)), samples1000: at1000.map((v) => round(v)) },
      tableCheckMs: round(checkMs),
    },
    floor: { directConnectUs: round(median(direct)), samples: direct.map((v) => round(v)) },
    ratios: { connect1000Over10: round(ratio, 3), connect1000OverDirect: round(median(at1000) / median(direct), 3), connect10OverDirect: round(median(at10) / median(direct), 3) },
    targets: {
      fullSync: { what: 'service data path, full sync of 1,000 Services × 10 endpoints on the device (plan + nft)', measured: round(median(fullMs)), unit: 'ms', must: 1_000, better: 'lower' as const },
      endpointChange: { what: 'service data path, one endpoint change on the device (plan + nft transaction), median', measured: round(median(changeMs), 1), unit: 'ms', must: 50, better: 'lower' as const },
      firstPacket: { what: 'first-packet cost: TCP connect through a virtual IP at 1,000 Services ÷ at 10', measured: round(ratio, 3), unit: '×', must: 1.5, aim: 1.1, better: 'lower' as const },
    },
  };
  writeResult(result);
  console.log(JSON.stringify(result.figures), JSON.stringify(result.floor), JSON.stringify(result.ratios));
  expect(median(fullMs)).toBeLessThanOrEqual(1_000);
  expect(median(changeMs)).toBeLessThanOrEqual(50);
  expect(ratio).toBeLessThanOrEqual(1.5);
});
