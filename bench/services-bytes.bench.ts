import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { stopAll, tempDir } from '../test/harness/processes.js';
import { HollowFleet, type FleetOptions } from './hollow/fleet.js';
import type { ReceivedCount } from './hollow/protocol.js';
import { applyObjects, deviceBrokerUrl, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, hubApi, startBenchHub, stateRoot } from './hollow/setup.js';
import { progressLog, quantile, round, writeResult, type TargetFigure } from './results.js';

// What one endpoint change costs each device (the target: must ≤ 300 B): N hollow
// devices run the agent with the overlay, so each reads the Services, their endpoints and the
// catalog as a real one does (the first READERS of them also read the peer table and count the
// PUBLISH bytes they receive under network/: the broadcast is the same for all). A Deployment
// behind a Service runs 10 pods on the fleet; then it scales to 11 (an endpoint comes: its
// message and the catalog's) and back to 10 (one goes: its topic cleared, and the catalog).
// Each window is counted until the readers have been quiet for QUIET_MS.

const DEVICES = Number(process.env.FLOTILLA_BENCH_SERVICES_DEVICES ?? 1000);
const READERS = 50;
const CLUSTER_CIDR = '10.0.0.0/10';
// The Services' virtual IPs lie outside it (the default 10.43.0.0/16 is inside).
const SERVICE_CIDR = '10.96.0.0/16';
const QUIET_MS = 3_000;
const IMAGE = 'registry.example/store:1';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until no reader has received anything for QUIET_MS; returns the counts then. */
async function quiet(fleet: HollowFleet): Promise<ReceivedCount[]> {
  let last = '';
  let since = Date.now();
  return until('the readers to go quiet', 600_000, async () => {
    const counts = await fleet.received();
    const key = counts.map((c) => `${c.peerMessages}/${c.otherMessages}`).join(',');
    if (key !== last) {
      last = key;
      since = Date.now();
      return undefined;
    }
    return Date.now() - since > QUIET_MS ? counts : undefined;
  });
}

interface Window {
  bytes: number[];
  messages: number[];
  /** Endpoint messages among them (the others: the catalog). */
  endpointMessages: number[];
}

function window(after: ReceivedCount[], before: ReceivedCount[]): Window {
  const earlier = new Map(before.map((c) => [c.name, c]));
  const out: Window = { bytes: [], messages: [], endpointMessages: [] };
  for (const a of after) {
    const b = earlier.get(a.name)!;
    const messages = a.peerMessages - b.peerMessages;
    out.bytes.push(a.peerBytes - b.peerBytes);
    out.messages.push(messages);
    // lastPeers holds the last 16 topics' last segment: the pod's name, or 'catalog'.
    const tail = a.lastPeers.slice(-Math.min(messages, 16));
    out.endpointMessages.push(tail.filter((t) => t !== 'catalog').length);
  }
  return out;
}

async function readyEndpoints(hub: Parameters<typeof hubApi>[0]): Promise<number> {
  const slices = await hubApi<{ items: { endpoints?: { conditions?: { ready?: boolean } }[] }[] }>(hub, 'GET', '/api/v1/namespaces/default/endpointslices');
  return slices.items.flatMap((s) => s.endpoints ?? []).filter((e) => e.conditions?.ready).length;
}

