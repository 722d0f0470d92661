import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import { stopAll, tempDir } from '../test/harness/processes.js';
import { HollowFleet, type FleetOptions } from './hollow/fleet.js';
import type { ReceivedCount } from './hollow/protocol.js';
import { deviceBrokerUrl, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, startBenchHub, stateRoot } from './hollow/setup.js';
import { MB, progressLog, quantile, round, sampleProcess, writeResult } from './results.js';

// The peer table's cost to the fleet when one device joins (docs/ARCHITECTURE.md, 'Performance
// targets'): N hollow devices run the agent's overlay (key, peer book, path selector, report)
// over an in-memory network; the hub announces each one on its own retained topic. A sample of
// them reads the peer table, as every device does in the field (the others skip the
// subscription, so that the fleet's own start does not cost N² messages here); each counts the
// PUBLISH bytes it receives. Then one more device joins, and the bytes every reader received for
// it are the figure: what each of the N devices receives, since each gets the same broadcast.
// Real agents cost more to run than the paper nodes of overlay-join-bytes.bench.ts, which
// measures the same at 10,000; this one checks that real agents send what those stand for.

const SIZES = (process.env.FLOTILLA_BENCH_OVERLAY_JOIN_SIZES ?? '1000').split(',').map(Number);
const READERS = 50;
const CLUSTER_CIDR = '10.0.0.0/10';
// The Services' virtual IPs lie outside it (the default 10.43.0.0/16 is inside).
const SERVICE_CIDR = '10.96.0.0/16';
const JOIN_CONCURRENCY = 50;
/** After the last reader has the new peer, how long anything else it is sent still counts. */
const TAIL_MS = 5_000;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

const figures: Record<string, unknown> = {};

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function delta(after: ReceivedCount[], before: ReceivedCount[]): { bytes: number; messages: number; otherBytes: number }[] {
  const earlier = new Map(before.map((c) => [c.name, c]));
  return after.map((a) => {
    const b = earlier.get(a.name)!;
    return { bytes: a.peerBytes - b.peerBytes + a.otherBytes - b.otherBytes, messages: a.peerMessages - b.peerMessages + a.otherMessages - b.otherMessages, otherBytes: a.otherBytes - b.otherBytes };
  });
}

for (const devices of SIZES) {
  it(`${devices} hollow devices on the overlay: what each receives when one more joins`, async () => {
    const dirs = tempDir('overlay-join');
    cleanups.push(() => dirs.remove());
    const state = stateRoot('overlay-join');
    cleanups.push(() => state.remove());
    // 10,000 nodes need more than the default cluster CIDR's 256 blocks of /24.
    const hub = await startBenchHub(join(dirs.path, 'hub'), ['--cluster-cidr', CLUSTER_CIDR, '--service-cidr', SERVICE_CIDR]);
    cleanups.push(() => hub.process.stop(60_000));
    const options: FleetOptions = {
      hub: deviceBrokerUrl(hub),
      token: hub.joinToken,
      devices,
      processes: Math.max(1, Math.min(4, Math.ceil(devices / 2_500))),
      namePrefix: 'ovl',
      labels: HOLLOW_LABELS,
      stateRoot: state.path,
      images: HOLLOW_BASE_IMAGES,
      metricsIntervalSeconds: 0,
      startConcurrency: JOIN_CONCURRENCY,
      overlay: { peerTableDevices: READERS },
      onProgress: progressLog(devices),
    };
    const { fleet } = await HollowFleet.start(options);
    cleanups.push(() => fleet.kill());
    // Every device announced and every reader holding the whole table, and nothing moving any more.
    let last = '';
    let stableSince = Date.now();
    await until('every reader to hold every peer', 600_000, async () => {
      const counts = await fleet.received();
      const key = counts.map((c) => c.peerMessages).join(',');
      if (key !== last) {
        last = key;
        stableSince = Date.now();
      }
      return counts.every((c) => c.peerMessages >= devices) && Date.now() - stableSince > 3_000 ? true : undefined;
    });
    const before = await fleet.received();

    const hubSample = sampleProcess(hub.process.child.pid!);
    const joinedAt = Date.now();
    const joiner = await HollowFleet.start({ ...options, devices: 1, processes: 1, namePrefix: 'newcomer', overlay: { peerTableDevices: 0 }, onProgress: () => undefined });
    cleanups.push(() => joiner.fleet.kill());
    const everyoneAt = await until('every reader to receive the new peer', 60_000, async () => ((await fleet.received()).every((c) => c.lastPeers.includes('newcomer-0')) ? Date.now() : undefined));
    await new Promise((r) => setTimeout(r, TAIL_MS));
    const after = await fleet.received();
    const hubWindow = hubSample.stop();
    const perReader = delta(after, before);
    const bytes = perReader.map((d) => d.bytes);
    const messages = perReader.map((d) => d.messages);
    figures[`devices${devices}`] = {
      readers: perReader.length,
      bytesPerDevicePerJoin: { p50: quantile(bytes, 0.5), max: Math.max(...bytes) },
      messagesPerDevicePerJoin: { p50: quantile(messages, 0.5), max: Math.max(...messages) },
      otherBytesMax: Math.max(...perReader.map((d) => d.otherBytes)),
      joinStartToEveryReaderSeconds: round((everyoneAt - joinedAt) / 1000, 2),
      peerTableBytesAtSubscribePerDevice: round(quantile(before.map((c) => c.peerBytes), 0.5)),
      hubPeakRssMB: round(hubWindow.peakRssBytes / MB),
    };
    console.log(`overlay join ${devices}:`, JSON.stringify(figures[`devices${devices}`]));
    writeResult({
      benchmark: 'overlay-join',
      parameters: {
        sizes: SIZES,
        readers: `${READERS} devices read the peer table and count what they receive (MQTT PUBLISH packets, bytes on the wire); the others run the overlay without the subscription`,
        joiner: 'one more hollow device joins; counted from its start until every reader has its peer, plus 5 s',
        broker: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded (aedes)',
        metrics: 'off',
        relay: 'off',
        clusterCIDR: CLUSTER_CIDR,
      },
      figures,
    });
    expect(Math.max(...bytes)).toBeLessThanOrEqual(1024);
    await fleet.stop();
    await joiner.fleet.stop();
  });
}
