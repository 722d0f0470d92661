import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import { stopAll, tempDir } from '../test/harness/processes.js';
import { HollowFleet } from './hollow/fleet.js';
import { deviceBrokerUrl, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, startBenchHub, stateRoot } from './hollow/setup.js';
import { MB, progressLog, quantile, round, sampleProcess, writeResult } from './results.js';

// Connect storm: N hollow devices join the fleet and connect, all at once; the time until every
// one is connected, and the hub's memory with them. No target in DESIGN.md section 6; the
// figures bound the fleet benchmarks (fan-out, uplink) that start from such a fleet.

const SIZES = (process.env.FLOTILLA_BENCH_CONNECT_SIZES ?? '1000,10000').split(',').map(Number);
const SETTLE_MS = 5_000;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

const figures: Record<string, unknown> = {};

for (const devices of SIZES) {
  it(`${devices} hollow devices join and connect`, async () => {
    const dirs = tempDir('storm');
    cleanups.push(() => dirs.remove());
    const state = stateRoot('storm');
    cleanups.push(() => state.remove());
    const hub = await startBenchHub(join(dirs.path, 'hub'));
    // An orderly stop, with time for a hub started with --cpu-prof to write its profile.
    cleanups.push(() => hub.process.stop(60_000));
    const hubPid = hub.process.child.pid!;
    const sampler = sampleProcess(hubPid);
    const processes = Math.max(1, Math.min(4, Math.ceil(devices / 2_500)));
    const { fleet, timings } = await HollowFleet.start({
      hub: deviceBrokerUrl(hub),
      token: hub.joinToken,
      devices,
      processes,
      namePrefix: 'storm',
      labels: HOLLOW_LABELS,
      stateRoot: state.path,
      images: HOLLOW_BASE_IMAGES,
      metricsIntervalSeconds: 0,
      onProgress: progressLog(devices),
    });
    cleanups.push(() => fleet.kill());
    const failed = timings.filter((t) => t.error || t.connectedAt === null);
    expect(failed, `devices that did not connect: ${failed.slice(0, 3).map((t) => `${t.name}: ${t.error}`).join('; ')}`).toHaveLength(0);
    const start = Math.min(...timings.map((t) => t.startedAt));
    const joinAll = (Math.max(...timings.map((t) => t.joinedAt!)) - start) / 1000;
    const connectAll = (Math.max(...timings.map((t) => t.connectedAt!)) - start) / 1000;
    const perDevice = timings.map((t) => (t.connectedAt! - t.startedAt) / 1000);
    const storm = sampler.stop();
    // Settled: the hub holding N idle sessions.
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const settled = sampleProcess(hubPid);
    await new Promise((r) => setTimeout(r, 2_000));
    const rest = settled.stop();
    const workers = await fleet.usage();
    figures[`devices${devices}`] = {
      allJoinedSeconds: round(joinAll, 2),
      allConnectedSeconds: round(connectAll, 2),
      perDeviceConnectSeconds: { p50: round(quantile(perDevice, 0.5), 2), p99: round(quantile(perDevice, 0.99), 2), max: round(Math.max(...perDevice), 2) },
      hubPeakRssMB: round(storm.peakRssBytes / MB),
      hubRssSettledMB: round(rest.lastRssBytes / MB),
      hubCpuSecondsDuringStorm: round(storm.cpuSeconds, 1),
      workerRssMB: workers.map((w) => round(w.rssBytes / MB)),
      workerCpuSeconds: workers.map((w) => round(w.cpuSeconds, 1)),
      workerRssPerDeviceKB: round(workers.reduce((a, w) => a + w.rssBytes, 0) / devices / 1000),
    };
    console.log(`connect storm ${devices}:`, JSON.stringify(figures[`devices${devices}`]));
    writeResult({
      benchmark: 'connect-storm',
      parameters: { sizes: SIZES, workerProcesses: 'ceil(N / 2500), at most 4', startSpread: 'none (all at once)', metrics: 'off', broker: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded (aedes)', settleMs: SETTLE_MS },
      figures,
    });
  });
}
