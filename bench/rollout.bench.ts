import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import type { RolloutSpec, RolloutStatus } from '../shared/resources/rollout.js';
import { stopAll, tempDir, type RunningHub } from '../test/harness/processes.js';
import { HollowFleet } from './hollow/fleet.js';
import { appImages, applyObjects, daemonSets, deviceBrokerUrl, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, hollowDaemonSet, hubApi, startBenchHub, stateRoot } from './hollow/setup.js';
import { MB, procStat, progressLog, quantile, round, sampleProcess, writeResult } from './results.js';

// A Waves rollout across a fleet (docs/ARCHITECTURE.md, 'Performance targets'; issue 6): hollow devices, 5 % of them
// labelled channel=canary, run a Waves DaemonSet; a new template goes out in four waves (the
// canaries, 10 %, 50 %, the rest), each behind a health gate of minReadySeconds, with
// maxUnavailable 100 % and no pauses, so that only the gates should hold it back. Per wave: the
// time from its start to its gate passing (the Rollout record's status), and when its devices
// reported the new pod running. The floor, in the same run and on the same devices: the same
// change to a plain RollingUpdate DaemonSet (maxUnavailable 100 %), all devices at once.

const DEVICES = Number(process.env.FLOTILLA_BENCH_ROLLOUT_DEVICES ?? 5_000);
const CANARY_SHARE = 0.05;
const MIN_READY_SECONDS = 5;
const PROGRESS_DEADLINE_SECONDS = 120;
const WAVES = [{ selector: 'channel=canary' }, { percent: 10 }, { percent: 50 }, { percent: 100 }];
const START_CONCURRENCY = 50;
const SETTLE_MS = 5_000;
const SETUP_TIMEOUT_MS = 180_000;
const CHANGE_TIMEOUT_MS = 150_000;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

interface RolloutJson {
  metadata: { name: string };
  spec: RolloutSpec;
  status?: RolloutStatus;
}

function wavesDaemonSet(image: string): Record<string, unknown> {
  const ds = hollowDaemonSet('waves-app', image) as { spec: Record<string, unknown> };
  ds.spec.updateStrategy = { type: 'Waves', waves: WAVES, maxUnavailable: '100%', healthGate: { minReadySeconds: MIN_READY_SECONDS, progressDeadlineSeconds: PROGRESS_DEADLINE_SECONDS }, onFailure: 'rollback' };
  return ds;
}

function plainDaemonSet(image: string): Record<string, unknown> {
  const ds = hollowDaemonSet('plain-app', image) as { spec: Record<string, unknown> };
  ds.spec.updateStrategy = { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '100%' } };
  return ds;
}

