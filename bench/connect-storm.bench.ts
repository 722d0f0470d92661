import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import { stopAll, tempDir } from '../test/harness/processes.js';
import type { DeviceTiming } from './hollow/protocol.js';
import { HollowFleet, type FleetOptions } from './hollow/fleet.js';
import { deviceBrokerUrl, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, startBenchHub, stateRoot } from './hollow/setup.js';
import { MB, progressLog, quantile, round, sampleProcess, writeResult } from './results.js';

// Connect storm: N hollow devices that have joined the fleet all connect at once, as after a
// hub restart or the end of a network outage; the time until every one is connected again, and
// the hub's memory with them. The joins come first, a few at a time (as devices are installed),
// and their pace is reported too. No target in docs/ARCHITECTURE.md, 'Performance targets'; the figures bound the fleet
// benchmarks (fan-out, uplink), which start from such a fleet.

const SIZES = (process.env.FLOTILLA_BENCH_CONNECT_SIZES ?? '1000,10000').split(',').map(Number);
const JOIN_CONCURRENCY = 50;
const SETTLE_MS = 3_000;
/** After the fleet goes, until the hub has taken in every connection's end (wills, presence). */
const QUIET_MS = 6_000;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

const figures: Record<string, unknown> = {};

function failures(timings: DeviceTiming[]): string {
  const failed = timings.filter((t) => t.error || t.connectedAt === null);
  return failed.length ? `${failed.length} devices did not connect: ${failed.slice(0, 3).map((t) => `${t.name}: ${t.error}`).join('; ')}` : '';
}

function seconds(timings: DeviceTiming[], field: 'joinedAt' | 'connectedAt'): number {
  return (Math.max(...timings.map((t) => t[field]!)) - Math.min(...timings.map((t) => t.startedAt))) / 1000;
}

for (const devices of SIZES) {
  it(`${devices} hollow devices join, then all connect at once`, async () => {
    const dirs = tempDir('storm');
    cleanups.push(() => dirs.remove());
    const state = stateRoot('storm');
    cleanups.push(() => state.remove());
    const hub = await startBenchHub(join(dirs.path, 'hub'));
    // An orderly stop, with time for a hub started with --cpu-prof to write its profile.
    cleanups.push(() => hub.process.stop(60_000));
    const hubPid = hub.process.child.pid!;
    const fleetOptions: FleetOptions = {
      hub: deviceBrokerUrl(hub),
      token: hub.joinToken,
      devices,
      processes: Math.max(1, Math.min(4, Math.ceil(devices / 2_500))),
      namePrefix: 'storm',
      labels: HOLLOW_LABELS,
      stateRoot: state.path,
      images: HOLLOW_BASE_IMAGES,
      metricsIntervalSeconds: 0,
      onProgress: progressLog(devices),
    };

    // The joins, a few at a time per worker.
    const joined = await HollowFleet.start({ ...fleetOptions, startConcurrency: JOIN_CONCURRENCY });
    expect(failures(joined.timings)).toBe('');
    const joinSeconds = seconds(joined.timings, 'connectedAt');
    // Every device gone at once (its credentials stay on its disk); the hub takes in the losses.
    joined.fleet.kill();
    await new Promise((r) => setTimeout(r, QUIET_MS));

    // The storm: every device back at once.
    const sampler = sampleProcess(hubPid);
    const storm = await HollowFleet.start(fleetOptions);
    cleanups.push(() => storm.fleet.kill());
    expect(failures(storm.timings)).toBe('');
    const stormWindow = sampler.stop();
    const perDevice = storm.timings.map((t) => (t.connectedAt! - t.startedAt) / 1000);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const settled = sampleProcess(hubPid);
    await new Promise((r) => setTimeout(r, 2_000));
    const rest = settled.stop();
    const workers = await storm.fleet.usage();
    figures[`devices${devices}`] = {
      joins: { seconds: round(joinSeconds, 1), perSecond: round(devices / joinSeconds) },
      allConnectedSeconds: round(seconds(storm.timings, 'connectedAt'), 2),
      perDeviceConnectSeconds: { p50: round(quantile(perDevice, 0.5), 2), p99: round(quantile(perDevice, 0.99), 2), max: round(Math.max(...perDevice), 2) },
      hubPeakRssMB: round(stormWindow.peakRssBytes / MB),
      hubRssSettledMB: round(rest.lastRssBytes / MB),
      hubCpuSecondsDuringStorm: round(stormWindow.cpuSeconds, 1),
      workerRssMB: workers.map((w) => round(w.rssBytes / MB)),
      workerCpuSeconds: workers.map((w) => round(w.cpuSeconds, 1)),
      workerRssPerDeviceKB: round(workers.reduce((a, w) => a + w.rssBytes, 0) / devices / 1000),
    };
    console.log(`connect storm ${devices}:`, JSON.stringify(figures[`devices${devices}`]));
    writeResult({
      benchmark: 'connect-storm',
      parameters: { sizes: SIZES, workerProcesses: 'ceil(N / 2500), at most 4', joins: `${JOIN_CONCURRENCY} at a time per worker`, storm: 'every joined device connects at once (its credentials on its disk), after the whole fleet was cut off', metrics: 'off', broker: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded (aedes)', quietMs: QUIET_MS, settleMs: SETTLE_MS },
      figures,
    });
  });
}
