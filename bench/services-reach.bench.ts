import { afterAll, beforeAll, expect, it } from 'vitest';
import { execInPod, startOverlayLab, type OverlayLab } from '../test/harness/overlay.js';
import { stopAll } from '../test/harness/processes.js';
import { clientPodManifest, runPods, waitWho, whoPodManifest, WHO_PORT } from '../test/harness/services.js';
import { median, round, writeResult } from './results.js';

// How soon a new Service works across the fleet (docs/ARCHITECTURE.md, 'Performance targets'):
// in the device lab, a backend pod on device b and a client pod on device a. Each round creates
// a Service over the hub's API and times, from just before the create request, the first
// successful HTTP request from the client to the Service by name: the hub allocates the virtual
// IP and publishes the Service and its endpoint, device a's agent takes them in, its DNS server
// answers the name and its service proxy sends the virtual IP across the overlay to b.
//
// The client asks in a loop that was already running before the create (one exec, so the
// engine's exec start is not counted): a request every 20 ms, each a fresh name lookup and
// connection, and the pod's own clock ($EPOCHREALTIME of busybox sh, the host's clock) stamps
// the success. The name asked is the Service's FQDN without a trailing dot: the search list is
// walked as for a short name, but every query stays in cluster.local (answered by the device
// itself), where a short name's last try would go to the device's own resolver, which the lab
// does not have. The floor, measured in the same run: the same request to the backend's pod IP.

const ROUNDS = 5;
const PROBE_INTERVAL_S = 0.02;
const PROBE_LIMIT_S = 15;
let o: OverlayLab;
let ips: Record<string, string> = {};

beforeAll(async () => {
  o = await startOverlayLab('reach', { devices: [{ name: 'a' }, { name: 'b' }] });
  ips = await runPods(o.hub, { backend: whoPodManifest('backend', 'b', { app: 'reach' }), client: clientPodManifest('client', 'a') });
  await waitWho(o.devices.a!, 'client', ips.backend!, WHO_PORT, 45_000);
}, 300_000);

afterAll(async () => {
  await stopAll();
  await o?.lab.teardown();
});

const request = (host: string, port: number): string => `printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc -w 1 ${host} ${port} 2>/dev/null | grep -q '^HTTP/1.[01] 200 '`;

/** Seconds of the pod's clock (busybox sh's $EPOCHREALTIME) as milliseconds since the epoch. */
const ms = (epoch: string): number => Math.round(Number(epoch) * 1000);

/** One request from the client, timed inside the pod: its duration in ms, or undefined when it failed. */
async function timedRequest(host: string, port: number): Promise<number | undefined> {
  const r = await execInPod(o.devices.a!, 'client', ['sh', '-c', `s=$EPOCHREALTIME; ${request(host, port)} && echo "OK $s $EPOCHREALTIME"`]);
  const m = /^OK (\S+) (\S+)$/m.exec(r.stdout);
  return m ? ms(m[2]!) - ms(m[1]!) : undefined;
}

async function createService(name: string): Promise<void> {
  const body = { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { selector: { app: 'reach' }, ports: [{ port: 80, targetPort: WHO_PORT }] } };
  const res = await fetch(`${o.hub.apiUrl}/api/v1/namespaces/default/services`, { method: 'POST', headers: { authorization: `Bearer ${o.hub.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 201) throw new Error(`creating Service ${name}: ${res.status} ${await res.text()}`);
}

it('Service created → reachable by name from a pod on another device, against the same request to the pod IP', async () => {
  const rounds: { reachMs: number; floorMs: number; byNameWarmMs: number }[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const name = `reach-${i}`;
    const floorMs = await timedRequest(ips.backend!, WHO_PORT);
    expect(floorMs, 'the request to the pod IP').toBeDefined();

    const host = `${name}.default.svc.cluster.local`;
    const loop = `start=$EPOCHREALTIME; end=$(( \${start%.*} + ${PROBE_LIMIT_S} )); until ${request(host, 80)}; do [ \${EPOCHREALTIME%.*} -ge $end ] && { echo "TIMEOUT $start"; exit 1; }; sleep ${PROBE_INTERVAL_S}; done; echo "OK $start $EPOCHREALTIME"`;
    const probe = execInPod(o.devices.a!, 'client', ['sh', '-c', loop], (PROBE_LIMIT_S + 10) * 1000);
    // The loop must be asking before the Service exists: give the exec time to start.
    await new Promise((r) => setTimeout(r, 1_000));
    const createdAt = Date.now();
    await createService(name);
    const r = await probe;
    const m = /^OK (\S+) (\S+)$/m.exec(r.stdout);
    if (!m) throw new Error(`round ${i}: ${name} not reached within ${PROBE_LIMIT_S} s: ${r.stdout}${r.stderr}`);
    expect(ms(m[1]!), 'the probe started before the create').toBeLessThan(createdAt);
    const byNameWarmMs = await timedRequest(host, 80);
    rounds.push({ reachMs: ms(m[2]!) - createdAt, floorMs: floorMs!, byNameWarmMs: byNameWarmMs ?? Number.NaN });
  }
  const reach = rounds.map((r) => r.reachMs);
  const floor = median(rounds.map((r) => r.floorMs));
  const reachMedian = median(reach);
  const result = {
    benchmark: 'services-reach',
    parameters: {
      rounds: ROUNDS,
      devices: 'a (client pod) and b (backend pod), public, on the WireGuard overlay; hub in the lab',
      measured: 'from just before POST /api/v1/namespaces/default/services to the first HTTP 200 from the client to NAME.default.svc.cluster.local:80 (a fresh lookup and connection every 20 ms, timed by the pod\'s clock)',
      floor: 'the same request to the backend pod\'s IP (no DNS, no virtual IP), timed the same way',
    },
    figures: {
      reachMs: { p50: reachMedian, max: Math.max(...reach), rounds: reach },
      byNameWarmMs: median(rounds.map((r) => r.byNameWarmMs)),
      probeIntervalMs: PROBE_INTERVAL_S * 1000,
    },
    floor: { podIPRequestMs: floor },
    ratios: { reachOverFloor: round(reachMedian / Math.max(1, floor), 1), warmByNameOverFloor: round(median(rounds.map((r) => r.byNameWarmMs)) / Math.max(1, floor), 2) },
    targets: {
      serviceReach: { what: 'Service created → reachable by name from a pod on another device', measured: round(reachMedian / 1000, 2), unit: 's', must: 3, aim: 1, better: 'lower' as const },
    },
  };
  writeResult(result);
  console.log(JSON.stringify(result.figures), JSON.stringify(result.floor), JSON.stringify(result.ratios));
  expect(Math.max(...reach)).toBeLessThanOrEqual(3_000);
});