it(`${DEVICES} hollow devices: the bytes each receives for one endpoint change`, async () => {
  const dirs = tempDir('services-bytes');
  cleanups.push(() => dirs.remove());
  const state = stateRoot('services-bytes');
  cleanups.push(() => state.remove());
  const hub = await startBenchHub(join(dirs.path, 'hub'), ['--cluster-cidr', CLUSTER_CIDR, '--service-cidr', SERVICE_CIDR]);
  cleanups.push(() => hub.process.stop(60_000));
  const options: FleetOptions = {
    hub: deviceBrokerUrl(hub),
    token: hub.joinToken,
    devices: DEVICES,
    processes: Math.max(1, Math.min(4, Math.ceil(DEVICES / 2_500))),
    namePrefix: 'svc',
    labels: HOLLOW_LABELS,
    stateRoot: state.path,
    images: [...HOLLOW_BASE_IMAGES, IMAGE],
    metricsIntervalSeconds: 0,
    startConcurrency: 50,
    overlay: { peerTableDevices: READERS },
    onProgress: progressLog(DEVICES),
  };
  const { fleet } = await HollowFleet.start(options);
  cleanups.push(() => fleet.kill());
  await until('every reader to hold every peer', 600_000, async () => ((await fleet.received()).every((c) => c.peerMessages >= DEVICES) ? true : undefined));

  const deployment = (replicas: number) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'store', namespace: 'default' },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'store' } },
      template: { metadata: { labels: { app: 'store' } }, spec: { nodeSelector: HOLLOW_LABELS, terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: IMAGE, command: ['sleep', '86400'], ports: [{ name: 'http', containerPort: 8080 }] }] } },
    },
  });
  const service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'store', namespace: 'default' }, spec: { selector: { app: 'store' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } };
  await applyObjects(hub, [deployment(10), service]);
  await until('10 ready endpoints', 300_000, async () => ((await readyEndpoints(hub)) === 10 ? true : undefined));
  const settled = await quiet(fleet);

  await applyObjects(hub, [deployment(11)]);
  await until('11 ready endpoints', 120_000, async () => ((await readyEndpoints(hub)) === 11 ? true : undefined));
  const grown = await quiet(fleet);
  const comes = window(grown, settled);

  await applyObjects(hub, [deployment(10)]);
  await until('10 endpoints', 120_000, async () => ((await readyEndpoints(hub)) === 10 ? true : undefined));
  const shrunk = await quiet(fleet);
  const goes = window(shrunk, grown);

  // Per endpoint change: a window's bytes over the endpoint messages in it (an endpoint that
  // comes not ready and turns ready is two changes, each its own message).
  const perChange = (w: Window) => w.bytes.map((b, i) => b / Math.max(1, w.endpointMessages[i]!));
  const worst = Math.max(...perChange(comes), ...perChange(goes));
  const figures = {
    readers: comes.bytes.length,
    endpointComes: { bytesPerDevice: { p50: quantile(comes.bytes, 0.5), max: Math.max(...comes.bytes) }, messagesPerDevice: { p50: quantile(comes.messages, 0.5), max: Math.max(...comes.messages) }, endpointMessagesPerDevice: { max: Math.max(...comes.endpointMessages) } },
    endpointGoes: { bytesPerDevice: { p50: quantile(goes.bytes, 0.5), max: Math.max(...goes.bytes) }, messagesPerDevice: { p50: quantile(goes.messages, 0.5), max: Math.max(...goes.messages) }, endpointMessagesPerDevice: { max: Math.max(...goes.endpointMessages) } },
    bytesPerDevicePerEndpointChangeMax: round(worst),
  };
  console.log(`services bytes ${DEVICES}:`, JSON.stringify(figures));
  const targets: Record<string, TargetFigure> = {
    endpointChangeBytes: { what: `bytes each device receives for one endpoint change, ${DEVICES.toLocaleString('en-US')} hollow devices`, measured: round(worst), unit: 'B', must: 300, better: 'lower' },
  };
  writeResult({
    benchmark: 'services-bytes',
    parameters: {
      devices: DEVICES,
      readers: `${READERS} devices count the MQTT PUBLISH bytes on the wire they receive under network/ (every device reads the Services and endpoints)`,
      service: 'one ClusterIP Service, one named port, in front of a Deployment of 10 pods scaled to 11 and back',
      quietMs: QUIET_MS,
      broker: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded (aedes)',
      clusterCIDR: CLUSTER_CIDR,
    },
    figures,
    targets,
  });
  expect(Math.min(...comes.endpointMessages)).toBeGreaterThanOrEqual(1);
  expect(Math.min(...goes.endpointMessages)).toBeGreaterThanOrEqual(1);
  expect(worst).toBeLessThanOrEqual(300);
  await fleet.stop();
}, 3_600_000);
