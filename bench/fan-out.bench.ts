import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import { stopAll, tempDir, type RunningHub } from '../test/harness/processes.js';
import { HollowFleet } from './hollow/fleet.js';
import { appImages, applyObjects, daemonSets, deviceBrokerUrl, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, hollowDaemonSet, startBenchHub, stateRoot } from './hollow/setup.js';
import { MB, procStat, progressLog, quantile, round, sampleProcess, writeResult, type TargetFigure } from './results.js';

// Fan-out (DESIGN.md section 6): a fleet-wide DaemonSet change (a new image tag for a DaemonSet
// whose nodeSelector matches every device) applied, until every hollow device has reported its
// new pod running — the hub's acknowledgement of that status report, timed on the device. The
// fleet runs 5 pods per device (5 DaemonSets), so the hub's memory is that of N devices × 5 pods.
// Target: 10,000 devices within 5 s on one 2-core hub, hub RSS ≤ 600 MB.

const SIZES = (process.env.FLOTILLA_BENCH_FANOUT_SIZES ?? '1000,10000').split(',').map(Number);
const DAEMONSETS = 5;
const SETTLE_MS = 10_000;
const ROLLOUT_TIMEOUT_MS = 300_000;
const CHANGE_TIMEOUT_MS = 120_000;
const START_CONCURRENCY = 50;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

const figures: Record<string, unknown> = {};
const targets: Record<string, TargetFigure> = {};

/** Logs the DaemonSets' counts every few seconds until `until` settles: a long rollout shows where it is. */
async function withDaemonSetProgress<T>(hub: RunningHub, until: Promise<T>): Promise<T> {
  const timer = setInterval(() => {
    void daemonSets(hub)
      .then((list) => console.log(`  ${list.map((d) => `${d.metadata.name} ${d.status?.updatedNumberScheduled ?? 0}/${d.status?.desiredNumberScheduled ?? 0} ready ${d.status?.numberReady ?? 0}`).join(', ')}`))
      .catch(() => undefined);
  }, 10_000);
  try {
    return await until;
  } finally {
    clearInterval(timer);
  }
}

function seconds(times: (number | null)[], from: number): { done: number[]; missing: number } {
  const done = times.filter((t): t is number => t !== null).map((t) => (t - from) / 1000);
  return { done, missing: times.length - done.length };
}

for (const devices of SIZES) {
  it(`a fleet-wide DaemonSet change reaches ${devices} hollow devices`, async () => {
    const dirs = tempDir('fanout');
    cleanups.push(() => dirs.remove());
    const state = stateRoot('fanout');
    cleanups.push(() => state.remove());
    const hub = await startBenchHub(join(dirs.path, 'hub'));
    cleanups.push(() => hub.process.stop(60_000));
    const hubPid = hub.process.child.pid!;
    const v1 = appImages(DAEMONSETS, 1);
    const [v2] = appImages(1, 2);
    const { fleet, timings } = await HollowFleet.start({
      hub: deviceBrokerUrl(hub),
      token: hub.joinToken,
      devices,
      processes: Math.max(1, Math.min(4, Math.ceil(devices / 2_500))),
      namePrefix: 'fan',
      labels: HOLLOW_LABELS,
      stateRoot: state.path,
      // Every image is present on the devices: the figure is the control plane's, not a registry's.
      images: [...HOLLOW_BASE_IMAGES, ...v1, v2!],
      metricsIntervalSeconds: 0,
      // Joined a few at a time rather than all at once: the storm is connect-storm.bench.ts's to measure.
      startConcurrency: START_CONCURRENCY,
      onProgress: progressLog(devices),
    });
    cleanups.push(() => fleet.kill());
    const failed = timings.filter((t) => t.error);
    expect(failed, `devices that did not join: ${failed.slice(0, 3).map((t) => `${t.name}: ${t.error}`).join('; ')}`).toHaveLength(0);

    // The fleet's 5 pods per device.
    const rolledOut = await fleet.expect(v1, DAEMONSETS, ROLLOUT_TIMEOUT_MS);
    const rolloutStart = Date.now();
    await applyObjects(hub, v1.map((image, i) => hollowDaemonSet(`app-${i}`, image)));
    const initial = seconds(await withDaemonSetProgress(hub, rolledOut.times), rolloutStart);
    expect(initial.missing, 'devices without their 5 pods running').toBe(0);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const atRest = procStat(hubPid);

    // The change: app-0 to a new image tag, on every device.
    const reported = await fleet.expect([v2!], 1, CHANGE_TIMEOUT_MS);
    const sampler = sampleProcess(hubPid);
    const workersBefore = await fleet.usage();
    const changedAt = Date.now();
    await applyObjects(hub, [hollowDaemonSet('app-0', v2!)]);
    const change = seconds(await reported.times, changedAt);
    const window = sampler.stop();
    const workersAfter = await fleet.usage();
    const fleetCpu = workersAfter.reduce((a, w, i) => a + w.cpuSeconds - workersBefore[i]!.cpuSeconds, 0);
    expect(change.missing, 'devices that did not report the new pod running').toBe(0);
    const ds = (await daemonSets(hub)).find((d) => d.metadata.name === 'app-0');
    expect(ds?.status?.updatedNumberScheduled).toBe(devices);

    const lastReport = Math.max(...change.done);
    figures[`devices${devices}`] = {
      change: { p50Seconds: round(quantile(change.done, 0.5), 2), p99Seconds: round(quantile(change.done, 0.99), 2), maxSeconds: round(lastReport, 2) },
      hubCpuSecondsDuringChange: round(window.cpuSeconds, 2),
      hubCpuPercentDuringChange: round((100 * window.cpuSeconds) / Math.max(lastReport, 0.001)),
      hubPeakRssMBDuringChange: round(window.peakRssBytes / MB),
      // The devices share this machine's two cores with the hub: their CPU is part of the picture.
      hollowFleetCpuSecondsDuringChange: round(fleetCpu, 2),
      hubRssMBAtRest: round(atRest.rssBytes / MB),
      initialRollout: { pods: devices * DAEMONSETS, p50Seconds: round(quantile(initial.done, 0.5), 2), maxSeconds: round(Math.max(...initial.done), 2) },
      allConnectedSeconds: round((Math.max(...timings.map((t) => t.connectedAt!)) - Math.min(...timings.map((t) => t.startedAt))) / 1000, 1),
    };
    if (devices === 10_000) {
      targets.fanOut10k = { what: 'fleet-wide DaemonSet change → all 10,000 hollow devices report running (max)', measured: round(lastReport, 2), unit: 's', must: 5, better: 'lower' };
      targets.hubRss10k = { what: 'hub memory at 10,000 devices × 5 pods', measured: round(Math.max(atRest.rssBytes, window.peakRssBytes) / MB), unit: 'MB RSS', must: 600, aim: 300, better: 'lower' };
    }
    console.log(`fan-out ${devices}:`, JSON.stringify(figures[`devices${devices}`]));
    writeResult({
      benchmark: 'fan-out',
      parameters: { sizes: SIZES, podsPerDevice: DAEMONSETS, startConcurrencyPerWorker: START_CONCURRENCY, imagesPresent: true, metrics: 'off', broker: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded (aedes)', settleMs: SETTLE_MS, timing: "device clock at the broker's PUBACK of the first status report showing the new pod running" },
      figures,
      targets,
    });
  });
}