/** Polls the Rollout record until it has finished; its last state, whatever the phase. */
async function finishedRollout(hub: RunningHub, name: string, timeoutMs: number): Promise<RolloutJson> {
  const deadline = Date.now() + timeoutMs;
  let last: RolloutJson | undefined;
  let logged = 0;
  for (;;) {
    try {
      last = await hubApi<RolloutJson>(hub, 'GET', `/api/v1/namespaces/default/rollouts/${name}`);
    } catch {
      // Not created yet.
    }
    const s = last?.status;
    if (s && !['Progressing', 'Paused'].includes(s.phase)) return last!;
    if (Date.now() > deadline) throw new Error(`rollout ${name} not finished after ${timeoutMs / 1000} s: ${JSON.stringify(s ?? null).slice(0, 800)}`);
    if (s && Date.now() - logged > 5_000) {
      logged = Date.now();
      console.log(`  ${s.phase}: ${s.waves.map((w) => `${w.name} ${w.phase} ${w.ready}/${w.total}`).join(', ')}`);
    }
    // Seldom: the record is large (every device's name), and the hub's CPU is what is measured.
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** Every device of both fleets, in the order their report times come back. */
function namesOf(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
}

async function expectAll(fleets: HollowFleet[], images: string[], pods: number, timeoutMs: number): Promise<{ times: Promise<(number | null)[]> }> {
  const armed = await Promise.all(fleets.map((f) => f.expect(images, pods, timeoutMs)));
  return { times: Promise.all(armed.map((a) => a.times)).then((all) => all.flat()) };
}

const ms = (iso: string | undefined) => (iso ? Date.parse(iso) : Number.NaN);

/** Logs the DaemonSets' counts every few seconds until `until` settles. */
async function withProgress<T>(hub: RunningHub, until: Promise<T>): Promise<T> {
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

/** Why some devices did not report: their nodes and pods as the hub sees them (a few of them). */
async function explainMissing(hub: RunningHub, names: string[], times: (number | null)[]): Promise<string> {
  const missing = names.filter((_, i) => times[i] === null);
  if (missing.length === 0) return '';
  const pods = (await hubApi<{ items: { metadata: { name: string; labels?: Record<string, string> }; spec?: { nodeName?: string }; status?: { phase?: string; containerStatuses?: { image: string; state: unknown }[] } }[] }>(hub, 'GET', '/api/v1/namespaces/default/pods')).items;
  const lines = await Promise.all(missing.slice(0, 3).map(async (n) => {
    const node = await hubApi<{ status?: { conditions?: { type: string; status: string }[] } }>(hub, 'GET', `/api/v1/nodes/${n}`).catch((e: Error) => ({ error: e.message }));
    const on = pods.filter((p) => p.spec?.nodeName === n).map((p) => ({ name: p.metadata.name, hash: p.metadata.labels?.['controller-revision-hash'], phase: p.status?.phase, containers: p.status?.containerStatuses }));
    return `${n}: node ${JSON.stringify(node).slice(0, 300)} pods ${JSON.stringify(on).slice(0, 600)}`;
  }));
  return `${missing.length} device(s), e.g. ${missing.slice(0, 10).join(', ')}\n${lines.join('\n')}\n${JSON.stringify(await daemonSets(hub))}`;
}

it(`a four-wave rollout across ${DEVICES} hollow devices, limited by its health gates`, async () => {
  const dirs = tempDir('rollout');
  // FLOTILLA_BENCH_KEEP=1 keeps the hub's data and log to look into a failed run.
  if (!process.env.FLOTILLA_BENCH_KEEP) cleanups.push(() => dirs.remove());
  else console.log(`  hub data and log under ${dirs.path}`);
  const state = stateRoot('rollout');
  cleanups.push(() => state.remove());
  const hub = await startBenchHub(join(dirs.path, 'hub'));
  cleanups.push(() => hub.process.stop(60_000));
  const hubPid = hub.process.child.pid!;
  const [wavesV1, plainV1] = appImages(2, 1) as [string, string];
  const [wavesV2, plainV2] = appImages(2, 2) as [string, string];
  const canaries = Math.round(DEVICES * CANARY_SHARE);
  const common = { hub: deviceBrokerUrl(hub), token: hub.joinToken, stateRoot: state.path, images: [...HOLLOW_BASE_IMAGES, wavesV1, plainV1, wavesV2, plainV2], metricsIntervalSeconds: 0, startConcurrency: START_CONCURRENCY };
  const joinStart = Date.now();
  const log = progressLog(DEVICES);
  const progress = new Map<string, [number, number]>();
  const onProgress = (which: string) => (connected: number, joined: number) => {
    progress.set(which, [connected, joined]);
    const sum = [...progress.values()].reduce((a, p) => [a[0] + p[0], a[1] + p[1]], [0, 0]);
    log(sum[0], sum[1]);
  };
  const [canaryFleet, restFleet] = await Promise.all([
    HollowFleet.start({ ...common, devices: canaries, processes: 1, namePrefix: 'canary', labels: { ...HOLLOW_LABELS, channel: 'canary' }, onProgress: onProgress('canary') }),
    HollowFleet.start({ ...common, devices: DEVICES - canaries, processes: Math.max(1, Math.min(3, Math.ceil((DEVICES - canaries) / 2_500))), namePrefix: 'dev', labels: HOLLOW_LABELS, onProgress: onProgress('rest') }),
  ]);
  const fleets = [canaryFleet.fleet, restFleet.fleet];
  cleanups.push(() => fleets.forEach((f) => f.kill()));
  const failedJoins = [...canaryFleet.timings, ...restFleet.timings].filter((t) => t.error);
  expect(failedJoins, `devices that did not join: ${failedJoins.slice(0, 3).map((t) => `${t.name}: ${t.error}`).join('; ')}`).toHaveLength(0);
  const names = [...namesOf('canary', canaries), ...namesOf('dev', DEVICES - canaries)];
  console.log(`  ${DEVICES} devices joined in ${round((Date.now() - joinStart) / 1000)} s`);

  // Revision 1 of both DaemonSets, everywhere at once.
  const first = await expectAll(fleets, [wavesV1, plainV1], 2, SETUP_TIMEOUT_MS);
  await applyObjects(hub, [wavesDaemonSet(wavesV1), plainDaemonSet(plainV1)]);
  const firstTimes = await withProgress(hub, first.times);
  expect(firstTimes.filter((t) => t === null), `devices without both pods running: ${await explainMissing(hub, names, firstTimes)}`).toHaveLength(0);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const atRest = procStat(hubPid);

  // The floor: the plain DaemonSet's change, every device at once.
  const floorReported = await expectAll(fleets, [plainV2], 1, CHANGE_TIMEOUT_MS);
  const floorSampler = sampleProcess(hubPid);
  const floorAppliedAt = Date.now();
  await applyObjects(hub, [plainDaemonSet(plainV2)]);
  const floorTimes = await floorReported.times;
  const floorWindow = floorSampler.stop();
  expect(floorTimes.filter((t) => t === null), `devices that did not report the plain change: ${await explainMissing(hub, names, floorTimes)}`).toHaveLength(0);
  const floorDone = floorTimes.map((t) => (t! - floorAppliedAt) / 1000);
  const floorSeconds = Math.max(...floorDone);
  console.log(`  floor: every device on the plain change in ${round(floorSeconds, 2)} s`);
  await new Promise((r) => setTimeout(r, SETTLE_MS));

  // The Waves rollout of the same kind of change.
  const reported = await expectAll(fleets, [wavesV2], 1, CHANGE_TIMEOUT_MS);
  const sampler = sampleProcess(hubPid);
  const appliedAt = Date.now();
  await applyObjects(hub, [wavesDaemonSet(wavesV2)]);
  const record = await finishedRollout(hub, 'waves-app-2', CHANGE_TIMEOUT_MS);
  const window = sampler.stop();
  const times = await reported.times;
  const status = record.status!;
  expect(status.phase, status.message).toBe('Succeeded');
  expect(status.failedNodes).toHaveLength(0);
  expect(times.filter((t) => t === null), `devices that did not report the rollout: ${await explainMissing(hub, names, times)}`).toHaveLength(0);
  const ds = (await daemonSets(hub)).find((d) => d.metadata.name === 'waves-app');
  expect(ds?.status?.updatedNumberScheduled).toBe(DEVICES);

  const reportedAt = new Map(names.map((n, i) => [n, times[i]!]));
  const waves = record.spec.waves.map((planned, i) => {
    const ws = status.waves[i]!;
    const started = ms(ws.startedAt);
    const passed = ms(ws.finishedAt);
    const reports = planned.nodes.map((n) => reportedAt.get(n)!);
    return { name: planned.name, devices: planned.nodes.length, started, passed, firstReport: Math.min(...reports), lastReport: Math.max(...reports), reports };
  });
  // No device took the new revision before its wave started (the previous wave's gate had passed).
  for (const w of waves) expect(w.firstReport, `wave ${w.name}: a device ran the new pod before its wave started`).toBeGreaterThanOrEqual(w.started);
  expect(waves.map((w) => w.name)).toHaveLength(WAVES.length);

  const totalSeconds = (ms(status.finishedAt) - appliedAt) / 1000;
  const gatesSeconds = MIN_READY_SECONDS * waves.length;
  const figures = {
    devices: DEVICES,
    waves: waves.map((w) => ({
      name: w.name,
      devices: w.devices,
      // WaveStarted → WaveGatePassed, from the Rollout record.
      seconds: round((w.passed - w.started) / 1000, 2),
      beyondGateSeconds: round((w.passed - w.started) / 1000 - MIN_READY_SECONDS, 2),
      // When the wave's devices reported the new pod running (device clock at the hub's PUBACK), from its start.
      devicesRunningP50Seconds: round(quantile(w.reports.map((t) => (t - w.started) / 1000), 0.5), 2),
      devicesRunningMaxSeconds: round((w.lastReport - w.started) / 1000, 2),
    })),
    // From the apply to RolloutSucceeded.
    totalSeconds: round(totalSeconds, 2),
    startSeconds: round((waves[0]!.started - appliedAt) / 1000, 2),
    gatesSeconds,
    overheadBeyondGatesSeconds: round(totalSeconds - gatesSeconds, 2),
    devicesPerMinute: Math.round((DEVICES * 60) / totalSeconds),
    hubCpuSeconds: round(window.cpuSeconds, 2),
    hubCpuPercent: round((100 * window.cpuSeconds) / window.wallSeconds),
    hubPeakRssMB: round(window.peakRssBytes / MB),
    hubRssMBAtRest: round(atRest.rssBytes / MB),
    joinSeconds: round((Math.max(...[...canaryFleet.timings, ...restFleet.timings].map((t) => t.connectedAt!)) - joinStart) / 1000, 1),
  };
  const floor = {
    what: 'the same change to a plain RollingUpdate DaemonSet (maxUnavailable 100 %) on the same devices: all at once, no gates',
    p50Seconds: round(quantile(floorDone, 0.5), 2),
    maxSeconds: round(floorSeconds, 2),
    hubCpuSeconds: round(floorWindow.cpuSeconds, 2),
    hubPeakRssMB: round(floorWindow.peakRssBytes / MB),
  };
  // Limited by the gates only: each wave costs its gate plus at most what moving every device costs without waves.
  const must = round(gatesSeconds + waves.length * floorSeconds, 2);
  console.log('rollout:', JSON.stringify({ figures, floor }));
  writeResult({
    benchmark: 'rollout',
    parameters: {
      devices: DEVICES,
      canaries,
      waves: WAVES,
      maxUnavailable: '100%',
      minReadySeconds: MIN_READY_SECONDS,
      pauses: 'none',
      podsPerDevice: 2,
      imagesPresent: true,
      metrics: 'off',
      broker: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded in the hub',
      target: `limited by the health gates only: the whole rollout within the gates (${waves.length} × minReadySeconds) plus ${waves.length} × the floor`,
    },
    figures,
    floor,
    ratios: { overheadBeyondGatesToFloor: round((totalSeconds - gatesSeconds) / floorSeconds, 2) },
    targets: {
      rollout: {
        what: `${DEVICES.toLocaleString('en-US')} devices in ${waves.length} waves, apply → RolloutSucceeded (gates ${gatesSeconds} s, floor ${round(floorSeconds, 1)} s)`,
        measured: round(totalSeconds, 1),
        unit: `s (${round(totalSeconds - gatesSeconds, 1)} s beyond the gates; hub CPU ${figures.hubCpuPercent} %)`,
        must,
        better: 'lower',
      },
    },
  });
});
