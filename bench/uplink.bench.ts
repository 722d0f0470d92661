import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import { DEFAULT_METRICS_INTERVAL_SECONDS } from '../shared/protocol/metrics.js';
import { stopAll, tempDir } from '../test/harness/processes.js';
import { ByteCountingProxy, type WireCount } from './hollow/byte-proxy.js';
import { HollowFleet } from './hollow/fleet.js';
import { appImages, applyObjects, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, hollowDaemonSet, startBenchHub, stateRoot } from './hollow/setup.js';
import { round, writeResult } from './results.js';

// Device uplink at steady state (docs/ARCHITECTURE.md, 'Performance targets': ≤ 200 B/s per device with metrics on, aim
// ≤ 32 B/s): hollow devices with 5 pods each, at the agent's default intervals (heartbeat,
// status resync, metrics), connected through a byte-counting TCP proxy in front of the hub's
// MQTT port. Every byte a device sends counts, TCP payload as the broker receives it.

const DEVICES = Number(process.env.FLOTILLA_BENCH_UPLINK_DEVICES ?? 100);
const PODS = 5;
const SETTLE_MS = Number(process.env.FLOTILLA_BENCH_UPLINK_SETTLE_MS ?? 15_000);
// At least one status interval (60 s) and six metrics intervals (15 s): `npm run bench` must fit in 15 min.
const WINDOW_MS = Number(process.env.FLOTILLA_BENCH_UPLINK_WINDOW_MS ?? 60_000);

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

/** Bytes per device per second, by what carried them. */
function perDevice(count: WireCount, seconds: number): Record<string, number> {
  const rate = (bytes: number) => round(bytes / DEVICES / seconds, 1);
  return Object.fromEntries([['total', rate(count.bytes)], ...Object.entries(count.byKind).sort((a, b) => b[1].bytes - a[1].bytes).map(([kind, k]) => [kind, rate(k.bytes)])]);
}

it(`uplink of ${DEVICES} devices with ${PODS} pods each, at rest, metrics on`, async () => {
  const dirs = tempDir('uplink');
  cleanups.push(() => dirs.remove());
  const state = stateRoot('uplink');
  cleanups.push(() => state.remove());
  const hub = await startBenchHub(join(dirs.path, 'hub'));
  cleanups.push(() => hub.process.stop(60_000));
  const target = new URL(process.env.FLOTILLA_BENCH_BROKER ?? hub.mqttUrl);
  const proxy = await ByteCountingProxy.start({ host: target.hostname, port: Number(target.port) });
  cleanups.push(() => proxy.close());
  const images = appImages(PODS, 1);
  // The agent's own defaults throughout: only the engine is simulated.
  const { fleet } = await HollowFleet.start({ hub: proxy.url, token: hub.joinToken, devices: DEVICES, processes: 1, namePrefix: 'up', labels: HOLLOW_LABELS, stateRoot: state.path, images: [...HOLLOW_BASE_IMAGES, ...images] });
  cleanups.push(() => fleet.kill());
  const running = await fleet.expect(images, PODS, 120_000);
  await applyObjects(hub, images.map((image, i) => hollowDaemonSet(`app-${i}`, image)));
  expect((await running.times).filter((t) => t === null)).toHaveLength(0);

  await new Promise((r) => setTimeout(r, SETTLE_MS));
  proxy.reset();
  const startedAt = Date.now();
  await new Promise((r) => setTimeout(r, WINDOW_MS));
  const seconds = (Date.now() - startedAt) / 1000;
  const up = perDevice(proxy.uplink, seconds);
  const down = perDevice(proxy.downlink, seconds);
  console.log('uplink B/s per device:', JSON.stringify(up), 'downlink:', JSON.stringify(down));
  writeResult({
    benchmark: 'uplink',
    parameters: { devices: DEVICES, podsPerDevice: PODS, settleMs: SETTLE_MS, windowMs: WINDOW_MS, metricsIntervalSeconds: DEFAULT_METRICS_INTERVAL_SECONDS, intervals: "the agent's defaults", measuredAt: 'a byte-counting TCP proxy in front of the broker (TCP payload, MQTT framing included)', broker: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded (aedes)' },
    figures: { uplinkBytesPerDevicePerSecond: up, downlinkBytesPerDevicePerSecond: down, uplinkPackets: proxy.uplink.packets, windowSeconds: round(seconds, 1) },
    targets: { uplink: { what: 'device uplink, steady state, metrics on', measured: up.total!, unit: 'B/s per device', must: 200, aim: 32, better: 'lower' } },
  });
  expect(proxy.uplink.bytes).toBeGreaterThan(0);
});
